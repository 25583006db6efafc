"""POST /v1/messages (Anthropic Messages API on an OpenAI upstream), count_tokens, and the small
routes Claude Code probes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from proxy_service import openapi
from proxy_service.bridge import Bridge, bridged
from proxy_service.calls import MeteredCall, mapped_model, metered
from proxy_service.convert.anthropic import request as anthropic_request
from proxy_service.convert.anthropic.errors import anthropic_error
from proxy_service.convert.anthropic.request import ConvertedRequest, anthropic_to_openai_request
from proxy_service.convert.anthropic.response import openai_to_anthropic_message
from proxy_service.convert.anthropic.stream import AnthropicStreamTranslator
from proxy_service.convert.anthropic.token_count import count_tokens
from proxy_service.errors import InvalidRequest
from proxy_service.ids import random_hex
from proxy_service.state import ProxyState
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
    return await metered(request, "anthropic_messages", _messages, mapped_model)


async def _messages(call: MeteredCall) -> Response:
    assert call.body is not None
    converted = convert(call.state, call.body)
    message_id = "msg_" + random_hex(12)
    bridge = Bridge(
        upstream_model=converted.upstream_model,
        answer=lambda answer: openai_to_anthropic_message(answer, converted, message_id),
        error=anthropic_error,
        translator=lambda: AnthropicStreamTranslator(converted, message_id),
        keepalive=lambda translator: translator.ping(),
        failure_code="api_error",
    )
    return await bridged(call, bridge, converted.body, converted.stream)


@router.post("/v1/messages/count_tokens", openapi_extra=openapi.MESSAGES)
async def count_message_tokens(request: Request) -> Response:
    """Answered locally (no upstream call; see convert/anthropic/token_count.py), but metered
    like the model routes: the key's limits admit it, the body bounds apply, and it leaves one
    record (protocol anthropic_count_tokens, usage null: counting costs no tokens)."""
    return await metered(request, "anthropic_count_tokens", _count_message_tokens, None)


async def _count_message_tokens(call: MeteredCall) -> Response:
    assert call.body is not None
    convert(call.state, {"max_tokens": 1, **call.body})
    content = orjson.dumps({"input_tokens": count_tokens(call.body)})
    fields = {
        "status_code": 200,
        "model": call.body.get("model"),
        "prompt": call.prompt,
        "response": orjson.Fragment(content),
    }
    return call.meter.reply(content, 200, "application/json", lambda: fields)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> dict[str, str]:
    """Claude Code probes `HEAD /`."""
    return {"service": "b23-llm-proxy"}


@router.post("/api/event_logging/batch", status_code=204, include_in_schema=False)
async def telemetry() -> Response:
    """Claude Code's telemetry: accepted and dropped, never forwarded."""
    return Response(status_code=204)
