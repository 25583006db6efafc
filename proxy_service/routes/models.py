"""GET /v1/models: the upstream's models plus the MODEL_MAP aliases, for a client key.

Not metered (a listing costs no tokens and leaves no usage record), but counted in /metrics. In
Anthropic's shape for requests with `anthropic-version` (Claude Code's gateway model discovery,
the anthropic SDK), else OpenAI's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from proxy_service.auth import authenticate
from proxy_service.convert.openai.model_list import (
    ANTHROPIC_DEFAULT_LIMIT,
    ANTHROPIC_MAX_LIMIT,
    anthropic_list,
    openai_list,
    with_aliases,
)
from proxy_service.deps import proxy_state
from proxy_service.errors import InvalidRequest

router = APIRouter(tags=["models"])


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(request: Request) -> Response:
    state = proxy_state(request)
    client_key, _ = authenticate(request.headers, state.keys)
    query = request.query_params
    anthropic = "anthropic-version" in request.headers
    page = anthropic_page(query) if anthropic else None
    listing = await state.models.listing(client_key)
    models = with_aliases(listing.models, state.conversion.model_map.aliases)
    state.metrics.model_lists.add("anthropic" if anthropic else "openai", listing.source)
    answer = (
        anthropic_list(models, **page)
        if page is not None
        else openai_list(models, codex_manifest="client_version" in query)
    )
    return Response(orjson.dumps(answer), media_type="application/json")


def anthropic_page(query: Mapping[str, str]) -> dict[str, Any]:
    """`limit` (1-1000, default 20), `after_id`, `before_id`; a 400 for a limit out of range."""
    try:
        limit = int(query.get("limit", ANTHROPIC_DEFAULT_LIMIT))
    except ValueError:
        limit = 0
    if not 1 <= limit <= ANTHROPIC_MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {ANTHROPIC_MAX_LIMIT}")
    return {
        "limit": limit,
        "after_id": query.get("after_id"),
        "before_id": query.get("before_id"),
    }
