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
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy_service.budget_metrics import BudgetMetrics
from proxy_service.metric_counts import OTHER, ClientLabels, Counts
from proxy_service.publisher import EventPublisher, StreamState
from shared.events import Protocol

log = logging.getLogger(__name__)

OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MAX_UNKNOWN_PATHS = 100
"""Distinct paths the unknown-route counter names; later ones are counted as `other`."""
MAX_PATH_CHARS = 200
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PublisherCollector(Collector):
    """Usage-event counters read at scrape time, so requests pay nothing for them."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        events = self._publisher
        yield CounterMetricFamily(
            "b23_usage_events_published", "Usage events handed to Redis", value=events.published
        )
        yield CounterMetricFamily(
            "b23_usage_events_dropped",
            "Usage events lost: past EVENT_BUFFER_BYTES with every buffered event compacted",
            value=events.dropped,
        )
        compacted = CounterMetricFamily(
            "b23_usage_events_compacted",
            "Usage events whose prompt and response were left out (usage kept), by where: "
            "buffer (EVENT_BUFFER_BYTES), replay (REPLAY_MAX_BYTES), stream "
            "(STREAM_COMPACT_BYTES, or published at shutdown past STREAM_MAX_ENTRIES)",
            labels=("where",),
        )
        compacted.add_metric(["buffer"], events.buffer_compacted)
        compacted.add_metric(["replay"], events.replay_compacted)
        compacted.add_metric(["stream"], events.stream_compacted)
        yield compacted
        yield CounterMetricFamily(
            "b23_usage_events_replay_dropped",
            "Published usage events no longer kept for a replay (REPLAY_MAX_BYTES): lost only "
            "if Redis restarts empty before the logger writes them",
            value=events.replay_dropped,
        )
        yield CounterMetricFamily(
            "b23_usage_events_sanitised",
            "Usage events published with unserialisable fields set to null",
            value=events.sanitised,
        )
        for name, documentation, value in (
            ("pending", "Usage events waiting in this replica's buffer", events.pending),
            ("pending_bytes", "Bytes of this replica's buffer", events.pending_bytes),
            ("unconfirmed", "Published events kept for a replay", events.unconfirmed),
            ("unconfirmed_bytes", "Bytes kept for a replay", events.unconfirmed_bytes),
        ):
            yield GaugeMetricFamily(f"b23_usage_events_{name}", documentation, value=value)
        yield GaugeMetricFamily(
            "b23_usage_stream_entries",
            "Entries in the Redis stream at this replica's last flush",
            value=events.stream_entries,
        )
        yield GaugeMetricFamily(
            "b23_usage_stream_bytes",
            "The Redis stream's bytes as estimated at this replica's last flush",
            value=events.stream_bytes,
        )
        state = GaugeMetricFamily(
            "b23_usage_stream_state",
            "1 for the stream's state as this replica sees it: ok, compacting (past "
            "STREAM_COMPACT_BYTES), full (past STREAM_MAX_ENTRIES: events wait in the buffer)",
            labels=("state",),
        )
        for value in StreamState:
            state.add_metric([value.value], float(events.stream is value))
        yield state


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
        self._paths = ClientLabels(MAX_UNKNOWN_PATHS, MAX_PATH_CHARS)

    def seen(self, method: str, path: str) -> None:
        method = method if method in HTTP_METHODS else OTHER
        path, first = self._paths.label(path)
        if first:
            log.warning("clients call %s %r, which this proxy does not serve", method, path)
        self.add(method, path)


class Tokens(Collector):
    """Tokens of the usage records, by protocol and direction (prompt, completion, and the
    cached part of prompt), summed in a dict and exported at scrape time."""

    DIRECTIONS = ("prompt", "completion", "cached")

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}

    def add(self, protocol: str, usage: dict[str, Any]) -> None:
        for direction in self.DIRECTIONS:
            count = usage.get(f"{direction}_tokens") or 0
            if count:
                self.totals[protocol, direction] = self.totals.get((protocol, direction), 0) + count

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "b23_tokens",
            "Tokens in usage records (estimates included), by protocol and direction: prompt, "
            "completion, cached (the part of prompt served from the upstream's cache)",
            labels=("protocol", "direction"),
        )
        for (protocol, direction), count in list(self.totals.items()):
            family.add_metric([protocol, direction], count)
        yield family


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
        upstream = Histogram(
            "b23_upstream_seconds",
            "Time waiting for the upstream: to its response headers for streams, to the end "
            "of the reply when buffered",
            ["protocol"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.upstream = {
            protocol: upstream.labels(protocol) for protocol in typing.get_args(Protocol)
        }
        self.tokens = Tokens()
        self.limit_refusals = Counts(
            "b23_limit_refusals",
            "Requests refused by a key's or its user's limit (429), by limit: rpm_limit, "
            "tpm_limit, daily_token_quota, monthly_token_quota, budget_usd_daily, "
            "budget_usd_monthly, user_budget_usd_daily, user_budget_usd_monthly",
            ("limit",),
        )
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
        self.budgets = BudgetMetrics(self.registry)
        for collector in (
            PublisherCollector(publisher),
            self.tokens,
            self.limit_refusals,
            self.requests,
            self.model_lists,
            self.unknown_routes,
        ):
            self.registry.register(collector)

    def count_tokens(self, protocol: str, usage: dict[str, Any]) -> None:
        self.tokens.add(protocol, usage)
