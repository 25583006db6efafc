"""Reading and parsing client request bodies once."""

from __future__ import annotations

from typing import Any

import orjson

from proxy_service.errors import InvalidRequest


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The parsed body; InvalidRequest for anything but a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: {error.msg}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def logged_prompt(raw: bytes, body: dict[str, Any] | None) -> Any:
    """The prompt as the client sent it: its bytes embedded verbatim when they parsed."""
    if body is not None:
        return orjson.Fragment(raw)
    return raw.decode("utf-8", "replace")
