"""What operators watch: the proxy's own overhead per request, what clients call, and the usage
pipeline's state.

`x-b23-overhead-ms` on every proxied response is the time spent in the proxy before the response
started, minus the time spent waiting for the upstream; the same figure feeds the
`b23_proxy_overhead_seconds` histogram on /metrics.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy_service.publisher import EventPublisher
from shared.events import Protocol

log = logging.getLogger(__name__)

OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
MAX_UNKNOWN_PATHS = 100
"""Distinct paths the unknown-route counter names; later ones are counted as `other`."""
MAX_PATH_CHARS = 200
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PublisherCollector(Collector):
    """Usage-event counters read at scrape time, so requests pay nothing for them."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "b23_usage_events_published",
            "Usage events handed to Redis",
            value=self._publisher.published,
        )
        yield CounterMetricFamily(
            "b23_usage_events_dropped",
            "Usage events lost: buffer full while Redis was down",
            value=self._publisher.dropped,
        )
        yield CounterMetricFamily(
            "b23_usage_events_sanitised",
            "Usage events published with unserialisable fields set to null",
            value=self._publisher.sanitised,
        )
        yield GaugeMetricFamily(
            "b23_usage_events_pending",
            "Usage events waiting in this replica's buffer",
            value=self._publisher.pending,
        )


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


class UnknownRoutes(Counts):
    """Requests no route served (404, 405), by method and path, so an operator sees what clients
    call that the gateway lacks. Paths are client-chosen: the first MAX_UNKNOWN_PATHS get their
    own label (and one log line), the rest are `other`."""

    def __init__(self) -> None:
        super().__init__(
            "b23_unknown_route_requests",
            "Requests to a route or method the proxy does not serve",
            ("method", "path"),
        )
        self._paths: set[str] = set()

    def seen(self, method: str, path: str) -> None:
        method = method if method in HTTP_METHODS else "other"
        path = path[:MAX_PATH_CHARS]
        if path not in self._paths:
            if len(self._paths) >= MAX_UNKNOWN_PATHS:
                path = "other"
            else:
                self._paths.add(path)
                log.warning("clients call %s %r, which this proxy does not serve", method, path)
        self.add(method, path)


class Metrics:
    """One registry per process; histogram children bound once per protocol."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.registry = CollectorRegistry()
        overhead = Histogram(
            "b23_proxy_overhead_seconds",
            "Time in the proxy before the response started, upstream wait excluded",
            ["protocol"],
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.overhead = {
            protocol: overhead.labels(protocol) for protocol in typing.get_args(Protocol)
        }
        self.requests = Counts(
            "b23_requests",
            "Metered requests (one per usage record) by protocol and final status",
            ("protocol", "status"),
        )
        self.model_lists = Counts(
            "b23_model_list_requests",
            "Model lists answered, by shape (openai, anthropic) and what they were built from "
            "(upstream: its last answer; stale: an older one, its refresh failed; aliases: "
            "MODEL_MAP only, the upstream never answered)",
            ("shape", "source"),
        )
        self.unknown_routes = UnknownRoutes()
        for collector in (
            PublisherCollector(publisher),
            self.requests,
            self.model_lists,
            self.unknown_routes,
        ):
            self.registry.register(collector)
