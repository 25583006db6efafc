"""What the Overview, key and /me pages show of the usage aggregates: pure folds of the cells
one read returned, through the same UsageQuery reports as GET /admin/usage, so a card and the
API can never disagree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.usage import Cell, Tally
from shared.usage_query import UsageQuery, build_query

Cells = Sequence[tuple[Cell, Tally]]
"""Cells as Tallies: decoded from Redis' fields once (reads.usage_cells), then folded by each
card and table (adding Tallies costs a fraction of parsing fields again)."""
DAY_SECONDS = 86400
TOP = 10
CHART_TOKENS = (
    ("uncached_input_tokens", "input"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_5m_tokens", "cache write 5m"),
    ("cache_write_1h_tokens", "cache write 1h"),
    ("output_tokens", "output"),
)
"""Counter -> label: the token categories priced apart, as stacked in the charts."""


def window_starts(now: datetime) -> list[tuple[str, int]]:
    """(label, unix seconds) of the cards: today, the last 7 and the last 30 days, as whole
    UTC days (today included), so each reads day buckets, never hours."""
    midnight = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    return [
        ("Today", midnight),
        ("7 days", midnight - 6 * DAY_SECONDS),
        ("30 days", month_start(now)),
    ]


def month_start(now: datetime) -> int:
    """Unix seconds of the 30-day window's start: UTC midnight 29 days before today."""
    midnight = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    return midnight - 29 * DAY_SECONDS


def query(
    since_seconds: int, now: datetime, group_by: str, filters: Mapping[str, str] | None = None
) -> UsageQuery:
    return build_query(
        since=str(since_seconds),
        until=None,
        group_by=group_by,
        filters=dict(filters or {}),
        now_ms=int(now.timestamp() * 1000),
    )


def report(cells: Cells, usage_query: UsageQuery) -> dict[str, Any]:
    return usage_query.report(usage_query.fold(cells))


def error_rate(totals: Mapping[str, Any]) -> str:
    requests = totals["requests"]
    return f"{100 * totals['errors'] / requests:.1f}%" if requests else "–"


def cards(cells: Cells, now: datetime, filters: Mapping[str, str] | None = None) -> list[dict]:
    """Totals of each window, with the error rate."""
    shown = []
    for label, since in window_starts(now):
        totals = report(cells, query(since, now, "day", filters))["totals"]
        shown.append({"label": label, "error_rate": error_rate(totals), **totals})
    return shown


def days(since_seconds: int, now: datetime) -> list[str]:
    """Every UTC day from `since` to now, so a day without requests is a zero, not a gap."""
    first = since_seconds - since_seconds % DAY_SECONDS
    last = int(now.timestamp())
    return [
        datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")
        for day in range(first, last + 1, DAY_SECONDS)
    ]


def daily(
    cells: Cells, now: datetime, since_seconds: int, filters: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per day (zeros included): the `day` groups of the report."""
    by_day = {
        g["key"]["day"]: g
        for g in report(cells, query(since_seconds, now, "day", filters))["groups"]
    }
    empty = Tally().summary()
    return [{"day": day, **(by_day.get(day) or empty)} for day in days(since_seconds, now)]


def chart(rows: Sequence[Mapping[str, Any]], series: Iterable[tuple[str, str]]) -> dict:
    """A chart's data for the pages' script: x in unix seconds, one list per series."""
    x = [
        int(datetime.strptime(row["day"], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        for row in rows
    ]
    return {
        "x": x,
        "series": [
            {"label": label, "values": [row[name] for row in rows]} for name, label in series
        ],
    }


def spend_chart(rows: Sequence[Mapping[str, Any]]) -> dict:
    shown = chart(rows, ())
    shown["series"] = [{"label": "spend (USD)", "values": [float(row["cost_usd"]) for row in rows]}]
    return shown


def top(cells: Cells, now: datetime, since_seconds: int, by: str) -> list[dict[str, Any]]:
    """The TOP groups of `by` (key, user, model, client_app) by requests, then spend."""
    groups = report(cells, query(since_seconds, now, by))["groups"]
    groups.sort(key=lambda g: (-g["requests"], -float(g["cost_usd"])))
    return groups[:TOP]


def unpriced_models(cells: Cells, now: datetime, since_seconds: int) -> list[dict[str, Any]]:
    """Models with requests no price covered, most first."""
    groups = report(cells, query(since_seconds, now, "model"))["groups"]
    found = [g for g in groups if g["unpriced_requests"]]
    return sorted(found, key=lambda g: -g["unpriced_requests"])


def price_stub(model: str) -> str:
    """A price-file entry to paste and fill in that prices exactly `model`: glob characters
    (the file reads a name holding `*`, `?` or `[` as a pattern) are bracketed to match only
    themselves, and the name is a TOML basic string (JSON's escapes are TOML's, but for DEL,
    which TOML wants escaped too)."""
    literal = "".join(f"[{c}]" if c in "*?[" else c for c in model)
    name = orjson.dumps(literal).decode().replace("\x7f", "\\u007f")
    return f'[models.{name}]\ninput = "0"\noutput = "0"\n'


STACKED_SERIES = 8


def group_tokens(group: Mapping[str, Any]) -> int:
    """A group's tokens, every category the charts stack."""
    return sum(group[name] for name, _ in CHART_TOKENS)


def stacked_by(
    groups: Sequence[Mapping[str, Any]], dimension: str
) -> tuple[list[dict[str, Any]], list[tuple[str, str]], dict]:
    """Rows, columns and chart of a `day,<dimension>` report: tokens per day, one series per
    value of the dimension (the STACKED_SERIES largest, the rest as "other")."""
    totals: dict[Any, int] = {}
    for group in groups:
        value = group["key"][dimension]
        totals[value] = totals.get(value, 0) + group_tokens(group)
    ranked = sorted(totals, key=lambda value: -totals[value])
    shown = ranked[:STACKED_SERIES]
    columns = [(f"s{n}", "(none)" if v is None else str(v)) for n, v in enumerate(shown)]
    if len(ranked) > STACKED_SERIES:
        columns.append(("other", "other"))
    column_of = {value: name for (name, _), value in zip(columns, shown, strict=False)}
    by_day: dict[str, dict[str, Any]] = {}
    for group in groups:
        row = by_day.setdefault(group["key"]["day"], {"day": group["key"]["day"]})
        name = column_of.get(group["key"][dimension], "other")
        row[name] = row.get(name, 0) + group_tokens(group)
    rows = [{**{name: 0 for name, _ in columns}, **by_day[day]} for day in sorted(by_day)]
    return rows, columns, chart(rows, columns)
