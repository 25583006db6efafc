"""The usage event: one per authenticated request, from proxy to stream to events.jsonl."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Protocol = Literal[
    "openai_chat",
    "openai_embeddings",
    "openai_responses",
    "anthropic_messages",
    "anthropic_count_tokens",
]
"""The API a request came in on; the proxy's metrics label every protocol listed here."""


class Usage(BaseModel):
    """Token counts as the README names them, plus the cache counts the upstream reports."""

    model_config = ConfigDict(extra="allow")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0


class UsageEvent(BaseModel):
    """One record per request; field names and order are those of the original README."""

    model_config = ConfigDict(extra="allow")

    request_id: str
    protocol: Protocol
    client_app: str
    user_id: str
    key_id: str
    upstream_id: str | None = None
    model: str | None = None
    started_at_ms: int
    ended_at_ms: int
    latency_ms: int
    status_code: int
    error: str | None = None
    prompt: Any = None
    response: Any = None
    usage: Usage | None = None
    tokens: dict[str, int] | None = None
    """The usage split into priced categories (shared/usage_split.py), from `usage`."""
    cost: dict[str, Any] | None = None
    """What the logger priced `tokens` at (shared/prices.py), added when it writes the line."""


EVENT_FIELDS: tuple[str, ...] = tuple(UsageEvent.model_fields)
