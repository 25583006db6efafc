"""Usage counters of a set of requests: the unit every usage report adds up.

The logger keeps one Tally per cell (hour, group), the group being (user_id, key_id, model,
client_app), in Redis and in the sidecars of rotated event files; reports merge cells. Latency
is a histogram of BUCKETS_PER_DECADE log-spaced buckets, so merged tallies still give
percentiles: a percentile is the geometric middle of the bucket holding the nearest-rank value,
within 3% of it plus rounding to whole milliseconds (exact under 20 ms). Pure: no I/O.

Spend is added in integer nano-USD (`nano_usd` of each record's `cost`), so sums are exact and
do not depend on the order they are made in. A record priced or free adds its cost; one whose
cost is unknown (no price for its model) or cannot be added (a hand-edited line's) counts in
`unpriced_requests` and adds nothing, never $0; one written before records had a `cost` counts
in neither.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.prices import nano_usd, usd_text
from shared.usage_split import CATEGORIES, split_usage, token_count

HOUR_MS = 3_600_000
BUCKETS_PER_DECADE = 40
PERCENTILES = (50, 90, 99)
DIMENSIONS = ("user_id", "key_id", "model", "client_app")
COUNTERS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_tokens",
    "total_tokens",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_nano",
    "unpriced_requests",
)
COUNTERS_VERSION = 3
"""Which counters a Tally has, and which buckets hold them: aggregates kept under another
version are rebuilt from the files (logger_service/rollup.py), so a counter or bucket added
later is counted for the past lines too. 3: the day projections (shared/usage_layout.py)."""
TOKEN_SOURCES = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "cache_tokens": "cached_tokens",
    "total_tokens": "total_tokens",
}
"""Counter -> field of the record's `usage` object it sums."""
SPLIT_SOURCES = {
    "uncached_input_tokens": "input",
    "cache_read_tokens": "cache_read",
    "cache_write_5m_tokens": "cache_write_5m",
    "cache_write_1h_tokens": "cache_write_1h",
    "reasoning_tokens": "reasoning",
}
"""Counter -> category of the record's `tokens` it sums (the output is output_tokens)."""
COUNTED_COSTS = frozenset({"priced", "free"})
MAX_COUNTED_NANO_USD = 10**15
"""Largest cost of one request that is added ($1,000,000): far above any real one, and far
enough below 2**63 that Redis can add up thousands of them in a cell (a larger one, which only
a hand-edited line can hold, would make the cell's HINCRBY fail); it counts as unpriced."""

FIELD_CODES = dict(zip(COUNTERS, "neiocturwhgsx", strict=True))
"""Counter -> one-letter field name in Redis hashes and sidecars (there are millions of them)."""
COUNTER_OF_CODE: dict[str | bytes, str] = {
    **{code: name for name, code in FIELD_CODES.items()},
    **{code.encode(): name for name, code in FIELD_CODES.items()},
}
"""Field name, as str or as bytes, -> counter; any other field is `l<latency bucket>`."""
LATENCY_PREFIX = "l"
PLAIN_TYPES = frozenset({str, type(None)})
"""Dimension values kept as they are; others (a hand-edited line's number) become strings."""

Group = tuple[str | None, ...]
"""Values of DIMENSIONS, in that order."""
Cell = tuple[int, Group]
"""(hours since the epoch of started_at_ms, group)."""


def latency_bucket(latency_ms: float) -> int:
    """0 below 1 ms, then bucket b holds [10^((b-1)/40), 10^(b/40)) ms."""
    if latency_ms < 1:
        return 0
    return 1 + math.floor(BUCKETS_PER_DECADE * math.log10(latency_ms))


def bucket_latency_ms(bucket: int) -> int:
    """The value a bucket stands for: its geometric middle, in whole milliseconds."""
    if bucket == 0:
        return 0
    return round(10 ** ((bucket - 0.5) / BUCKETS_PER_DECADE))


def is_error(record: Mapping[str, Any]) -> bool:
    status = record.get("status_code")
    return record.get("error") is not None or (isinstance(status, int) and status >= 400)


def record_tokens(record: Mapping[str, Any]) -> dict[str, int] | None:
    """A record's split (shared/usage_split.py): its `tokens` (a category that is no count
    read as 0), or for a record of a proxy that did not split usage yet, the split of its
    `usage`; None when it has neither."""
    tokens = record.get("tokens")
    if isinstance(tokens, Mapping):
        return {name: token_count(tokens.get(name)) or 0 for name in CATEGORIES}
    usage = record.get("usage")
    return split_usage(usage) if isinstance(usage, Mapping) else None


@dataclass(slots=True)
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency: dict[int, int] = field(default_factory=dict)
    """Latency bucket -> number of requests."""

    def add(self, other: Tally) -> None:
        counts, latency = self.counts, self.latency
        for name, value in other.counts.items():
            counts[name] += value
        for bucket, count in other.latency.items():
            latency[bucket] = latency.get(bucket, 0) + count

    def add_record(self, record: Mapping[str, Any]) -> None:
        counts = self.counts
        counts["requests"] += 1
        if is_error(record):
            counts["errors"] += 1
        usage = record.get("usage")
        if isinstance(usage, dict):
            for counter, source in TOKEN_SOURCES.items():
                value = usage.get(source)
                if isinstance(value, int):
                    counts[counter] += value
        tokens = record_tokens(record)
        if tokens is not None:
            for counter, category in SPLIT_SOURCES.items():
                counts[counter] += tokens[category]
        cost = record.get("cost")
        if isinstance(cost, Mapping):
            nano = nano_usd(cost) if cost.get("status") in COUNTED_COSTS else None
            if nano is None or nano > MAX_COUNTED_NANO_USD:
                counts["unpriced_requests"] += 1
            else:
                counts["cost_nano"] += nano
        latency_ms = record.get("latency_ms")
        if isinstance(latency_ms, int | float) and latency_ms >= 0:
            bucket = latency_bucket(latency_ms)
            self.latency[bucket] = self.latency.get(bucket, 0) + 1

    def percentile(self, percent: float) -> int | None:
        """Nearest-rank percentile of the latencies, at the histogram's resolution."""
        total = sum(self.latency.values())
        if total == 0:
            return None
        rank = max(1, math.ceil(percent / 100 * total))
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return bucket_latency_ms(bucket)
        raise AssertionError("unreachable: rank <= total")

    def summary(self) -> dict[str, Any]:
        """The counters, spend in USD (exact) and latency percentiles as reports show them."""
        counts = {name: value for name, value in self.counts.items() if name != "cost_nano"}
        latency = {f"p{p}": self.percentile(p) for p in PERCENTILES}
        return {**counts, "cost_usd": usd_text(self.counts["cost_nano"]), "latency_ms": latency}

    def to_fields(self) -> dict[str, int]:
        """Flat non-zero fields: one letter per counter (FIELD_CODES) and `l<bucket>`."""
        fields = {FIELD_CODES[name]: value for name, value in self.counts.items() if value}
        fields.update((f"{LATENCY_PREFIX}{bucket}", n) for bucket, n in self.latency.items())
        return fields

    def add_fields(self, fields: Mapping[str | bytes, str | bytes | int]) -> None:
        """Add to_fields() output as Redis (bytes) or JSON (str, int) give it back."""
        counts, latency = self.counts, self.latency
        for name, value in fields.items():
            counter = COUNTER_OF_CODE.get(name)
            if counter is None:
                bucket = int(name[1:])
                latency[bucket] = latency.get(bucket, 0) + int(value)
            else:
                counts[counter] += int(value)

    @classmethod
    def from_fields(cls, fields: Mapping[str | bytes, str | bytes | int]) -> Tally:
        tally = cls()
        tally.add_fields(fields)
        return tally


def cell_of(record: Mapping[str, Any]) -> Cell | None:
    """Where a record is counted; None for one without a start time (a malformed event)."""
    started = record.get("started_at_ms")
    if type(started) is not int:
        return None
    group = tuple(map(record.get, DIMENSIONS))
    if not PLAIN_TYPES.issuperset(map(type, group)):
        group = tuple(None if value is None else str(value) for value in group)
    return started // HOUR_MS, group


def tally_records(records: Iterable[Mapping[str, Any]], cells: dict[Cell, Tally]) -> None:
    """Add each record to its cell in `cells`."""
    for record in records:
        cell = cell_of(record)
        if cell is None:
            continue
        tally = cells.get(cell)
        if tally is None:
            tally = cells[cell] = Tally()
        tally.add_record(record)
