"""POST /v1/embeddings: passthrough to the upstream, metered like a buffered chat completion."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from proxy_service import openapi
from proxy_service.calls import MeteredCall, metered
from proxy_service.convert.openai import embeddings as record
from proxy_service.routes.openai import Passthrough, buffered
from proxy_service.upstream import EMBEDDINGS

router = APIRouter(tags=["openai"])

EMBEDDINGS_BODY = openapi.json_body(
    {
        "model": {"type": "string"},
        "input": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "array", "items": {"type": "integer"}},
            ]
        },
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer"},
    },
    ["model", "input"],
)
RECORDED = Passthrough(record.estimate, record.logged_answer)


@router.post("/v1/embeddings", openapi_extra=EMBEDDINGS_BODY)
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request) -> Response:
    return await metered(request, "openai_embeddings", _embeddings)


async def _embeddings(call: MeteredCall) -> Response:
    """The body goes upstream unchanged; the upstream's status and body come back unchanged."""
    reply = await call.state.upstream.post(call.raw, call.client_key, EMBEDDINGS)
    call.meter.upstream_waited(reply.waited)
    return buffered(call, reply, RECORDED)
