"""Usage counters of a set of requests: the unit every usage report adds up.

The logger keeps one Tally per cell (hour, group), the group being (user_id, key_id, model,
client_app), in Redis and in the sidecars of rotated event files; reports merge cells. Latency
is a histogram of BUCKETS_PER_DECADE log-spaced buckets, so merged tallies still give
percentiles: a percentile is the geometric middle of the bucket holding the nearest-rank value,
within 3% of it plus rounding to whole milliseconds (exact under 20 ms). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HOUR_MS = 3_600_000
BUCKETS_PER_DECADE = 40
PERCENTILES = (50, 90, 99)
DIMENSIONS = ("user_id", "key_id", "model", "client_app")
COUNTERS = ("requests", "errors", "input_tokens", "output_tokens", "cache_tokens", "total_tokens")
TOKEN_SOURCES = {
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "cache_tokens": "cached_tokens",
    "total_tokens": "total_tokens",
}
"""Counter -> field of the record's `usage` object it sums."""

FIELD_CODES = dict(zip(COUNTERS, "neioct", strict=True))
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
        """The counters and latency percentiles as reports show them."""
        latency = {f"p{p}": self.percentile(p) for p in PERCENTILES}
        return {**self.counts, "latency_ms": latency}

    def to_fields(self) -> dict[str, int]:
        """Flat non-zero fields: `n`, `e`, `i`, `o`, `c`, `t` and `l<bucket>`."""
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
