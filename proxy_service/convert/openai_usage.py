"""OpenAI `usage` objects in the shape usage events record."""

from __future__ import annotations

from typing import Any


def usage_record(usage: Any) -> dict[str, int] | None:
    """prompt/completion/total tokens plus cached prompt tokens; None when absent or malformed."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    total = _count(usage.get("total_tokens")) or prompt + completion
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cached_tokens": cached,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
