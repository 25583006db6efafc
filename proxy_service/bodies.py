"""Reading and parsing client request bodies once."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from proxy_service.errors import InvalidRequest, RequestTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) one over `limit` bytes before reading it if the length
    is declared, or as soon as it is exceeded when it is not."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise RequestTooLarge(f"request body over {limit} bytes")
        return await request.body()  # the server enforces the declared length
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestTooLarge(f"request body over {limit} bytes")
        parts.append(part)
    return b"".join(parts)


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
