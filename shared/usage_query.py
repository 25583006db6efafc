"""What a usage report covers and how it groups requests, shared by GET /admin/usage and the
command-line report so both answer the same question the same way. Pure.

Time bounds are widened to whole hours (the resolution of the aggregates); days are UTC. A
range spans at most MAX_RANGE_DAYS, so no question reads more than ~400 day buckets and 48 hours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.timespec import iso_utc, parse_instant
from shared.usage import DIMENSIONS, HOUR_MS, Cell, Group, Tally
from shared.usage_layout import projection_of

GROUPINGS = {
    "day": "day",
    "user": "user_id",
    "key": "key_id",
    "model": "model",
    "client_app": "client_app",
}
"""group_by value -> name of that part of a group's key in reports."""
DIMENSION_INDEX = {name: index for index, name in enumerate(DIMENSIONS)}
DEFAULT_SINCE = "7d"
DEFAULT_GROUP_BY = "day"
MAX_RANGE_DAYS = 400
"""Longest range of one report: over a year, so a year-on-year question fits."""
DAY_MS = 24 * HOUR_MS

GroupKey = tuple[str | None, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UsageQuery:
    first_hour: int
    end_hour: int
    """Exclusive."""
    group_by: tuple[str, ...] = (DEFAULT_GROUP_BY,)
    filters: tuple[tuple[str, str], ...] = ()
    """(dimension, required value) pairs."""

    def projection(self) -> str | None:
        """The day projection (shared/usage_layout.py) that answers this query's whole days:
        the one of the dimension it groups by or filters on, if only one (or none)."""
        dimensions = {DIMENSION_INDEX[GROUPINGS[by]] for by in self.group_by if by != "day"}
        dimensions |= {DIMENSION_INDEX[name] for name, _ in self.filters}
        return projection_of(frozenset(dimensions))

    def accepts(self, group: Group) -> bool:
        return all(group[DIMENSION_INDEX[name]] == value for name, value in self.filters)

    def key_of(self, hour: int, group: Group) -> GroupKey:
        return tuple(
            day_of(hour) if by == "day" else group[DIMENSION_INDEX[GROUPINGS[by]]]
            for by in self.group_by
        )

    def fold(
        self, cells: Iterable[tuple[Cell, T]], add: Callable[[Tally, T], None] = Tally.add
    ) -> dict[GroupKey, Tally]:
        """The cells in range and passing the filters, added up per group key; cells are
        Tallies, or with `add=Tally.add_fields` their fields as stored."""
        folded: dict[GroupKey, Tally] = {}
        for (hour, group), tally in cells:
            if not self.first_hour <= hour < self.end_hour or not self.accepts(group):
                continue
            key = self.key_of(hour, group)
            target = folded.get(key)
            if target is None:
                target = folded[key] = Tally()
            add(target, tally)
        return folded

    def report(self, folded: Mapping[GroupKey, Tally]) -> dict[str, Any]:
        """The JSON answer of GET /admin/usage (the command-line table shows the same)."""
        totals = Tally()
        for tally in folded.values():
            totals.add(tally)
        names = [GROUPINGS[by] for by in self.group_by]
        groups = [
            {"key": dict(zip(names, key, strict=True)), **folded[key].summary()}
            for key in sorted(folded, key=sort_key)
        ]
        return {
            "since": iso_utc(self.first_hour * HOUR_MS),
            "until": iso_utc(self.end_hour * HOUR_MS),
            "group_by": ",".join(self.group_by),
            "filters": dict(self.filters),
            "groups": groups,
            "totals": totals.summary(),
        }


def build_query(
    *,
    since: str | None,
    until: str | None,
    group_by: str | None,
    filters: Mapping[str, str | None],
    now_ms: int,
) -> UsageQuery:
    """A query from request or command-line parameters; ValueError says what is wrong."""
    since_ms = named_instant("since", since or DEFAULT_SINCE, now_ms)
    until_ms = named_instant("until", until, now_ms) if until else now_ms
    if since_ms >= until_ms:
        raise ValueError("since must be before until")
    if until_ms - since_ms > MAX_RANGE_DAYS * DAY_MS:
        days = (until_ms - since_ms) / DAY_MS
        raise ValueError(f"since to until is over {MAX_RANGE_DAYS} days ({days:.2f})")
    grouping = tuple(part.strip() for part in (group_by or DEFAULT_GROUP_BY).split(","))
    unknown = [part for part in grouping if part not in GROUPINGS]
    if unknown or len(set(grouping)) != len(grouping):
        raise ValueError(f"group_by takes distinct values among {', '.join(GROUPINGS)}")
    unknown_filters = set(filters) - set(DIMENSIONS)
    if unknown_filters:
        raise ValueError(f"unknown filters: {', '.join(sorted(unknown_filters))}")
    return UsageQuery(
        first_hour=since_ms // HOUR_MS,
        end_hour=-(-until_ms // HOUR_MS),
        group_by=grouping,
        filters=tuple((name, value) for name, value in filters.items() if value is not None),
    )


def named_instant(name: str, text: str, now_ms: int) -> int:
    """`text` as an instant (ms), a ValueError naming the parameter `name` otherwise."""
    try:
        return parse_instant(text, now_ms)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


@functools.cache
def day_of(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d")


def sort_key(key: GroupKey) -> tuple:
    """Group keys in order, a missing value (no model) last."""
    return tuple((part is None, part or "") for part in key)
