"""Request-body schemas for /docs and API fuzzers. The handlers read raw bytes (parsing them
once, their own way), so these document the main fields without validating anything."""

from __future__ import annotations

from typing import Any

_MESSAGES = {"type": "array", "items": {"type": "object"}}


def json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


CHAT_COMPLETIONS = json_body(
    {
        "model": {"type": "string"},
        "messages": _MESSAGES,
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object"},
        "max_tokens": {"type": "integer"},
    },
    ["model", "messages"],
)

MESSAGES = json_body(
    {
        "model": {"type": "string"},
        "max_tokens": {"type": "integer"},
        "messages": _MESSAGES,
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "tools": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean"},
    },
    ["model", "max_tokens", "messages"],
)
