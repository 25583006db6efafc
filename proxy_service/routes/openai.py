"""POST /v1/chat/completions: passthrough to the upstream, metered."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from proxy_service import openapi
from proxy_service.calls import MeteredCall, metered
from proxy_service.convert.openai.estimate import estimate_output, estimate_prompt
from proxy_service.convert.openai.stream_tap import OpenAIStreamTap
from proxy_service.convert.openai.usage import estimated_usage, usage_record
from proxy_service.errors import UpstreamFailure, event_bounds, openai_error_body
from proxy_service.streaming import stream_copy
from proxy_service.upstream import CHAT_COMPLETIONS, UpstreamReply, UpstreamStream
from shared.supervision import describe_failure

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])


def chat_error_frame(status: int, message: str, code: str | None) -> bytes:
    """The `data: {"error": ...}` event the OpenAI SDK raises on mid-stream."""
    return b"data: " + openai_error_body(status, message, code) + b"\n\n"


@dataclass(frozen=True, slots=True)
class Passthrough:
    """How a route whose upstream answer goes to the client unchanged records that answer."""

    estimate: Callable[[dict[str, Any], bytes], tuple[int, int]]
    """(prompt, output) tokens of an accepted request whose reply has no usage, from the request
    body and the bytes relayed."""
    logged: Callable[[dict[str, Any]], Any] | None = None
    """What the record keeps of a successful JSON answer; None: the answer as it came."""
    usage: Callable[[Any], dict[str, int] | None] = usage_record
    """The record's usage from the answer's `usage` object."""
    error_frame: Callable[[int, str, str | None], bytes] = chat_error_frame
    """The event a stream ends with when it fails after the first byte."""


BYTES_PER_TOKEN_RELAYED = 4
"""For the part of a stream too long to keep: fewer bytes per token than any SSE framing takes,
so the estimate stays biased upward."""
CHAT = Passthrough(lambda body, relayed: (estimate_prompt(body), estimate_output(relayed)))


@router.post("/v1/chat/completions", openapi_extra=openapi.CHAT_COMPLETIONS)
async def chat_completions(request: Request) -> Response:
    return await metered(request, "openai_chat", _chat_completions)


async def _chat_completions(call: MeteredCall) -> Response:
    assert call.body is not None
    if call.body.get("stream") is True:
        return await _stream(call, call.body)
    reply = await call.state.upstream.post(call.raw, call.client_key)
    call.meter.upstream_waited(reply.waited)
    return buffered(call, reply)


def buffered(call: MeteredCall, reply: UpstreamReply, passthrough: Passthrough = CHAT) -> Response:
    """The upstream's answer as it came; parsed for the record after it was sent."""
    describe = functools.partial(_described_reply, call, reply, passthrough)
    return call.meter.reply(reply.body, reply.status, reply.content_type, describe)


def _described_reply(
    call: MeteredCall, reply: UpstreamReply, passthrough: Passthrough
) -> dict[str, Any]:
    """The record's fields of a buffered reply: id, model, usage (estimated if it has none)."""
    try:
        parsed = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        parsed = None
    answer = parsed if isinstance(parsed, dict) else {}
    error = None
    if reply.status >= 400:
        detail = answer.get("error")
        error = str(detail.get("message") if isinstance(detail, dict) else detail or reply.status)
    if parsed is None:
        response = reply.body.decode("utf-8", "replace")
    elif passthrough.logged is not None and isinstance(parsed, dict) and reply.status < 400:
        response = passthrough.logged(answer)
    else:
        response = orjson.Fragment(reply.body)
    usage = passthrough.usage(answer.get("usage"))
    return {
        "status_code": reply.status,
        "error": error,
        "upstream_id": answer.get("id") or reply.request_id,
        "model": answer.get("model") or (call.body or {}).get("model"),
        "prompt": call.prompt,
        "response": response,
        "usage": _usage_or_estimate(call, usage, reply.status, reply.body, passthrough),
    }


def _usage_or_estimate(
    call: MeteredCall,
    usage: dict[str, Any] | None,
    status: int,
    relayed: bytes,
    passthrough: Passthrough,
    not_kept: int = 0,
) -> dict[str, Any] | None:
    """The upstream's usage; when an accepted request has none (a stream cut before its usage
    chunk, an upstream that sends none), an estimate, so closing early costs tokens too."""
    if usage is not None or status >= 400 or not call.state.settings.estimate_missing_usage:
        return usage
    prompt, output = passthrough.estimate(call.body or {}, relayed)
    return estimated_usage(prompt, output + math.ceil(not_kept / BYTES_PER_TOKEN_RELAYED))


async def _stream(call: MeteredCall, body: dict[str, Any]) -> Response:
    """Ask for usage on every stream; drop the usage chunk if the client did not ask for it."""
    options = body.get("stream_options")
    client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if not client_wants_usage:
        asked = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        raw_upstream = orjson.dumps({**body, "stream_options": asked})  # the record keeps body
    else:
        raw_upstream = call.raw
    tap = OpenAIStreamTap(drop_usage_chunk=not client_wants_usage)
    return await streamed(call, raw_upstream, tap)


async def streamed(
    call: MeteredCall,
    raw: bytes,
    tap: OpenAIStreamTap,
    passthrough: Passthrough = CHAT,
    endpoint: str = CHAT_COMPLETIONS,
) -> Response:
    """The upstream's stream relayed as it comes (an error before it: the upstream's reply)."""
    upstream = await call.state.upstream.open_stream(raw, call.client_key, endpoint)
    call.meter.upstream_waited(upstream.waited)
    if upstream.status >= 400:
        error_body = await upstream.read_error_body()
        reply = UpstreamReply(
            upstream.status,
            upstream.content_type,
            error_body,
            upstream.request_id,
            upstream.headers,
            upstream.waited,
        )
        return buffered(call, reply, passthrough)
    tap.limit_event_bytes(call.state.settings.max_upstream_event_bytes)
    return call.meter.sse_response(_relay(call, upstream, tap, passthrough), upstream.status)


async def _relay(
    call: MeteredCall, upstream: UpstreamStream, tap: OpenAIStreamTap, passthrough: Passthrough
) -> AsyncIterator[bytes]:
    """Forward bytes as they arrive; on any end (done, failure, disconnect) meter once."""
    sent = stream_copy(call.state.settings)
    status, error = 200, None
    try:
        try:
            with event_bounds():
                async for chunk in upstream.chunks():
                    out = upstream.redact(tap.feed(chunk))
                    if out:
                        sent.add(out)
                        yield out
            tail = upstream.redact(tap.flush())
            if tail:
                sent.add(tail)
                yield tail
            error = tap.error
        except UpstreamFailure as failure:
            error = f"{failure.message} mid-stream"
            frame = passthrough.error_frame(failure.status, error, failure.code)
            sent.add(frame)
            yield frame
        except Exception as failure:  # a bug, or upstream bytes it could not take: say so
            status, error = 500, f"internal proxy error: {describe_failure(failure)}"
            log.error("request %s: %s", call.meter.request_id, error)
            frame = passthrough.error_frame(
                500, "internal proxy error mid-stream", "internal_error"
            )
            sent.add(frame)
            yield frame
    except BaseException:
        status, error = call.state.shutdown.cut_reason()
        raise
    finally:
        await upstream.aclose()
        call.meter.settle(
            lambda: {
                "status_code": status,
                "error": error,
                "upstream_id": tap.upstream_id or upstream.request_id,
                "model": tap.model or (call.body or {}).get("model"),
                "prompt": call.prompt,
                **sent.record_fields(),
                "usage": _usage_or_estimate(
                    call, tap.usage, upstream.status, sent.kept(), passthrough, sent.cut
                ),
            },
            status,
        )
