"""Truncation of prompt and response, so records stay small, valid JSON with visible structure.

Long strings are cut with a marker giving their original length; if that is not enough, long
lists keep their first and last items with a marker item in between. Pure functions of JSON as
orjson parses it: the walks test exact types (dict, list, str), which is what keeps them fast.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import orjson

MIN_KEPT_CHARS = 32
KEPT_LIST_ENDS = 2
MARKER_LENGTH = len("…[truncated, 1000000 chars]")
SHORTEST_CUT = MIN_KEPT_CHARS + MARKER_LENGTH
"""Strings this long or shorter are never cut, whatever the limit."""


def truncation_marker(original_length: int) -> str:
    return f"…[truncated, {original_length} chars]"


def cut_text(text: str, limit: int) -> str:
    """`text` kept to its first `limit` characters and a marker, if that makes it shorter."""
    if len(text) <= limit + MARKER_LENGTH:
        return text
    return text[:limit] + truncation_marker(len(text))


def fit(value: Any, budget: int) -> Any:
    """`value` cut until it serialises to about `budget` characters at most: long strings
    first, then the longest lists, one at a time."""
    size = _size(value)
    if size <= budget:
        return value
    lengths, longest = _survey(value)
    cut, size = _cut_strings_to_fit(value, lengths, size, budget)
    while size > budget and longest is not None:
        cut = _replace_at(cut, longest[1], _shorten_list)
        size = _size(cut)
        longest = _survey(cut)[1] if size > budget else None
    return cut


def _size(value: Any) -> int:
    return len(orjson.dumps(value))


def _survey(value: Any) -> tuple[list[int], tuple[int, tuple] | None]:
    """One walk for all `fit` needs to know: the lengths of the strings a limit could cut (no
    estimate counts the others), and the (length, path) of the longest list worth shortening,
    the first one in document order among equals. Cutting strings leaves every list as it was."""
    lengths: list[int] = []
    lists: list[tuple[int, tuple]] = []

    def visit(node: dict | list, path: tuple) -> None:
        if type(node) is dict:
            children: Any = node.items()
        else:
            if len(node) > 2 * KEPT_LIST_ENDS + 1:
                lists.append((len(node), path))
            children = enumerate(node)
        for key, item in children:
            kind = type(item)
            if kind is str:
                if len(item) > SHORTEST_CUT:
                    lengths.append(len(item))
            elif kind is dict or kind is list:
                visit(item, (*path, key))

    kind = type(value)
    if kind is str and len(value) > SHORTEST_CUT:
        lengths.append(len(value))
    elif kind is dict or kind is list:
        visit(value, ())
    return lengths, max(lists, key=itemgetter(0), default=None)


def _cut_strings_to_fit(value: Any, lengths: list[int], size: int, budget: int) -> tuple[Any, int]:
    """(value, serialised size) with long strings cut: at the largest limit the size estimate
    allows, halved down to MIN_KEPT_CHARS while that is still too big. A limit that cuts no
    string leaves the value as it is, without copying it."""
    limit = _largest_fitting_limit(lengths, size, budget)
    longest_string = max(lengths, default=0)
    while True:
        cut, cut_size = value, size
        if longest_string > limit + MARKER_LENGTH:
            cut = _cut_strings(value, limit)
            cut_size = _size(cut)
        if cut_size <= budget or limit == MIN_KEPT_CHARS:
            return cut, cut_size
        limit = max(MIN_KEPT_CHARS, limit // 2)


def _estimated_size(lengths: list[int], size: int, limit: int) -> int:
    """Serialised size after cutting every string longer than `limit` (ASCII estimate)."""
    saved = sum(n - limit - MARKER_LENGTH for n in lengths if n > limit + MARKER_LENGTH)
    return size - saved


def _largest_fitting_limit(lengths: list[int], size: int, budget: int) -> int:
    low, high = MIN_KEPT_CHARS, max(lengths, default=MIN_KEPT_CHARS)
    while low < high:
        middle = (low + high + 1) // 2
        if _estimated_size(lengths, size, middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _cut_strings(value: Any, limit: int) -> Any:
    kind = type(value)
    if kind is str:
        return cut_text(value, limit)
    if kind is dict:
        return {key: _cut_strings(item, limit) for key, item in value.items()}
    if kind is list:
        return [_cut_strings(item, limit) for item in value]
    return value


def _replace_at(value: Any, path: tuple, change: Any) -> Any:
    if not path:
        return change(value)
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace_at(value[head], rest, change)}
    copy = list(value)
    copy[head] = _replace_at(value[head], rest, change)
    return copy


def _shorten_list(items: list) -> list:
    omitted = len(items) - 2 * KEPT_LIST_ENDS
    return [*items[:KEPT_LIST_ENDS], f"…[{omitted} items omitted]", *items[-KEPT_LIST_ENDS:]]


def truncate_stream_response(response: dict[str, Any], budget: int, max_chunks: int) -> dict:
    """A streamed response: the assembled result first (half the budget at most), then at most
    `max_chunks` chunks in what is left."""
    assembled = fit(response.get("assembled"), budget // 2)
    chunks = response.get("chunks") or []
    kept = fit(chunks[:max_chunks], max(budget - _size(assembled), MIN_KEPT_CHARS))
    return {**response, "assembled": assembled, "chunks": kept}


def truncate_record(
    record: dict[str, Any], *, max_field_size: int, max_chunks: int, full_trace: bool
) -> dict[str, Any]:
    """The record as events.jsonl keeps it under the README's rules."""
    if full_trace:
        return record
    response = record.get("response")
    if isinstance(response, dict) and "assembled" in response and "chunks" in response:
        response = truncate_stream_response(response, max_field_size, max_chunks)
    else:
        response = fit(response, max_field_size)
    return {**record, "prompt": fit(record.get("prompt"), max_field_size), "response": response}
