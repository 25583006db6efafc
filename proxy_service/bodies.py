"""Reading and parsing client request bodies once, refusing what the pipeline could not carry.

orjson reads 1,024 levels of nesting but writes only 254, and every record the logger writes
wraps the body a few levels deeper still: a body the proxy accepted but the logger could not
re-serialise would cost its record its shape (or, before the logger learned to write such
records unprocessed, the logger itself). So bodies nested deeper than MAX_JSON_DEPTH get a 400
up front, in the route's protocol shape.

Parsing costs memory by the value, not by the byte: 31 MiB of empty objects is 11 million
dicts, about 1 GB and seconds of a frozen loop. So bodies with more than MAX_JSON_VALUES values
get a 400 before they are parsed, counted on the bytes (`json_values_within`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import Request

from proxy_service.errors import InvalidRequest, RequestTooLarge
from shared.truncate import cut_text, fit

ORJSON_MAX_DEPTH = 254
"""Deepest nesting orjson.dumps writes (255 raises "Recursion limit reached")."""
VALUE_BYTES = b",{["
"""Outside strings, every value but the first adds a comma or opens a container."""
WHITESPACE = b" \t\r\n"
COUNT_WINDOW = 1 << 18
"""Bytes counted at a time: what the count holds in memory, and how soon it can stop."""


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


def parse_json_object(raw: bytes, max_depth: int, max_values: int) -> dict[str, Any]:
    """The parsed body; InvalidRequest for anything but a JSON object of at most `max_depth`
    levels and `max_values` values (counted before parsing)."""
    if not json_values_within(raw, max_values):
        raise InvalidRequest(f"request body has more than {max_values} JSON values")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: {error.msg}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if not nesting_within(body, max_depth):
        raise InvalidRequest(f"request body is nested deeper than {max_depth} levels")
    return body


def json_values_within(raw: bytes, max_values: int) -> bool:
    """Whether the JSON text `raw` holds at most `max_values` values (strings, numbers,
    literals, arrays and objects; object keys are not values of their own).

    Three steps, each only when the one before cannot tell, so real bodies pay next to nothing
    (bench/request_checks.py): every value after the first costs at least 2 bytes, so a body
    under 2 bytes per allowed value passes on its length; then one C-speed pass counts the
    bytes `,{[`, an upper bound (1 + that count) that is off only by what strings hold; only
    past it, the exact count, which stops as soon as it exceeds. For text that is not JSON the
    answer means nothing, and the parse that follows refuses it."""
    if (len(raw) + 1) // 2 <= max_values:
        return True
    if 1 + _value_bytes(raw) <= max_values:
        return True
    return count_json_values(raw, stop_above=max_values) <= max_values


def count_json_values(raw: bytes, stop_above: int, window: int = COUNT_WINDOW) -> int:
    """The number of values in `raw`, or the first count past `stop_above` reached.

    Outside strings, values = 1 + commas + containers opened - empty containers (each
    non-empty container has one comma fewer than elements). The text is taken `window` bytes
    at a time: escapes dropped (a window never ends in a backslash, so none is cut), strings
    replaced by one placeholder byte, whitespace dropped, then counted with bytes methods."""
    count, in_string, last = 1, False, b""
    for text in _windows(raw, window):
        if b"\\" in text:
            text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
        pieces = text.split(b'"')
        outside = b"0".join(pieces[in_string::2])
        in_string ^= (len(pieces) - 1) % 2 == 1
        if in_string and len(pieces) > 1:
            outside += b"0"  # the string begun here; it ends in a later window
        outside = outside.translate(None, WHITESPACE)
        joined = last + outside  # an empty container may straddle two windows
        count += len(outside) - len(outside.translate(None, VALUE_BYTES))
        count -= joined.count(b"{}") + joined.count(b"[]")
        if count > stop_above:
            return count
        last = outside[-1:] or last
    return count


def _value_bytes(raw: bytes) -> int:
    """How many of the bytes are `,{[`, a window at a time (the count copies what it reads)."""
    counted = 0
    for start in range(0, len(raw), COUNT_WINDOW):
        part = raw[start : start + COUNT_WINDOW]
        counted += len(part) - len(part.translate(None, VALUE_BYTES))
    return counted


def _windows(raw: bytes, size: int) -> Iterator[bytes]:
    start = 0
    while start < len(raw):
        end = min(start + size, len(raw))
        while end < len(raw) and raw[end - 1] == 0x5C:  # a backslash: keep its escaped byte
            end += 1
        yield raw[start:end]
        start = end


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


def logged_prompt(raw: bytes, body: dict[str, Any] | None, budget: int | None) -> Any:
    """The prompt for the usage event: cut to about `budget` bytes as the logger would cut it
    (shared/truncate.py), or with no budget (FULL_TRACE_LOGGING) the client's bytes embedded
    verbatim when they parsed.

    Cut here, not only in the logger: an 80-370 KB body would otherwise go through the event
    buffers, Redis and the logger whole, to be cut to 2 KB at the end (the logger and Redis then
    spent ~600 µs of their core per event; cutting costs the proxy ~80 µs at 78 KB, 260 µs at
    370 KB, after the response is sent). The logger cuts again (a no-op) and bounds the line."""
    if body is None:
        text = raw.decode("utf-8", "replace")
        return text if budget is None else cut_text(text, budget)
    if budget is None:
        return orjson.Fragment(raw)
    return fit(body, budget, len(raw))  # raw is at least as long as the body re-serialised
