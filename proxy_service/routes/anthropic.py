"""POST /v1/messages (Anthropic Messages API on an OpenAI upstream), count_tokens, and the small
routes Claude Code probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from proxy_service import openapi
from proxy_service.auth import authenticate
from proxy_service.bodies import read_body
from proxy_service.calls import MeteredCall, metered, parse_request
from proxy_service.convert import anthropic_request
from proxy_service.convert.anthropic_errors import anthropic_error
from proxy_service.convert.anthropic_request import ConvertedRequest, anthropic_to_openai_request
from proxy_service.convert.anthropic_response import openai_to_anthropic_message
from proxy_service.convert.anthropic_stream import AnthropicStreamTranslator
from proxy_service.convert.openai_usage import estimated_usage, usage_record
from proxy_service.convert.token_count import count_tokens
from proxy_service.deps import proxy_state
from proxy_service.errors import InvalidRequest, UpstreamFailure
from proxy_service.ids import random_hex
from proxy_service.state import ProxyState
from proxy_service.upstream import UpstreamReply, UpstreamStream, redacted_header
from shared.supervision import describe_failure

log = logging.getLogger(__name__)
router = APIRouter(tags=["anthropic"])


def convert(state: ProxyState, body: dict[str, Any]) -> ConvertedRequest:
    """The upstream request; a 400 for a body the converter refuses, and also (logged, as the
    bug it is) for one it fails on: the same body would fail again, so no retry should follow."""
    try:
        return anthropic_to_openai_request(body, state.conversion)
    except anthropic_request.InvalidRequest as error:
        raise InvalidRequest(str(error)) from None
    except Exception as error:
        reason = describe_failure(error)
        log.error("request conversion failed: %s", reason)
        raise InvalidRequest(f"request could not be converted ({type(error).__name__})") from None


@router.post("/v1/messages", openapi_extra=openapi.MESSAGES)
async def messages(request: Request) -> Response:
    return await metered(request, "anthropic_messages", _messages)


async def _messages(call: MeteredCall) -> Response:
    assert call.body is not None
    state = call.state
    converted = convert(state, call.body)
    message_id = "msg_" + random_hex(12)
    upstream_body = orjson.dumps(converted.body)
    if converted.stream:
        stream = await state.upstream.open_stream(upstream_body, call.client_key)
        call.meter.upstream_waited(stream.waited)
        if stream.status >= 400:
            error_body = await stream.read_error_body()
            return _error_reply(call, stream.status, error_body, stream.headers)
        translator = AnthropicStreamTranslator(converted, message_id)
        return call.meter.sse_response(_relay(call, stream, translator, converted))
    reply = await state.upstream.post(upstream_body, call.client_key)
    call.meter.upstream_waited(reply.waited)
    if reply.status >= 400:
        return _error_reply(call, reply.status, reply.body, reply.headers)
    return _buffered(call, reply, converted, message_id)


def _buffered(
    call: MeteredCall, reply: UpstreamReply, converted: ConvertedRequest, message_id: str
) -> Response:
    """The upstream's answer as one Anthropic Message; a 502 when it is not an answer."""
    try:
        answer = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise _unusable_reply(call, reply, None, "the upstream answered with something not JSON")
    usage = usage_record(answer.get("usage"))
    try:
        message = openai_to_anthropic_message(answer, converted, message_id)
        content = orjson.dumps(message)  # serialised once, for the client and the record
    except Exception as error:  # e.g. tool arguments nested deeper than can be written
        log.error("request %s: reply conversion failed: %s", call.meter.request_id, error)
        raise _unusable_reply(
            call, reply, usage, "the upstream's answer could not be converted"
        ) from None
    if usage is None and call.state.settings.estimate_missing_usage:
        shown = message["usage"]
        usage = estimated_usage(shown["input_tokens"], shown["output_tokens"])
    fields = {
        "status_code": 200,
        "upstream_id": answer.get("id") or reply.request_id,
        "model": answer.get("model") or converted.upstream_model,
        "prompt": call.prompt,
        "response": orjson.Fragment(content),
        "usage": usage,
    }
    return call.meter.reply(content, 200, "application/json", lambda: fields)


def _unusable_reply(
    call: MeteredCall, reply: UpstreamReply, usage: dict[str, Any] | None, why: str
) -> UpstreamFailure:
    """Record an upstream answer the client cannot be given (with what it cost) as a 502."""
    call.meter.finish(
        status_code=502,
        error=why,
        upstream_id=reply.request_id,
        prompt=call.prompt,
        response=reply.body[:4096].decode("utf-8", "replace"),
        usage=usage,
    )
    return UpstreamFailure(why)


def _error_reply(call: MeteredCall, status: int, body: bytes, headers: Any) -> Response:
    """An upstream error before any byte was sent: JSON in Anthropic's shape, right status."""
    client_status, error, extra = anthropic_error(status, body, headers)
    secret = call.state.upstream.credential(call.client_key)
    extra = {name: redacted_header(value, secret) or "" for name, value in extra.items()}
    fields = {
        "status_code": client_status,
        "error": error["error"]["message"],
        "prompt": call.prompt,
        "response": error,
    }
    return call.meter.reply(
        orjson.dumps(error), client_status, "application/json", lambda: fields, extra
    )


def _stream_usage(call: MeteredCall, translator: AnthropicStreamTranslator) -> dict | None:
    """The upstream's usage, or the translator's estimate marked as one (or none, if so set)."""
    usage = translator.usage
    if not translator.usage_estimated:
        return usage
    if not call.state.settings.estimate_missing_usage:
        return None
    return estimated_usage(usage["prompt_tokens"], usage["completion_tokens"])


async def _relay(
    call: MeteredCall,
    upstream: UpstreamStream,
    translator: AnthropicStreamTranslator,
    converted: ConvertedRequest,
) -> AsyncIterator[bytes]:
    """Translate as bytes arrive, with pings while the upstream is silent; meter once, with
    every byte the client received. Whatever fails, the client gets an `error` event."""
    sent: list[bytes] = []
    status, error = 200, None
    reader = _Reader(upstream, call.state.settings.stream_ping_seconds)
    try:
        try:
            start = b"".join(translator.start())  # at once, before the upstream says anything
            sent.append(start)
            yield start
            frames: list[bytes] = []
            async for chunk in reader.chunks():
                frames += translator.feed(chunk) if chunk is not None else [translator.ping()]
                if frames:  # one write per upstream chunk, however many frames it made
                    out = upstream.redact(b"".join(frames))
                    sent.append(out)
                    yield out
                    frames = []
            frames += translator.finish()
        except UpstreamFailure as failure:
            frames = translator.fail(f"{failure.message} mid-stream", "api_error")
        except Exception as failure:  # a bug, or upstream bytes it could not take: say so
            status, error = 500, f"internal proxy error: {describe_failure(failure)}"
            log.error("request %s: %s", call.meter.request_id, error)
            frames = translator.fail("internal proxy error mid-stream", "api_error")
        out = upstream.redact(b"".join(frames))
        sent.append(out)
        yield out
    except BaseException:
        status, cut = call.state.shutdown.cut_reason()
        translator.fail(cut)
        raise
    finally:
        await reader.close()
        relayed = b"".join(sent)
        call.meter.settle(
            lambda: {
                "status_code": status,
                "error": error or translator.error,
                "upstream_id": translator.upstream_id or upstream.request_id,
                "model": translator.upstream_model or converted.upstream_model,
                "prompt": call.prompt,
                "response_stream": relayed.decode("utf-8", "replace"),
                "usage": _stream_usage(call, translator),
            },
            status,
        )


_END = object()


class _Reader:
    """Reads the upstream in its own task, so the relay can send pings while the upstream is
    silent without cancelling a read half way. A timer re-armed from the last chunk notices
    the silence: a timeout around every read cost several % of a stream's CPU."""

    def __init__(self, upstream: UpstreamStream, idle: float) -> None:
        self._upstream = upstream
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._last_activity = self._loop.time()
        self._task = self._loop.create_task(self._pump())
        self._timer = self._loop.call_later(idle, self._on_timer)

    async def _pump(self) -> None:
        try:
            async for chunk in self._upstream.chunks():
                self._last_activity = self._loop.time()
                self._queue.put_nowait(chunk)
            self._queue.put_nowait(_END)
        except Exception as error:  # handed to the relay, which decides what the client sees
            self._queue.put_nowait(error)

    def _on_timer(self) -> None:
        now = self._loop.time()
        if now - self._last_activity >= self._idle:
            self._queue.put_nowait(None)
            self._last_activity = now
        self._timer = self._loop.call_at(self._last_activity + self._idle, self._on_timer)

    async def chunks(self) -> AsyncIterator[bytes | None]:
        """Upstream chunks; None after every `idle` seconds of silence; raises the reader's
        error."""
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    async def close(self) -> None:
        """Stop reading (the task ends on its own) and free the upstream connection."""
        self._timer.cancel()
        self._task.cancel()
        await self._upstream.aclose()


@router.post("/v1/messages/count_tokens", openapi_extra=openapi.MESSAGES)
async def count_message_tokens(request: Request) -> dict[str, int]:
    """Answered locally (no upstream call, no usage event): see convert/token_count.py."""
    state = proxy_state(request)
    authenticate(request.headers, state.keys)
    raw = await read_body(request, state.settings.max_request_bytes)
    body = parse_request(raw, state.settings.max_json_depth)
    convert(state, {"max_tokens": 1, **body})
    return {"input_tokens": count_tokens(body)}


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> dict[str, str]:
    """Claude Code probes `HEAD /`."""
    return {"service": "b23-llm-proxy"}


@router.post("/api/event_logging/batch", status_code=204, include_in_schema=False)
async def telemetry() -> Response:
    """Claude Code's telemetry: accepted and dropped, never forwarded."""
    return Response(status_code=204)
