"""OpenAI `usage` objects in the shape usage events record, and estimates where none came."""

from __future__ import annotations

import math
from typing import Any

MAX_TOKEN_COUNT = 2**53
"""Larger reported counts are clamped to this: exact as JSON numbers and in Redis' Lua (doubles),
and far inside orjson's 64-bit integers, so no sum of counts can make an event unserialisable."""


def token_count(value: Any) -> int | None:
    """A reported count as an int in [0, MAX_TOKEN_COUNT]; None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return min(max(int(value), 0), MAX_TOKEN_COUNT)


def usage_record(
    usage: Any,
    prompt_field: str = "prompt_tokens",
    completion_field: str = "completion_tokens",
) -> dict[str, int] | None:
    """prompt/completion/total tokens plus cached prompt tokens; None when absent or malformed.
    The field names are Chat Completions'; the Responses API's (`input_tokens`, ...) differ
    only in the prefix."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get(prompt_field)) or 0
    completion = token_count(usage.get(completion_field)) or 0
    details = usage.get(prompt_field + "_details")
    cached = (token_count(details.get("cached_tokens")) or 0) if isinstance(details, dict) else 0
    total = token_count(usage.get("total_tokens")) or min(prompt + completion, MAX_TOKEN_COUNT)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cached_tokens": cached,
    }


def estimated_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """A usage record the proxy estimated, marked so: charged like real usage, told apart in
    the records."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cached_tokens": 0,
        "estimated": True,
    }


def first_count(*values: object) -> int:
    """The first of `values` that is a count (servers name cache counts differently), else 0."""
    for value in values:
        if (count := token_count(value)) is not None:
            return count
    return 0
