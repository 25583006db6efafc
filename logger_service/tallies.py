"""Usage tallies of event lines: each line counted into its cell (shared/usage.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from logger_service.eventfiles import line_blocks
from shared.events import EVENT_FIELDS
from shared.usage import Cell, Tally, record_tokens, tally_records

PROMPT_KEY = b',"prompt":'
USAGE_KEY = b',"usage":'
HEAD_FIELDS = frozenset(EVENT_FIELDS[: EVENT_FIELDS.index("prompt")])
MAX_COUNTED_TOKENS = 1 << 40
"""Largest token count of one request that is counted: far above any real one, and far enough
below 2**63 that Redis can add up millions (a larger one, as an upstream may send, would make
every later HINCRBY of its cell fail and stop the rollup for good)."""


def tally_block(block: bytes, cells: dict[Cell, Tally]) -> None:
    """Add every line of a block that is a JSON object to its cell."""
    tally_records(block_records(block), cells)


def block_records(block: bytes) -> Iterator[dict[str, Any]]:
    """What a tally reads from each line of a block that is a JSON object, countable."""
    return map(_countable, filter(None, map(usage_fields, block.splitlines())))


def line_records(block: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """block_records with the line each record is read from (the rollup's window reads the
    line's bytes too)."""
    for line in block.splitlines():
        record = usage_fields(line)
        if record is not None:
            yield line, _countable(record)


def _countable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the token counts no request can have (negative, or past
    MAX_COUNTED_TOKENS), in `usage` and in its split (`tokens`, or an old record's split of its
    usage); other values are skipped by the tally anyway."""
    usage = record.get("usage")
    if isinstance(usage, dict):
        record["usage"] = {
            name: value
            for name, value in usage.items()
            if type(value) is not int or 0 <= value <= MAX_COUNTED_TOKENS
        }
    tokens = record_tokens(record)
    if tokens is not None:
        record["tokens"] = {
            name: value for name, value in tokens.items() if value <= MAX_COUNTED_TOKENS
        }
    return record


def tally_file(file: BinaryIO) -> dict[Cell, Tally]:
    cells: dict[Cell, Tally] = {}
    tally_records(file_records(file), cells)
    return cells


def file_records(file: BinaryIO) -> Iterator[dict[str, Any]]:
    """What a tally reads from each line of a file, countable."""
    for block in line_blocks(file):
        yield from block_records(block)


def usage_fields(line: bytes) -> dict[str, Any] | None:
    """What a tally reads from a line, without parsing its prompt and response when it can
    (head_and_usage); else the whole line, parsed."""
    record = head_and_usage(line)
    if record is not None:
        return record
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def head_and_usage(line: bytes, max_values: int | None = None) -> dict[str, Any] | None:
    """The top-level fields before the prompt, and `usage` with the fields after it (`tokens`,
    `cost`, extras), or None.

    The logger writes the README fields first and in order, `usage` last of them: the counted
    fields are in the short head before `,"prompt":` and in the tail from the top-level
    `,"usage":`, while the prompt and response between them are most of the bytes. A cut at a
    nested key leaves unbalanced braces, so both ends parse only when cut at the top level (a
    string cannot hold the bare quotes); otherwise, or if the head lacks a field that comes
    before the prompt (another writer's order), None; None too, unparsed, when the two ends hold
    more than `max_values` commas (a bound on their JSON values).
    """
    head, tail = line.find(PROMPT_KEY), line.rfind(USAGE_KEY)
    if not 0 <= head < tail:
        return None
    if max_values is not None and line.count(b",", 0, head) + line.count(b",", tail) > max_values:
        return None
    try:
        record = orjson.loads(line[:head] + b"}")
        tail_fields = orjson.loads(b"{" + line[tail + 1 :])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not record.keys() >= HEAD_FIELDS:
        return None
    record.update(tail_fields)
    return record
