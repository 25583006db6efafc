"""OpenAI `usage` objects in the shape usage events record, and estimates where none came."""

from __future__ import annotations

from typing import Any

from shared.usage_split import MAX_TOKEN_COUNT, normalised_usage, token_count

__all__ = ["MAX_TOKEN_COUNT", "estimated_usage", "token_count", "usage_record"]


def usage_record(usage: Any) -> dict[str, int] | None:
    """prompt/completion/total tokens, cached prompt tokens (and cache writes and reasoning when
    reported) from any upstream usage shape; None when absent. Chat Completions', the Responses
    API's and Anthropic's conventions all come out in the first's (shared/usage_split.py)."""
    return normalised_usage(usage) if isinstance(usage, dict) else None


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
