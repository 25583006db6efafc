"""The recent-requests window: the last RECENT_REQUESTS_MAX record lines, metadata only, newest
read first, for the dashboard's Requests page.

The logger's rollup adds one entry per line it counts to its shard's window (recent_requests(k))
in the transaction that counts the line (logger_service/rollup.py), so it is an exact function
of the event files like the aggregates: rebuilt with them, never holding a line twice. An entry
has one field, ENTRY_FIELD, a JSON array of the SLIM_FIELDS values in order (~280 bytes in
Redis, ~14 MB for 50,000): a field per value took Redis about 4 times as long to add (an XADD's
work grows with its arguments) for the same memory. Each text is cut to MAX_TEXT_CHARS, so an
entry is small whatever a client sent; it holds neither prompt nor response.

A page is read by keyset on the stream ids (`before`, exclusive), newest first, the shards'
windows merged by (id, shard): a page costs what it scans whatever the windows hold, and pages
do not shift as new requests arrive. A filter
that matches little stops after `scan_budget` entries and hands back a cursor to go on from.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from shared.redis_names import recent_requests
from shared.truncate import cut_text
from shared.usage import record_tokens
from shared.usage_split import CATEGORIES

ENTRY_FIELD = "r"
"""The one field of an entry: its SLIM_FIELDS values as a JSON array."""
MAX_TEXT_CHARS = 256
"""Characters a text value keeps (then a `…[truncated, N chars]` marker)."""
SLIM_FIELDS = (
    "started_at_ms",
    "request_id",
    "key_id",
    "user_id",
    "client_app",
    "protocol",
    "model",
    "upstream_id",
    "status_code",
    "outcome",
    "error",
    "stream",
    "usage_estimated",
    "latency_ms",
    "tokens",
    "cost_usd",
    "cost_status",
)
"""What an entry keeps, in its array's order; later versions only append (an entry of an older
layout reads with the newer fields as None). `protocol` is the route the request came in on;
`tokens` is stored as the counts in CATEGORIES order."""
TOKENS_AT = SLIM_FIELDS.index("tokens")
OUTCOMES = ("complete", "client_aborted", "rejected", "failed", "unknown")
"""complete: answered without error (below 400); client_aborted: the client went away (499);
rejected: any other 4xx (bad request, key, limit, budget; the proxy's or the upstream's);
failed: 5xx, or an error after a 2xx began (a stream the upstream cut); unknown: no status."""
STREAM_MARK = b',"response":{"chunk_count":'
"""How a record line holds a streamed response (logger_service/assemble.py, chunk_count first)."""
STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_ID_PART = 2**64 - 1
READ_COUNT = 500
"""Entries one XREVRANGE reads."""


def line_streamed(line: bytes) -> bool:
    """Whether a record line's response is a stream's chunks, found without parsing the line
    (the rollup never parses prompts and responses): only a nested key that a client or upstream
    spelled exactly so could mislabel its own request."""
    return STREAM_MARK in line


def slim_fields(record: Mapping[str, Any], streamed: bool | None = None) -> dict[str, Any]:
    """SLIM_FIELDS of a record as the logger writes it: texts (cut), whole numbers, flags,
    `tokens` by category; None where the record has no usable value. `streamed`: whether its
    response was streamed, for a caller that did not parse the response (line_streamed); None
    reads the record's `response`. A compacted or unprocessed record no longer shows it: None."""
    status = record.get("status_code")
    usage = record.get("usage")
    tokens = record.get("tokens")
    if not isinstance(tokens, Mapping):  # a record older than `tokens`: its usage's split
        tokens = record_tokens(record)
    cost = record.get("cost")
    cost = cost if isinstance(cost, Mapping) else {}
    if streamed is None:
        response = record.get("response")
        streamed = isinstance(response, Mapping) and "chunk_count" in response
    shown = record.get("compacted") is not True and "unprocessed" not in record
    return {
        "started_at_ms": _integer(record.get("started_at_ms")),
        "request_id": _text(record.get("request_id")),
        "key_id": _text(record.get("key_id")),
        "user_id": _text(record.get("user_id")),
        "client_app": _text(record.get("client_app")),
        "protocol": _text(record.get("protocol")),
        "model": _text(record.get("model")),
        "upstream_id": _text(record.get("upstream_id")),
        "status_code": _integer(status),
        "outcome": outcome(status, record.get("error")),
        "error": _text(record.get("error")),
        "stream": streamed if shown else None,
        "usage_estimated": isinstance(usage, Mapping) and usage.get("estimated") is True,
        "latency_ms": _integer(record.get("latency_ms")),
        "tokens": None if tokens is None else {c: _count(tokens.get(c)) for c in CATEGORIES},
        "cost_usd": _text(cost.get("usd")),
        "cost_status": _text(cost.get("status")),
    }


def entry_value(fields: Mapping[str, Any]) -> bytes:
    """ENTRY_FIELD's value for slim_fields' output."""
    values = [fields.get(name) for name in SLIM_FIELDS]
    tokens = fields.get("tokens")
    values[TOKENS_AT] = None if tokens is None else [tokens.get(c, 0) for c in CATEGORIES]
    return orjson.dumps(values)


def outcome(status: Any, error: Any) -> str:
    """One of OUTCOMES, from a record's status_code and error."""
    if type(status) is not int:
        return "unknown"
    if status == 499:
        return "client_aborted"
    if 400 <= status < 500:
        return "rejected"
    return "failed" if status >= 500 or error is not None else "complete"


def _text(value: Any) -> str | None:
    """A string cut to MAX_TEXT_CHARS; a number as text (a hand-edited line's user_id)."""
    if isinstance(value, str):
        return cut_text(value, MAX_TEXT_CHARS)
    if type(value) is int or type(value) is float:
        return str(value)
    return None


def _integer(value: Any) -> int | None:
    """A whole number (a float, as another writer may give a latency, rounded)."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return round(value)
    return None


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


@dataclass(frozen=True, slots=True)
class RecentRequest:
    """One window entry, read back; None where the entry holds no usable value (a record that
    lacked it, an entry of another layout)."""

    id: str
    """The stream id: the page cursor, and the window's order (the files')."""
    started_at_ms: int | None = None
    request_id: str | None = None
    key_id: str | None = None
    user_id: str | None = None
    client_app: str | None = None
    protocol: str | None = None
    model: str | None = None
    upstream_id: str | None = None
    status_code: int | None = None
    outcome: str | None = None
    error: str | None = None
    stream: bool | None = None
    usage_estimated: bool | None = None
    latency_ms: int | None = None
    tokens: dict[str, int] | None = None
    """Category (shared/usage_split.py) -> count; None for a request without usage."""
    cost_usd: str | None = None
    """Exact decimal text; None when unpriced (or not priced at all)."""
    cost_status: str | None = None

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: Mapping[Any, Any]) -> RecentRequest:
        """From XRANGE's (id, fields), bytes or (decode_responses) str."""
        raw = fields.get(ENTRY_FIELD.encode(), fields.get(ENTRY_FIELD))
        try:
            values = orjson.loads(raw) if raw else []
        except orjson.JSONDecodeError:
            values = []
        if not isinstance(values, list):
            values = []
        pairs = zip(SLIM_FIELDS, values, strict=False)  # another layout's may be longer, shorter
        kept = {name: READERS[name](value) for name, value in pairs}
        return cls(id=_decoded(entry_id), **kept)


def _decoded(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_int(value: Any) -> int | None:
    return value if type(value) is int else None


def _as_str(value: Any) -> str | None:
    return value if type(value) is str else None


def _as_bool(value: Any) -> bool | None:
    return value if type(value) is bool else None


def _as_tokens(value: Any) -> dict[str, int] | None:
    if type(value) is not list:
        return None
    return {c: _count(value[i]) if i < len(value) else 0 for i, c in enumerate(CATEGORIES)}


READERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(SLIM_FIELDS, _as_str),
    **dict.fromkeys(("started_at_ms", "status_code", "latency_ms"), _as_int),
    **dict.fromkeys(("stream", "usage_estimated"), _as_bool),
    "tokens": _as_tokens,
}
"""Field -> its value read back, or None when it is not of the field's type."""


@dataclass(frozen=True, slots=True)
class RecentFilter:
    """Which rows a page keeps: every condition set must hold. Texts are compared as the window
    cuts them, so a model name longer than MAX_TEXT_CHARS still finds its requests."""

    key_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    status_class: int | None = None
    """The status code's first digit: 2 for 2xx, ..., 5 for 5xx."""
    outcome: str | None = None
    """One of OUTCOMES."""
    since_ms: int | None = None
    """Started at or after (ms since the epoch)."""
    until_ms: int | None = None
    """Started before (exclusive)."""

    def __post_init__(self) -> None:
        if self.status_class is not None and not 1 <= self.status_class <= 5:
            raise ValueError(f"status class must be 1 to 5 (2 for 2xx), not {self.status_class}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        for name in ("key_id", "user_id", "model"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _text(value))

    def accepts(self, row: RecentRequest) -> bool:
        if self.key_id is not None and row.key_id != self.key_id:
            return False
        if self.user_id is not None and row.user_id != self.user_id:
            return False
        if self.model is not None and row.model != self.model:
            return False
        if self.outcome is not None and row.outcome != self.outcome:
            return False
        if self.status_class is not None and (
            row.status_code is None or row.status_code // 100 != self.status_class
        ):
            return False
        started = row.started_at_ms
        if self.since_ms is not None and (started is None or started < self.since_ms):
            return False
        return self.until_ms is None or (started is not None and started < self.until_ms)


@dataclass(frozen=True, slots=True)
class RecentPage:
    rows: list[RecentRequest]
    """Newest first."""
    next_before: str | None
    """The `before` of the next (older) page; None when the window's end was reached."""
    scanned: int
    """Window entries read for this page (at most the scan budget)."""
    reached_end: bool
    """Whether the window's oldest entry was read: there is no older page."""


def parse_cursor(before: str) -> tuple[str, int]:
    """`before` as (stream id, shard): `1700000000000-0`, or `1700000000000-0.2` for an entry
    of shard 2's window (ids of two shards' windows can be equal); ValueError otherwise."""
    entry, _, shard = before.partition(".")
    match = STREAM_ID.fullmatch(entry)
    if (
        match is None
        or max(int(match[1]), int(match[2])) > MAX_ID_PART
        or (shard and not (shard.isdigit() and len(shard) <= 4))
    ):
        shown = before if len(before) <= 48 else before[:48] + "…"
        raise ValueError(f"not a page cursor: {shown!r} (a stream id like 1700000000000-0)")
    return entry, int(shard or 0)


def cursor_of(entry_id: str, shard: int, shards: int) -> str:
    return entry_id if shards == 1 else f"{entry_id}.{shard}"


async def newest_first(
    redis: Redis, shards: int, before: tuple[str, int] | None
) -> AsyncIterator[tuple[str, int, dict]]:
    """The entries of every shard's window, newest first (by id, then shard), older than
    `before` (exclusive); each shard read READ_COUNT entries at a time, as the merge needs."""
    heap: list[tuple[tuple[int, int, int], str, int, dict]] = []
    pending: dict[int, list] = {}
    bounds: dict[int, str | None] = {}
    for shard in range(shards):
        if before is None:
            bounds[shard] = "+"
        else:  # (id, shard) < before: the same id too in a lower shard
            entry, at = before
            bounds[shard] = entry if shard < at else "(" + entry

    async def refill(shard: int) -> None:
        bound = bounds[shard]
        if bound is None:
            return
        entries = await redis.xrevrange(recent_requests(shard), bound, "-", READ_COUNT)
        pending[shard] = list(reversed(entries))  # pop() takes the newest
        bounds[shard] = None if len(entries) < READ_COUNT else "(" + _decoded(entries[-1][0])

    def push(shard: int) -> None:
        entry_id, fields = pending[shard].pop()
        entry_id = _decoded(entry_id)
        ms, seq = (int(part) for part in entry_id.split("-"))
        heapq.heappush(heap, ((-ms, -seq, -shard), entry_id, shard, fields))

    for shard in range(shards):
        await refill(shard)
        if pending[shard]:
            push(shard)
    while heap:
        _, entry_id, shard, fields = heapq.heappop(heap)
        yield entry_id, shard, fields
        if not pending[shard]:
            await refill(shard)
        if pending[shard]:
            push(shard)


async def recent_page(
    redis: Redis,
    filters: RecentFilter,
    before: str | None,
    limit: int = 50,
    scan_budget: int = 5000,
    shards: int = 1,
) -> RecentPage:
    """Up to `limit` rows `filters` accepts, newest first over the `shards` windows, older than
    the entry `before` (None: from the newest), reading at most `scan_budget` entries."""
    if limit < 1 or scan_budget < 1:
        raise ValueError("limit and scan_budget must be at least 1")
    start = None if before is None else parse_cursor(before)
    rows: list[RecentRequest] = []
    scanned = 0
    entries = newest_first(redis, shards, start)
    try:
        async for entry_id, shard, fields in entries:
            scanned += 1
            row = RecentRequest.from_entry(entry_id, fields)
            if filters.accepts(row):
                rows.append(row)
            cursor = cursor_of(entry_id, shard, shards)
            if len(rows) == limit or scanned >= scan_budget:
                more = await anext(entries, None) is not None
                return RecentPage(rows, cursor if more else None, scanned, not more)
    finally:
        await entries.aclose()
    return RecentPage(rows, None, scanned, True)
