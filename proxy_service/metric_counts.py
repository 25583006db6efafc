"""Counters for /metrics kept in plain dicts, and labels whose values clients choose."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

OTHER = "other"


class Counts(Collector):
    """A labelled counter kept in a plain dict and exported at scrape time: a request pays one
    dict update, not prometheus_client's lock and label lookup. Callers bound the label values."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self.counts: dict[tuple[object, ...], int] = {}

    def add(self, *values: object) -> None:
        self.counts[values] = self.counts.get(values, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, count in list(self.counts.items()):
            family.add_metric([str(value) for value in values], count)
        yield family


class ClientLabels:
    """Label values a client chooses (a path, a model name), bounded: each cut to `max_chars`,
    the first `limit` distinct ones kept, every later one `other`."""

    def __init__(self, limit: int, max_chars: int) -> None:
        self._limit = limit
        self._max_chars = max_chars
        self._seen: set[str] = set()

    def label(self, value: str) -> tuple[str, bool]:
        """(the label to count under, whether it is a value seen for the first time)."""
        value = value[: self._max_chars]
        if value in self._seen:
            return value, False
        if len(self._seen) >= self._limit:
            return OTHER, False
        self._seen.add(value)
        return value, True
