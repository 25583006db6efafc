"""The chart's days are the period asked for, data or not: young data is one bar at the end of
the period, not one bar filling the plot."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import date, timedelta

import pytest

from logger_service.chart import MARGIN_LEFT, METRICS, render_chart
from shared.usage import Tally

SVG = "{http://www.w3.org/2000/svg}"


def tally(tokens: int) -> Tally:
    counted = Tally()
    counted.counts["total_tokens"] = tokens
    return counted


def bars_x(page: str) -> list[float]:
    root = ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))
    return [float(rect.get("x")) for rect in root.findall(f".//{SVG}svg/{SVG}rect")]


@pytest.mark.parametrize("days", [7, 30, 90])
def test_one_day_of_data_is_one_bar_at_the_end_of_the_period(days: int) -> None:
    last = date(2026, 12, 2)
    first = last - timedelta(days - 1)
    data = {(last.isoformat(), "alice"): tally(1234)}
    [x] = bars_x(render_chart(data, "t", "s", (first.isoformat(), last.isoformat())))
    [alone] = bars_x(render_chart(data, "t", "s"))
    assert alone < MARGIN_LEFT + 50  # without the period: the only day, first in the plot
    assert x - alone > 250  # with it: the last of `days` slots, at the right


def test_days_with_data_outside_the_period_still_show() -> None:
    data = {("2026-11-01", "a"): tally(5), ("2026-11-03", "b"): tally(7)}
    assert len(bars_x(render_chart(data, "t", "s", ("2026-11-02", "2026-11-02")))) == 2


def test_the_cost_metric_stacks_exact_dollars_on_a_usd_axis() -> None:
    spent = Tally()
    spent.counts["cost_nano"] = 1_250_000_001
    page = render_chart({("2026-11-01", "a"): spent}, "t", "s", metric=METRICS["cost"])
    root = ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))
    [bar] = root.findall(f".//{SVG}svg/{SVG}rect")
    assert bar.find(f"{SVG}title").text == "a, 2026-11-01: $1.250000001"
    labels = [text.text for text in root.findall(f".//{SVG}svg/{SVG}text")]
    assert labels[:6] == ["0", "0.4", "0.8", "1.2", "1.6", "USD"]
