"""Money budgets on /metrics: how much of each budget is spent, how many are past the warning
threshold, and requests under a budget whose model has no price.

The spend is read from Redis at scrape time (`refresh`, which the /metrics route awaits before
rendering: a collector cannot await), one MGET for every budget this replica knows of; when
Redis does not answer, the gauges are left out rather than shown stale.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy_service.allowances import Budget, budgets_of_record, spent
from proxy_service.keystore import KeyStore
from proxy_service.metric_counts import ClientLabels, Counts
from shared.redis_client import REDIS_ERRORS, RedisClient

log = logging.getLogger(__name__)

MAX_UNPRICED_MODELS = 100
"""Distinct model names the unpriced counter names (client-chosen); later ones are `other`."""
MAX_MODEL_CHARS = 200


class BudgetMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.unpriced = Counts(
            "b23_budget_unpriced_requests",
            "Requests of a key or user with a money budget for a model without a price, by "
            "model (the first 100 names, then other) and action: allowed (served, charged "
            "nothing) or refused (UNPRICED_MODELS=deny)",
            ("model", "action"),
        )
        self._models = ClientLabels(MAX_UNPRICED_MODELS, MAX_MODEL_CHARS)
        self._spent: list[tuple[Budget, int]] | None = None
        self._warn_percent = 100
        registry.register(self)

    def count_unpriced(self, model: str | None, action: str) -> None:
        name, _ = self._models.label(model or "")
        self.unpriced.add(name, action)

    async def refresh(self, redis: RedisClient, keys: KeyStore, warn_percent: int) -> None:
        """Read the spend of every budget of the replica's key set and user settings."""
        budgets = [
            budget
            for record in keys.records()
            if not record.superseded  # a rotated key's old secret: the same key_id and budgets
            for budget in budgets_of_record("key", record.key_id, record)
        ]
        for user in keys.users():
            budgets += budgets_of_record("user", user.user_id, user)
        try:
            used = await spent(redis, budgets, datetime.now(UTC))
        except REDIS_ERRORS as error:
            log.debug("budget gauges left out: %s", error)
            self._spent = None
            return
        self._spent = list(zip(budgets, used, strict=True))
        self._warn_percent = warn_percent

    def collect(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "b23_budget_used_ratio",
            "Share of each money budget spent this period (1 = all of it), by scope (key or "
            "user), id (key_id or user_id) and period (daily, monthly)",
            labels=("scope", "id", "period"),
        )
        warning = 0
        for budget, used in self._spent or []:
            ratio.add_metric([budget.scope, budget.ident, budget.period], used / budget.nano)
            warning += budget.warns(used, self._warn_percent)
        yield ratio
        if self._spent is not None:
            yield GaugeMetricFamily(
                "b23_budgets_warning",
                "Money budgets at or past BUDGET_WARN_PERCENT of their amount this period",
                value=warning,
            )
        yield from self.unpriced.collect()
