"""Tokens (or spend) per day per user as a self-contained HTML page: stacked bars in inline SVG,
no script and nothing fetched, so it opens anywhere (an air-gapped laptop included). Pure."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from shared.prices import usd_text
from shared.usage import Tally
from shared.usage_query import GroupKey


@dataclass(frozen=True, slots=True)
class Metric:
    """What the bars stack: a counter of the tallies, and how its values read."""

    counter: str
    title: str
    """What the chart shows, per day per user."""
    description: str
    axis: str
    tick: Callable[[float], str]
    text: Callable[[int], str]


def _short(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


METRICS = {
    "tokens": Metric(
        "total_tokens",
        "Tokens",
        "Total tokens",
        "tokens",
        _short,
        lambda tokens: f"{tokens:,} tokens",
    ),
    "cost": Metric(
        "cost_nano",
        "Spend",
        "Spend in USD (requests without a price not included)",
        "USD",
        lambda nano: usd_text(round(nano)),
        lambda nano: f"${usd_text(nano)}",
    ),
}

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#86bcb6",
)
OTHERS_COLOUR = "#bab0ac"
PLOT_HEIGHT = 320
TICKS = 4
ROUND_STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 70
MAX_BAR_WIDTH, MIN_SLOT = 40, 6
PLOT_MIN_WIDTH = 480
STYLE = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
p.sub { color: #666; margin: 0 0 16px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin-top: 12px; }
.legend span.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
  vertical-align: -1px; border-radius: 2px; }
"""


def render_chart(
    per_day_user: Mapping[GroupKey, Tally],
    title: str,
    subtitle: str,
    period: tuple[str, str] | None = None,
    metric: Metric = METRICS["tokens"],
) -> str:
    """`per_day_user` maps (day, user_id) to its tally; bars stack users' `metric` (total
    tokens unless told), the ten biggest users in colour and the rest as `others`. `period`
    (first and last day asked for) gives every day of it a slot, data or not: a deployment a
    day old shows one bar at the end of its 30 days, not one bar filling the plot."""
    days = _day_range([day for day, _ in per_day_user] + list(period or ()))
    users, series = _series(per_day_user, metric.counter)
    totals = [sum(series[user].get(day, 0) for user in users) for day in days]
    slot = max(MIN_SLOT, min(MAX_BAR_WIDTH + 8, PLOT_MIN_WIDTH // max(len(days), 1)))
    plot_width = max(PLOT_MIN_WIDTH, slot * len(days))
    top = _axis_top(max(totals, default=0))
    width = MARGIN_LEFT + plot_width + 20
    height = MARGIN_TOP + PLOT_HEIGHT + MARGIN_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    ]
    parts += _y_axis(top, plot_width, metric)
    parts += _bars(days, users, series, top, slot, metric)
    parts += _x_labels(days, slot)
    parts.append("</svg>")
    legend = "".join(
        f'<span><span class="swatch" style="background:{_colour(i, user)}"></span>'
        f"{escape(user)} ({metric.text(sum(series[user].values()))})</span>"
        for i, user in enumerate(users)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>'
        f'{"".join(parts)}<div class="legend">{legend}</div></body></html>\n'
    )


def _day_range(days: list[str]) -> list[str]:
    """Every day from the first to the last with data, so gaps show."""
    if not days:
        return []
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    return [(first + timedelta(n)).isoformat() for n in range((last - first).days + 1)]


def _series(
    per_day_user: Mapping[GroupKey, Tally], counter: str
) -> tuple[list[str], dict[str, dict]]:
    """Users by `counter`, biggest first (the tail folded into `others`), and it per day."""
    by_user: dict[str, dict[str, int]] = {}
    for (day, user), tally in per_day_user.items():
        row = by_user.setdefault(user or "(none)", {})
        row[day] = row.get(day, 0) + tally.counts[counter]
    ranked = sorted(by_user, key=lambda user: (-sum(by_user[user].values()), user))
    if len(ranked) <= len(PALETTE):
        return ranked, by_user
    kept, rest = ranked[: len(PALETTE) - 1], ranked[len(PALETTE) - 1 :]
    others: dict[str, int] = {}
    for user in rest:
        for day, value in by_user[user].items():
            others[day] = others.get(day, 0) + value
    label = f"others ({len(rest)} users)"
    return [*kept, label], {**{user: by_user[user] for user in kept}, label: others}


def _colour(index: int, user: str) -> str:
    return OTHERS_COLOUR if user.startswith("others (") else PALETTE[index]


def _axis_top(value: int) -> int:
    """The top of the y axis: TICKS ticks of the smallest round step (ROUND_STEPS times a power
    of ten) reaching `value`."""
    if value <= TICKS:
        return TICKS
    power = 10 ** math.floor(math.log10(value / TICKS))
    step = next(m * power for m in ROUND_STEPS if m * power * TICKS >= value)
    return round(step * TICKS)


def _y(value: float, top: int) -> float:
    return MARGIN_TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT


def _y_axis(top: int, plot_width: int, metric: Metric) -> list[str]:
    parts = []
    for tick in range(TICKS + 1):
        value = top * tick / TICKS
        y = _y(value, top)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{MARGIN_LEFT + plot_width}" '
            f'y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{metric.tick(value)}</text>"
        )
    parts.append(
        f'<text x="14" y="{MARGIN_TOP + PLOT_HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {MARGIN_TOP + PLOT_HEIGHT / 2})">{metric.axis}</text>'
    )
    return parts


def _bars(
    days: list[str], users: list[str], series: dict[str, dict], top: int, slot: int, metric: Metric
) -> list[str]:
    parts = []
    bar = max(2, slot - max(2, slot // 5))
    for index, day in enumerate(days):
        x = MARGIN_LEFT + index * slot + (slot - bar) / 2
        stacked = 0
        for colour_index, user in enumerate(users):
            value = series[user].get(day, 0)
            if not value:
                continue
            y_top, y_bottom = _y(stacked + value, top), _y(stacked, top)
            stacked += value
            parts.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar}" '
                f'height="{y_bottom - y_top:.1f}" fill="{_colour(colour_index, user)}">'
                f"<title>{escape(user)}, {day}: {metric.text(value)}</title></rect>"
            )
    return parts


def _x_labels(days: list[str], slot: int) -> list[str]:
    """Day labels, thinned so they never overlap (about 40 px per label)."""
    every = max(1, math.ceil(40 / slot))
    y = MARGIN_TOP + PLOT_HEIGHT + 14
    parts = [
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + PLOT_HEIGHT}" '
        f'x2="{MARGIN_LEFT + slot * len(days)}" y2="{MARGIN_TOP + PLOT_HEIGHT}" stroke="#888"/>'
    ]
    for index in range(0, len(days), every):
        x = MARGIN_LEFT + index * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{y}" text-anchor="end" '
            f'transform="rotate(-45 {x:.1f} {y})">{days[index][5:]}</text>'
        )
    return parts
