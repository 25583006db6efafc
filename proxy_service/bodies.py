"""Reading and parsing client request bodies once, refusing what the pipeline could not carry.

orjson reads 1,024 levels of nesting but writes only 254, and every record the logger writes
wraps the body a few levels deeper still: a body the proxy accepted but the logger could not
re-serialise would cost its record its shape (or, before the logger learned to write such
records unprocessed, the logger itself). So bodies nested deeper than MAX_JSON_DEPTH get a 400
up front, in the route's protocol shape.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from fastapi import Request

from proxy_service.errors import InvalidRequest, RequestTooLarge

ORJSON_MAX_DEPTH = 254
"""Deepest nesting orjson.dumps writes (255 raises "Recursion limit reached")."""


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


def parse_json_object(raw: bytes, max_depth: int) -> dict[str, Any]:
    """The parsed body; InvalidRequest for anything but a JSON object of at most `max_depth`
    levels."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: {error.msg}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if not nesting_within(body, max_depth):
        raise InvalidRequest(f"request body is nested deeper than {max_depth} levels")
    return body


def nesting_within(value: Any, max_depth: int) -> bool:
    """Whether `value` nests at most `max_depth` arrays and objects deep.

    Asked of orjson itself, at C speed: placed at the bottom of enough nested lists that a
    deeper value passes orjson's own limit, serialising it raises. The lists are built once per
    depth and reused (the call never awaits, so no other request can see them filled): about a
    quarter of the cost of parsing a large body, where a walk in Python costs as much as the
    parse (bench/request_checks.py)."""
    outer, slot = _wrapper(ORJSON_MAX_DEPTH - max_depth)
    slot[0] = value
    try:
        orjson.dumps(outer)
    except TypeError:  # JSONEncodeError: too deep (a parsed body holds nothing else it refuses)
        return False
    finally:
        slot[0] = None
    return True


@functools.cache
def _wrapper(levels: int) -> tuple[list[Any], list[Any]]:
    """`levels` nested lists: (the outermost, the innermost, whose one item is the value)."""
    slot: list[Any] = [None]
    outer = slot
    for _ in range(levels - 1):
        outer = [outer]
    return outer, slot


def logged_prompt(raw: bytes, body: dict[str, Any] | None) -> Any:
    """The prompt as the client sent it: its bytes embedded verbatim when they parsed."""
    if body is not None:
        return orjson.Fragment(raw)
    return raw.decode("utf-8", "replace")
