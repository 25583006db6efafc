"""The I/O of every route that converts its protocol to Chat Completions and back (Anthropic
Messages, Responses): the upstream call, the buffered answer, the upstream's errors and the
translated stream, each metered once. A route supplies only its protocol's pure pieces (a
`Bridge`): how an upstream error, a chat.completion and a stream look in its terms.

The stream is translated as bytes arrive, with keep-alives while the upstream is silent.
Whatever fails, the client's stream ends in its protocol's failure event (the translator's
`fail`): an upstream failure as itself, anything else as an internal error (status 500 in the
record, one log line); a client leaving or a shutdown cut is recorded as such. A buffered
answer that is not JSON, or cannot be converted (tool arguments nested too deep to write), is a
502 whose record keeps the upstream's usage.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastapi import Response

from proxy_service.calls import MeteredCall
from proxy_service.convert.openai.usage import estimated_usage, usage_record
from proxy_service.errors import UpstreamFailure, event_bounds
from proxy_service.streaming import SilenceAwareReader, StreamCopy, stream_copy
from proxy_service.upstream import UpstreamReply, UpstreamStream, redacted_header
from shared.supervision import describe_failure

log = logging.getLogger(__name__)


class Translator(Protocol):
    """What a stream translator offers the relay (anthropic/stream.py, responses/stream.py)."""

    @property
    def usage(self) -> dict[str, int]: ...
    @property
    def usage_estimated(self) -> bool: ...
    @property
    def upstream_id(self) -> str | None: ...
    @property
    def upstream_model(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    def start(self) -> list[bytes]: ...
    def feed(self, chunk: bytes) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...
    def fail(self, message: str, code: str) -> list[bytes]: ...
    def limit_event_bytes(self, limit: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Bridge:
    """A protocol's pure pieces, for one request."""

    upstream_model: str
    answer: Callable[[dict[str, Any]], dict[str, Any]]
    """chat.completion -> the protocol's answer, whose `usage` has input/output_tokens."""
    error: Callable[[int, bytes, Mapping[str, str]], tuple[int, dict, dict[str, str]]]
    """Upstream status, body, headers -> (client status, error body, headers to keep)."""
    translator: Callable[[], Translator]
    keepalive: Callable[[Translator], bytes]
    failure_code: str


async def bridged(call: MeteredCall, bridge: Bridge, body: dict, stream: bool) -> Response:
    """Send the converted `body` upstream; the client's answer in the bridge's protocol."""
    upstream = call.state.upstream
    upstream_body = orjson.dumps(body)
    if stream:
        opened = await upstream.open_stream(upstream_body, call.client_key)
        call.meter.upstream_waited(opened.waited)
        if opened.status >= 400:
            error_body = await opened.read_error_body()
            return _error_reply(call, bridge, opened.status, error_body, opened.headers)
        translator = bridge.translator()
        relay = translated_stream(
            call,
            opened,
            translator,
            keepalive=lambda: bridge.keepalive(translator),
            failure_code=bridge.failure_code,
            model=bridge.upstream_model,
        )
        return call.meter.sse_response(relay)
    reply = await upstream.post(upstream_body, call.client_key)
    call.meter.upstream_waited(reply.waited)
    if reply.status >= 400:
        return _error_reply(call, bridge, reply.status, reply.body, reply.headers)
    return _buffered(call, bridge, reply)


def _buffered(call: MeteredCall, bridge: Bridge, reply: UpstreamReply) -> Response:
    try:
        answer = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise _unusable(call, reply, None, "the upstream answered with something not JSON")
    usage = usage_record(answer.get("usage"))
    try:
        converted = bridge.answer(answer)
        content = orjson.dumps(converted)  # serialised once, for the client and the record
    except Exception as error:  # e.g. tool arguments nested deeper than can be written
        log.error("request %s: reply conversion failed: %s", call.meter.request_id, error)
        raise _unusable(
            call, reply, usage, "the upstream's answer could not be converted"
        ) from None
    if usage is None and call.state.settings.estimate_missing_usage:
        shown = converted.get("usage") or {}
        usage = estimated_usage(shown.get("input_tokens", 0), shown.get("output_tokens", 0))
    fields = {
        "status_code": 200,
        "upstream_id": answer.get("id") or reply.request_id,
        "model": answer.get("model") or bridge.upstream_model,
        "prompt": call.prompt,
        "response": orjson.Fragment(content),
        "usage": usage,
    }
    return call.meter.reply(content, 200, "application/json", lambda: fields)


def _unusable(
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


def _error_reply(
    call: MeteredCall, bridge: Bridge, status: int, body: bytes, headers: Mapping[str, str]
) -> Response:
    """An upstream error before any byte was sent, in the bridge's shape and status."""
    client_status, error, extra = bridge.error(status, body, headers)
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


async def translated_stream(
    call: MeteredCall,
    upstream: UpstreamStream,
    translator: Translator,
    *,
    keepalive: Callable[[], bytes],
    failure_code: str,
    model: str | None,
) -> AsyncIterator[bytes]:
    """The client's bytes; `keepalive()` after each STREAM_PING_SECONDS of upstream silence,
    `failure_code` in the failure event, `model` recorded when the upstream names none."""
    sent = stream_copy(call.state.settings)
    status, error = 200, None
    settings = call.state.settings
    reader = SilenceAwareReader(upstream, settings.stream_ping_seconds, settings.relay_buffer_bytes)
    translator.limit_event_bytes(settings.max_upstream_event_bytes)
    try:
        try:
            start = b"".join(translator.start())  # at once, before the upstream says anything
            sent.add(start)
            yield start
            with event_bounds():
                async for chunk in reader.chunks():
                    frames = translator.feed(chunk) if chunk is not None else [keepalive()]
                    if frames:  # one write per upstream chunk, however many frames it made
                        out = upstream.redact(b"".join(frames))
                        sent.add(out)
                        yield out
            frames = translator.finish()
        except UpstreamFailure as failure:
            frames = translator.fail(f"{failure.message} mid-stream", failure_code)
        except Exception as failure:  # a bug, or upstream bytes it could not take: say so
            status, error = 500, f"internal proxy error: {describe_failure(failure)}"
            log.error("request %s: %s", call.meter.request_id, error)
            frames = translator.fail("internal proxy error mid-stream", failure_code)
        out = upstream.redact(b"".join(frames))
        sent.add(out)
        yield out
    except BaseException:
        status, error = call.state.shutdown.cut_reason()
        raise
    finally:
        await reader.close()
        call.meter.settle(
            lambda: _fields(call, upstream, translator, status, error, model, sent), status
        )


def _fields(
    call: MeteredCall,
    upstream: UpstreamStream,
    translator: Translator,
    status: int,
    error: str | None,
    model: str | None,
    sent: StreamCopy,
) -> dict[str, Any]:
    return {
        "status_code": status,
        "error": error or translator.error,
        "upstream_id": translator.upstream_id or upstream.request_id,
        "model": translator.upstream_model or model,
        "prompt": call.prompt,
        **sent.record_fields(),
        "usage": call.translated_usage(translator.usage, translator.usage_estimated),
    }
