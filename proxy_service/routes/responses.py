"""POST /v1/responses (OpenAI Responses API on a Chat Completions upstream, "bridge" mode), and
the rest of the Responses surface, which a stateless bridge answers without keeping anything.

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

from proxy_service.bridge import Bridge, bridged
from proxy_service.calls import MeteredCall, metered
from proxy_service.convert import responses
from proxy_service.errors import ProxyError
from proxy_service.state import ProxyState
from shared.supervision import describe_failure

log = logging.getLogger(__name__)
router = APIRouter(tags=["responses"])


class UpgradeRequired(ProxyError):
    status = 426
    code = "websocket_not_supported"


class NotKept(ProxyError):
    status = 404
    code = "not_found"


@router.post("/v1/responses")
@router.post("/responses", include_in_schema=False)
async def create_response(request: Request) -> Response:
    return await metered(request, "openai_responses", _create)


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
async def stored_response(response_id: str, rest: str) -> Response:
    """Retrieve, input_items, cancel, compact: the bridge stores no responses."""
    raise NotKept(
        f"response {response_id[:64]!r} not found: this gateway keeps no responses (stateless)"
    )


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
