"""What is used and what is left of each limit and budget, read from the counters the limit
scripts keep (proxy_service/limits.py): for the admin key and user views, /v1/me/usage and
/metrics. Reads only; a counter that does not exist is nothing used."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from proxy_service.limits import Scope, limit_keys, period_ends, spend_key
from shared.budgets import PERIOD_OF, Period, budgets_of, to_nano
from shared.keys import KeyRecord, json_time
from shared.prices import money_text, usd_text

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Budget:
    """One money budget of a key or a user."""

    scope: Scope
    ident: str
    """The key_id or user_id."""
    name: str
    """budget_usd_daily or budget_usd_monthly."""
    amount: Decimal

    @property
    def period(self) -> Period:
        return PERIOD_OF[self.name]

    @property
    def nano(self) -> int:
        return to_nano(self.amount)

    def warns(self, spent_nano: int, warn_percent: int) -> bool:
        """At or past BUDGET_WARN_PERCENT of the budget (exact: integers only)."""
        return spent_nano * 100 >= self.nano * warn_percent

    def view(self, spent_nano: int, warn_percent: int, now: datetime) -> dict[str, Any]:
        day_end, month_end = period_ends(now)
        return {
            "budget_usd": money_text(self.amount),
            "spent_usd": usd_text(spent_nano),
            "remaining_usd": usd_text(max(0, self.nano - spent_nano)),
            "percent": round(spent_nano * 100 / self.nano, 2),
            "warning": self.warns(spent_nano, warn_percent),
            "resets_at": json_time(day_end if self.period == "daily" else month_end),
        }


def budgets_of_record(scope: Scope, ident: str, record: Any) -> list[Budget]:
    return [Budget(scope, ident, name, amount) for name, amount in budgets_of(record)]


async def spent(redis: Redis, budgets: Sequence[Budget], now: datetime) -> list[int]:
    """Nano-USD spent against each budget in `now`'s period (one MGET; none for no budget)."""
    if not budgets:
        return []
    names = [spend_key(b.period, b.scope, b.ident, now) for b in budgets]
    return [int(value or 0) for value in await redis.mget(names)]


async def budget_views(
    redis: Redis, budgets: Sequence[Budget], warn_percent: int, now: datetime
) -> dict[tuple[Scope, str], dict[str, dict[str, Any]]]:
    """(scope, id) -> budget name -> its view, for every budget given."""
    views: dict[tuple[Scope, str], dict[str, dict[str, Any]]] = {}
    for budget, used in zip(budgets, await spent(redis, budgets, now), strict=True):
        owner = views.setdefault((budget.scope, budget.ident), {})
        owner[budget.name] = budget.view(used, warn_percent, now)
    return views


async def owner_budget_views(
    redis: Redis, scope: Scope, owners: Sequence[tuple[str, Any]], warn_percent: int, now: datetime
) -> dict[str, dict[str, dict[str, Any]]]:
    """id -> budget name -> its view, for (id, record) pairs of one scope (empty: no budget)."""
    budgets = [b for ident, record in owners for b in budgets_of_record(scope, ident, record)]
    views = await budget_views(redis, budgets, warn_percent, now)
    return {ident: views.get((scope, ident), {}) for ident, _ in owners}


async def token_limits(redis: Redis, key: KeyRecord, now: datetime) -> dict[str, dict[str, Any]]:
    """Each token or request limit of the key: the limit, what is used against it now, what is
    left (as ADMIT computes them, on Redis' clock)."""
    return (await many_token_limits(redis, [key], now))[key.key_id]


async def many_token_limits(
    redis: Redis, keys: Sequence[KeyRecord], now: datetime
) -> dict[str, dict[str, dict[str, Any]]]:
    """key_id -> token_limits of each key, read in one transaction whatever their number."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.time()
        for key in keys:
            rpm_key, tpm_key, daily_key, monthly_key = limit_keys(key.key_id, key.user_id, now)[:4]
            pipe.get(rpm_key)
            pipe.hmget(tpm_key, "level", "ts")
            pipe.get(daily_key)
            pipe.get(monthly_key)
        (seconds, micros), *counters = await pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    found = {}
    for index, key in enumerate(keys):
        tat, (level, ts), daily, monthly = counters[4 * index : 4 * index + 4]
        used = {
            "rpm_limit": _requests_in_window(key.rpm_limit, tat, now_ms),
            "tpm_limit": _tokens_in_bucket(key.tpm_limit, level, ts, now_ms),
            "daily_token_quota": int(daily or 0),
            "monthly_token_quota": int(monthly or 0),
        }
        limits = {}
        for name, count in used.items():
            bound = getattr(key, name)
            if bound is not None:
                limits[name] = {"limit": bound, "used": count, "remaining": max(0, bound - count)}
        found[key.key_id] = limits
    return found


def _requests_in_window(rpm: int | None, tat: bytes | None, now_ms: int) -> int:
    """GCRA: the backlog of the theoretical arrival time, in requests (less a hair of float
    noise, so one request's interval counts as one)."""
    if not rpm or tat is None:
        return 0
    backlog = max(0.0, float(tat) - now_ms)
    return min(rpm, math.ceil(backlog * rpm / MINUTE_MS - 1e-9))


def _tokens_in_bucket(tpm: int | None, level: bytes | None, ts: bytes | None, now_ms: int) -> int:
    """The leaky bucket's level, drained to now."""
    if not tpm or level is None or ts is None:
        return 0
    drained = float(level) - (now_ms - float(ts)) * tpm / MINUTE_MS
    return math.ceil(max(0.0, drained))
