"""GET /v1/models answers: the upstream's list plus the MODEL_MAP aliases, in OpenAI's shape or
Anthropic's. Pure.

Aliases come first and are listed in both shapes: Claude Code's gateway model discovery keeps
only ids containing `claude`, which an OpenAI-compatible upstream seldom lists, so its models
are only reachable under the names MODEL_MAP gives them.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson

ALIAS_OWNER = "b23-llm-proxy"
ANTHROPIC_DEFAULT_LIMIT = 20
ANTHROPIC_MAX_LIMIT = 1000
_LATEST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


class NotAModelList(ValueError):
    """An upstream answer that holds no model list."""


def upstream_models(body: bytes) -> list[dict[str, Any]]:
    """The models of an OpenAI list answer (`{"data": [...]}`) with the four fields OpenAI's
    own list has (anything else an upstream adds is dropped: its size and depth are
    unbounded); NotAModelList when the answer is no such list. Entries without a string id are
    left out."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise NotAModelList("with no model list")
    return [
        {
            "id": item["id"],
            "object": "model",
            "created": _timestamp(item.get("created")),
            "owned_by": item.get("owned_by") if isinstance(item.get("owned_by"), str) else "",
        }
        for item in data
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]


def with_aliases(models: list[dict[str, Any]], aliases: tuple[str, ...]) -> list[dict[str, Any]]:
    """The aliases the upstream does not list itself, then the upstream's models."""
    listed = {model["id"] for model in models}
    added = [
        {"id": alias, "object": "model", "created": 0, "owned_by": ALIAS_OWNER}
        for alias in aliases
        if alias not in listed
    ]
    return added + models


def openai_list(models: list[dict[str, Any]], codex_manifest: bool) -> dict[str, Any]:
    """`{"object": "list", "data"}`; with `"models": []` for older Codex builds, which ask with
    `?client_version=` and read that key (an empty manifest keeps their bundled metadata)."""
    answer: dict[str, Any] = {"object": "list", "data": models}
    if codex_manifest:
        answer["models"] = []
    return answer


def anthropic_list(
    models: list[dict[str, Any]],
    limit: int = ANTHROPIC_DEFAULT_LIMIT,
    after_id: str | None = None,
    before_id: str | None = None,
) -> dict[str, Any]:
    """One page of Anthropic's list: `{"data", "has_more", "first_id", "last_id"}`, paged by
    `after_id` / `before_id` as the API is (an unknown id gives an empty page)."""
    ids = [model["id"] for model in models]
    lower, end = 0, len(ids)
    if after_id is not None:
        lower = ids.index(after_id) + 1 if after_id in ids else end
    if before_id is not None:
        end = ids.index(before_id) if before_id in ids else 0
        start = max(lower, end - limit)
        has_more = start > lower
    else:
        start = lower
        has_more = end - start > limit
    page = models[start : min(end, start + limit)]
    data = [_anthropic_model(model) for model in page]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    created = datetime.datetime.fromtimestamp(model["created"], datetime.UTC)
    return {
        "type": "model",
        "id": model["id"],
        "display_name": model["id"],
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _timestamp(value: Any) -> int:
    """Unix seconds as every date library can take them; 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), _LATEST_TIMESTAMP)
