"""POST /v1/messages (Anthropic Messages API on an OpenAI upstream), count_tokens, and the small
routes Claude Code probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from proxy_service import openapi
from proxy_service.auth import authenticate
from proxy_service.bodies import parse_json_object, read_body
from proxy_service.calls import start_call
from proxy_service.convert import anthropic_request
from proxy_service.convert.anthropic_errors import anthropic_error
from proxy_service.convert.anthropic_request import ConvertedRequest, anthropic_to_openai_request
from proxy_service.convert.anthropic_response import openai_to_anthropic_message
from proxy_service.convert.anthropic_stream import AnthropicStreamTranslator
from proxy_service.convert.openai_usage import usage_record
from proxy_service.convert.token_count import count_tokens
from proxy_service.deps import proxy_state
from proxy_service.errors import InvalidRequest, UpstreamFailure
from proxy_service.ids import random_hex
from proxy_service.metering import UsageMeter
from proxy_service.state import ProxyState
from proxy_service.upstream import UpstreamStream

router = APIRouter(tags=["anthropic"])


def convert(state: ProxyState, body: dict[str, Any]) -> ConvertedRequest:
    try:
        return anthropic_to_openai_request(body, state.conversion)
    except anthropic_request.InvalidRequest as error:
        raise InvalidRequest(str(error)) from None


@router.post("/v1/messages", openapi_extra=openapi.MESSAGES)
async def messages(request: Request) -> Response:
    call = await start_call(request, "anthropic_messages")
    state, meter, raw, client_key = call.state, call.meter, call.raw, call.client_key
    with call.failures_metered():
        converted = convert(state, call.body)
        message_id = "msg_" + random_hex(12)
        upstream_body = orjson.dumps(converted.body)
        if converted.stream:
            stream = await state.upstream.open_stream(upstream_body, client_key)
            meter.upstream_waited(stream.waited)
            return await _stream(state, meter, stream, orjson.Fragment(raw), converted, message_id)
        reply = await state.upstream.post(upstream_body, client_key)
    prompt = orjson.Fragment(raw)
    meter.upstream_waited(reply.waited)
    if reply.status >= 400:
        return _error_reply(meter, prompt, reply.status, reply.body, reply.headers)
    try:
        answer = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        error = UpstreamFailure("the upstream answered with something that is not JSON")
        meter.finish(
            status_code=502,
            error=error.message,
            prompt=prompt,
            response=reply.body[:4096].decode("utf-8", "replace"),
        )
        raise error
    message = orjson.dumps(openai_to_anthropic_message(answer, converted, message_id))
    task = BackgroundTask(
        meter.finish_async,
        status_code=200,
        upstream_id=answer.get("id") or reply.request_id,
        model=answer.get("model") or converted.upstream_model,
        prompt=prompt,
        response=orjson.Fragment(message),  # serialised once, for the client and the record
        usage=usage_record(answer.get("usage")),
    )
    return Response(message, 200, meter.response_headers(), "application/json", background=task)


def _error_reply(
    meter: UsageMeter, prompt: Any, status: int, body: bytes, headers: Any
) -> Response:
    """An upstream error before any byte was sent: JSON in Anthropic's shape, right status."""
    client_status, error, extra = anthropic_error(status, body, headers)
    meter.finish(
        status_code=client_status, error=error["error"]["message"], prompt=prompt, response=error
    )
    return Response(
        orjson.dumps(error),
        client_status,
        {**extra, **meter.response_headers()},
        "application/json",
    )


async def _stream(
    state: ProxyState,
    meter: UsageMeter,
    upstream: UpstreamStream,
    prompt: Any,
    converted: ConvertedRequest,
    message_id: str,
) -> Response:
    if upstream.status >= 400:
        error_body = await upstream.read_error_body()
        return _error_reply(meter, prompt, upstream.status, error_body, upstream.headers)
    translator = AnthropicStreamTranslator(converted, message_id)
    return meter.sse_response(_relay(state, upstream, translator, meter, prompt, converted))


async def _relay(
    state: ProxyState,
    upstream: UpstreamStream,
    translator: AnthropicStreamTranslator,
    meter: UsageMeter,
    prompt: Any,
    converted: ConvertedRequest,
) -> AsyncIterator[bytes]:
    """Translate as bytes arrive, with pings while the upstream is silent; meter once, with
    every byte the client received."""
    sent: list[bytes] = []
    status = 200
    reader = _Reader(upstream, state.settings.stream_ping_seconds)
    try:
        try:
            start = b"".join(translator.start())  # at once, before the upstream says anything
            sent.append(start)
            yield start
            frames: list[bytes] = []
            async for chunk in reader.chunks():
                frames += translator.feed(chunk) if chunk is not None else [translator.ping()]
                if frames:  # one write per upstream chunk, however many frames it made
                    out = b"".join(frames)
                    sent.append(out)
                    yield out
                    frames = []
            frames += translator.finish()
        except UpstreamFailure as failure:
            frames = translator.fail(f"{failure.message} mid-stream", "api_error")
        out = b"".join(frames)
        sent.append(out)
        yield out
    except BaseException:
        status, cut = state.shutdown.cut_reason()
        translator.fail(cut)
        raise
    finally:
        await reader.close()
        meter.finish(
            status_code=status,
            error=translator.error,
            upstream_id=translator.upstream_id or upstream.request_id,
            model=translator.upstream_model or converted.upstream_model,
            prompt=prompt,
            response_stream=b"".join(sent).decode("utf-8", "replace"),
            usage=translator.usage,
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
    body = parse_json_object(await read_body(request, state.settings.max_request_bytes))
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
