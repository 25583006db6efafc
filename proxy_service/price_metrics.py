"""The price table on /metrics: which one is in force, and whether the file at the path is it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.prices import PriceBook


class PriceTableCollector(Collector):
    """Read at scrape time from this process's PriceBook."""

    def __init__(self, prices: PriceBook) -> None:
        self._prices = prices

    def collect(self) -> Iterator[Metric]:
        prices = self._prices
        info = GaugeMetricFamily(
            "b23_price_table_info",
            "1 for the price table in force, by version (sha256 of the file); none: no table, "
            "every model unpriced",
            labels=("version",),
        )
        if prices.table is not None:
            info.add_metric([prices.table.version], 1)
        yield info
        yield GaugeMetricFamily(
            "b23_price_table_ok",
            "1 when the file at PRICES_FILE is the table in force; 0 when it is missing or "
            "invalid (the last good table, if any, stays in force)",
            value=float(prices.path is not None and prices.error is None),
        )
        yield CounterMetricFamily(
            "b23_price_table_load_errors",
            "Price files refused (each distinct bad content once)",
            value=prices.load_errors,
        )
