"""What operators watch: the proxy's own overhead per request and the usage pipeline's state.

`x-b23-overhead-ms` on every proxied response is the time spent in the proxy before the response
started, minus the time spent waiting for the upstream; the same figure feeds the
`b23_proxy_overhead_seconds` histogram on /metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy_service.publisher import EventPublisher

OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


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


class Metrics:
    """One registry per process; histogram children bound once per route."""

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
            protocol: overhead.labels(protocol)
            for protocol in ("openai_chat", "anthropic_messages")
        }
        self.registry.register(PublisherCollector(publisher))
