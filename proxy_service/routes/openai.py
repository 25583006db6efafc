"""POST /v1/chat/completions: passthrough to the upstream, metered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from proxy_service import openapi
from proxy_service.bodies import logged_prompt
from proxy_service.calls import start_call
from proxy_service.convert.openai_stream import OpenAIStreamTap
from proxy_service.convert.openai_usage import usage_record
from proxy_service.errors import UpstreamFailure, openai_error_body
from proxy_service.metering import UsageMeter
from proxy_service.state import ProxyState
from proxy_service.upstream import UpstreamReply, UpstreamStream

router = APIRouter(tags=["openai"])


@router.post("/v1/chat/completions", openapi_extra=openapi.CHAT_COMPLETIONS)
async def chat_completions(request: Request) -> Response:
    call = await start_call(request, "openai_chat")
    state, meter, raw, body = call.state, call.meter, call.raw, call.body
    with call.failures_metered():
        if body.get("stream") is True:
            return await _stream(state, meter, call.client_key, raw, body)
        reply = await state.upstream.post(raw, call.client_key)
    meter.upstream_waited(reply.waited)
    headers = meter.response_headers()
    task = BackgroundTask(_meter_reply, meter, reply, logged_prompt(raw, body), body.get("model"))
    return Response(reply.body, reply.status, headers, reply.content_type, background=task)


async def _meter_reply(meter: UsageMeter, reply: UpstreamReply, prompt: Any, model: Any) -> None:
    """After the reply is sent: parse it once for id, model and usage. Async on purpose: a sync
    background task would run in a worker thread, away from the loop the publisher lives on."""
    try:
        parsed = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        parsed = None
    answer = parsed if isinstance(parsed, dict) else {}
    error = None
    if reply.status >= 400:
        detail = answer.get("error")
        error = str(detail.get("message") if isinstance(detail, dict) else detail or reply.status)
    meter.finish(
        status_code=reply.status,
        error=error,
        upstream_id=answer.get("id") or reply.request_id,
        model=answer.get("model") or model,
        prompt=prompt,
        response=orjson.Fragment(reply.body)
        if parsed is not None
        else reply.body.decode("utf-8", "replace"),
        usage=usage_record(answer.get("usage")),
    )


async def _stream(
    state: ProxyState, meter: UsageMeter, client_key: str, raw: bytes, body: dict[str, Any]
) -> Response:
    """Ask for usage on every stream; drop the usage chunk if the client did not ask for it."""
    options = body.get("stream_options")
    client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if not client_wants_usage:
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
        raw_upstream = orjson.dumps(body)
    else:
        raw_upstream = raw
    upstream = await state.upstream.open_stream(raw_upstream, client_key)
    meter.upstream_waited(upstream.waited)
    prompt = orjson.Fragment(raw)
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
        task = BackgroundTask(_meter_reply, meter, reply, prompt, body.get("model"))
        return Response(
            error_body,
            upstream.status,
            meter.response_headers(),
            upstream.content_type,
            background=task,
        )
    tap = OpenAIStreamTap(drop_usage_chunk=not client_wants_usage)
    relay = _relay(state, upstream, tap, meter, prompt, body.get("model"))
    return meter.sse_response(relay, upstream.status)


async def _relay(
    state: ProxyState,
    upstream: UpstreamStream,
    tap: OpenAIStreamTap,
    meter: UsageMeter,
    prompt: Any,
    model: Any,
) -> AsyncIterator[bytes]:
    """Forward bytes as they arrive; on any end (done, failure, disconnect) meter once."""
    sent: list[bytes] = []
    status, error = 200, None
    try:
        async for chunk in upstream.chunks():
            out = tap.feed(chunk)
            if out:
                sent.append(out)
                yield out
        tail = tap.flush()
        if tail:
            sent.append(tail)
            yield tail
        error = tap.error
    except UpstreamFailure as failure:
        error = f"{failure.message} mid-stream"
        frame = b"data: " + openai_error_body(failure.status, error, failure.code) + b"\n\n"
        sent.append(frame)
        yield frame
    except BaseException:
        status, error = state.shutdown.cut_reason()
        raise
    finally:
        await upstream.aclose()
        meter.finish(
            status_code=status,
            error=error,
            upstream_id=tap.upstream_id or upstream.request_id,
            model=tap.model or model,
            prompt=prompt,
            response_stream=b"".join(sent).decode("utf-8", "replace"),
            usage=tap.usage,
        )
