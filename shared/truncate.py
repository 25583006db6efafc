"""Truncation of records, so events.jsonl lines stay small, valid JSON with visible structure.

`fit(value, budget)` returns `value` cut until it serialises to at most `budget` bytes, whatever
its shape: long strings and object keys keep their start and a marker giving their original
length; a list whose items cannot each keep a readable share keeps its first and last two items
around `…[N items omitted]`, an object in that case its first keys and `…[omitted]`; what is
nested deeper than MAX_DEPTH, or cannot be cut to fit, becomes `…[N bytes omitted]`. The budget
of a list or object is shared out smallest item first (an item that fits its share is kept
whole), so several long strings share it and short ones survive.

The walk goes top-down and only into what is over its share, measuring with orjson (C): its
work follows what is kept, not the size of the value (a list of millions of items costs what a
list of five does). Pure functions of JSON as orjson parses it; exact type tests keep them fast.
"""

from __future__ import annotations

from typing import Any

import orjson

MIN_KEPT_CHARS = 32
KEPT_LIST_ENDS = 2
MAX_KEY_CHARS = 64
"""Object keys longer than this are cut (to MIN_KEPT_CHARS and a marker)."""
MAX_DEPTH = 32
"""Values nested deeper than this are replaced by a marker when they do not fit as they are."""
MARKER_LENGTH = len("…[truncated, 1000000 chars]")
MIN_SHARE = MIN_KEPT_CHARS + MARKER_LENGTH + 8
"""Bytes an item of a cut list or object is given at least: a string keeps MIN_KEPT_CHARS."""
OMITTED_KEY = "…[omitted]"


def truncation_marker(original_length: int) -> str:
    return f"…[truncated, {original_length} chars]"


def cut_text(text: str, limit: int) -> str:
    """`text` kept to its first `limit` characters and a marker, if that makes it shorter."""
    if len(text) <= limit + MARKER_LENGTH:
        return text
    return text[:limit] + truncation_marker(len(text))


def omitted(size: int) -> str:
    return f"…[{size} bytes omitted]"


def size_of(value: Any) -> int:
    """Bytes `value` takes in a record."""
    return len(orjson.dumps(value))


def fit(value: Any, budget: int, size: int | None = None) -> Any:
    """`value`, or a cut copy that serialises to at most `budget` bytes (at least a marker's
    length: a smaller budget gets the marker). `size`: what `value` serialises to, when the
    caller knows it already (a parsed body's raw length), so the walk skips measuring it."""
    size = size_of(value) if size is None else size
    return value if size <= budget else _fit(value, size, budget, 0)


def _fit(value: Any, size: int, budget: int, depth: int) -> Any:
    """`value`, which serialises to `size` > `budget` bytes, cut to fit."""
    kind = type(value)
    cut: Any = None
    if kind is str:
        cut = _fit_text(value, budget)
    elif kind is list and depth < MAX_DEPTH:
        cut = _fit_list(value, budget, depth)
    elif kind is dict and depth < MAX_DEPTH:
        cut = _fit_object(value, budget, depth)
    if cut is not None and size_of(cut) <= budget:
        return cut
    return omitted(size)


def _fit_text(text: str, budget: int) -> str | None:
    """The longest cut of `text` that fits, found in a few proportional steps (escapes and
    non-ASCII characters take more than a byte); None when not even MIN_KEPT_CHARS fit."""
    limit = budget - MARKER_LENGTH - 2
    while limit >= MIN_KEPT_CHARS:
        cut = cut_text(text, limit)
        size = size_of(cut)
        if size <= budget:
            return cut
        limit = min(limit - 1, limit * budget // size)
    return None


def _fit_list(items: list, budget: int, depth: int) -> list:
    count = len(items)
    if count > 2 * KEPT_LIST_ENDS + 1 and count * (MIN_SHARE + 1) > budget:
        marker = f"…[{count - 2 * KEPT_LIST_ENDS} items omitted]"
        head, tail = items[:KEPT_LIST_ENDS], items[-KEPT_LIST_ENDS:]
        kept = _fit_items([*head, *tail], budget - size_of(marker) - 1, depth)
        return [*kept[:KEPT_LIST_ENDS], marker, *kept[KEPT_LIST_ENDS:]]
    return _fit_items(items, budget, depth)


def _fit_object(value: dict, budget: int, depth: int) -> dict:
    """Keys cut to MAX_KEY_CHARS; as many first entries as can each keep MIN_SHARE bytes."""
    keys: list[str] = []
    values: list[Any] = []
    room = budget - 2
    for key, item in value.items():
        key = cut_text(key, MIN_KEPT_CHARS) if len(key) > MAX_KEY_CHARS else key
        room -= size_of(key) + 2
        if room < MIN_SHARE:
            break
        if key not in keys:  # two long keys may cut alike: the first is kept
            keys.append(key)
            values.append(item)
            room -= MIN_SHARE
    left = len(value) - len(keys)
    marker = {OMITTED_KEY: f"{left} keys"} if left else {}
    available = budget - 2 - size_of(marker) - sum(size_of(key) + 2 for key in keys)
    cut = dict(zip(keys, _fit_items(values, available + 2, depth), strict=True))
    return {**cut, **marker}


def _fit_items(items: list, budget: int, depth: int) -> list:
    """`items` (a list's or an object's values) sharing `budget` less brackets and commas:
    smallest first, each kept whole if it fits its share of what is left, else cut to it."""
    sizes = [size_of(item) for item in items]
    left = budget - 2 - max(len(items) - 1, 0)
    shares: list[int | None] = [None] * len(items)
    remaining = len(items)
    for index in sorted(range(len(items)), key=sizes.__getitem__):
        share = left // remaining
        if sizes[index] > share:
            shares[index] = share
        left -= min(sizes[index], share)
        remaining -= 1
    return [
        item if share is None else _fit(item, size, share, depth + 1)
        for item, size, share in zip(items, sizes, shares, strict=True)
    ]


def truncate_stream_response(response: dict[str, Any], budget: int, max_chunks: int) -> dict:
    """A streamed response: the assembled result first (half the budget at most), then at most
    `max_chunks` chunks in what is left; the other fields (counts, `unassembled`) in a small
    share of their own."""
    assembled = fit(response.get("assembled"), budget // 2)
    chunks = response.get("chunks")
    chunks = chunks[:max_chunks] if type(chunks) is list else chunks
    kept = fit(chunks, max(budget - size_of(assembled), MIN_SHARE))
    others = {
        name: value for name, value in response.items() if name not in ("assembled", "chunks")
    }
    return {**fit(others, MIN_SHARE * 4), "assembled": assembled, "chunks": kept}


def truncate_record(
    record: dict[str, Any], *, max_field_size: int, max_chunks: int, full_trace: bool
) -> dict[str, Any]:
    """The record as events.jsonl keeps it under the README's rules (prompt and response;
    records.py bounds the whole line)."""
    if full_trace:
        return record
    response = record.get("response")
    if type(response) is dict and "assembled" in response and "chunks" in response:
        response = truncate_stream_response(response, max_field_size, max_chunks)
    else:
        response = fit(response, max_field_size)
    return {**record, "prompt": fit(record.get("prompt"), max_field_size), "response": response}
