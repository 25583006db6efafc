"""POST /v1/responses (OpenAI Responses API on a Chat Completions upstream, "bridge" mode), and
the rest of the Responses surface, which a stateless bridge answers without keeping anything.

With RESPONSES_MODE=passthrough the upstream has the Responses API itself: bodies and replies
go through unchanged (usage read on the side), and so do compaction and the stored-response
routes.

Conversion is in proxy_service/convert/responses/ (pure); this module is the I/O around it:
the metered call, the upstream request, heartbeats while the upstream is silent (Codex's idle
timer ignores SSE comments, so they are `response.in_progress` events), and errors in the
Responses shape with statuses that drive the clients' retries right (4xx for what a retry
cannot fix: Codex retries every 5xx).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from proxy_service.auth import authenticate
from proxy_service.bridge import Bridge, bridged
from proxy_service.calls import MeteredCall, mapped_model, metered
from proxy_service.convert import responses
from proxy_service.convert.responses import passthrough
from proxy_service.deps import proxy_state
from proxy_service.errors import ProxyError
from proxy_service.routes.openai import Passthrough, buffered, streamed
from proxy_service.state import ProxyState
from proxy_service.upstream import RESPONSES, RESPONSES_COMPACT, STORED_RESPONSE_PATH
from shared.supervision import describe_failure

log = logging.getLogger(__name__)
router = APIRouter(tags=["responses"])


class UpgradeRequired(ProxyError):
    status = 426
    code = "websocket_not_supported"


class NotKept(ProxyError):
    status = 404
    code = "not_found"


FORWARDED = Passthrough(
    passthrough.estimate, usage=passthrough.usage_of, error_frame=passthrough.error_event
)


@router.post("/v1/responses")
@router.post("/responses", include_in_schema=False)
async def create_response(request: Request) -> Response:
    if proxy_state(request).settings.responses_mode == "passthrough":
        return await metered(request, "openai_responses", _forward)
    return await metered(request, "openai_responses", _create, mapped_model)


@router.post("/v1/responses/compact", include_in_schema=False)
@router.post("/responses/compact", include_in_schema=False)
async def compact(request: Request) -> Response:
    """Remote compaction (passthrough only): a model call, so metered."""
    if proxy_state(request).settings.responses_mode != "passthrough":
        raise _not_kept("compact")
    return await metered(request, "openai_responses", _forward_compact)


@router.get("/v1/responses", include_in_schema=False)
@router.get("/responses", include_in_schema=False)
async def websocket_probe() -> Response:
    """Codex tries a WebSocket first on some providers; a 426 at once makes it use POST."""
    raise UpgradeRequired("this gateway serves the Responses API over HTTP POST only")


@router.api_route(
    "/v1/responses/{response_id}{rest:path}",
    methods=["GET", "POST", "DELETE"],
    include_in_schema=False,
)
async def stored_response(request: Request, response_id: str, rest: str) -> Response:
    """Retrieve, input_items, cancel, delete: the bridge stores no responses; passthrough asks
    the upstream (authenticated, not metered: no tokens)."""
    state = proxy_state(request)
    if state.settings.responses_mode != "passthrough":
        raise _not_kept(response_id)
    client_key, _ = authenticate(request.headers, state.keys)
    endpoint = f"{RESPONSES}/{response_id}{rest}"
    if not STORED_RESPONSE_PATH.fullmatch(endpoint):
        raise _not_kept(response_id)
    reply = await state.upstream.forward(
        request.method, endpoint, request.url.query.encode(), client_key
    )
    return Response(reply.body, reply.status, media_type=reply.content_type)


def _not_kept(response_id: str) -> NotKept:
    return NotKept(
        f"response {response_id[:64]!r} not found: this gateway keeps no responses (stateless)"
    )


async def _forward(call: MeteredCall) -> Response:
    """Passthrough: the body as the client sent it (decoded), the upstream's bytes back."""
    assert call.body is not None
    if call.body.get("stream") is True:
        tap = passthrough.ResponsesStreamTap()
        return await streamed(call, call.raw, tap, FORWARDED, RESPONSES)
    return await _forward_buffered(call, RESPONSES)


async def _forward_compact(call: MeteredCall) -> Response:
    return await _forward_buffered(call, RESPONSES_COMPACT)


async def _forward_buffered(call: MeteredCall, endpoint: str) -> Response:
    reply = await call.state.upstream.post(call.raw, call.client_key, endpoint)
    call.meter.upstream_waited(reply.waited)
    return buffered(call, reply, FORWARDED)


def convert(state: ProxyState, call: MeteredCall, session_id: str | None) -> Any:
    """The upstream request, or a 400 in the Responses shape (with `param`) for a body the
    converter refuses or fails on (logged as the bug it is)."""
    try:
        return responses.responses_to_chat_request(call.body, state.responses_options, session_id)
    except responses.InvalidRequest as error:
        status, body = responses.request_error(error)
        return _refused(call, status, body)
    except Exception as error:
        log.error("responses conversion failed: %s", describe_failure(error))
        body = responses.error_body(f"request could not be converted ({type(error).__name__})")
        return _refused(call, 400, body)


def _refused(call: MeteredCall, status: int, body: dict) -> Response:
    fields = {
        "status_code": status,
        "error": body["error"]["message"],
        "prompt": call.prompt,
        "response": body,
    }
    return call.meter.reply(orjson.dumps(body), status, "application/json", lambda: fields)


async def _create(call: MeteredCall) -> Response:
    converted = convert(call.state, call, call.headers.get("session-id"))
    if isinstance(converted, Response):
        return converted
    bridge = Bridge(
        upstream_model=converted.upstream_model,
        answer=lambda answer: responses.chat_to_response(answer, converted),
        error=responses.responses_error,
        translator=lambda: responses.ResponsesStreamTranslator(converted),
        keepalive=lambda translator: translator.heartbeat(),
        failure_code="server_error",
    )
    return await bridged(call, bridge, converted.body, converted.stream)
