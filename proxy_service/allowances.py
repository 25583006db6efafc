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

from proxy_service.limits import Scope, period_ends
from shared.budgets import PERIOD_OF, Period, budgets_of, to_nano
from shared.keys import KeyRecord, json_time
from shared.prices import money_text, usd_text
from shared.redis_client import RedisClient
from shared.redis_names import limit_keys, spend_key

MINUTE_MS = 60_000
READ_LIMITS = """
local t = redis.call('TIME')
local state = redis.call('HMGET', KEYS[2], 'level', 'ts')
return {t[1], t[2], redis.call('GET', KEYS[1]), state[1], state[2],
        redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"""
"""One key's rpm, tpm and token quota state with the time of the node that holds them (ADMIT's
clock), read at one instant: [seconds, micros, tat, level, ts, daily, monthly]."""


@dataclass(frozen=True, slots=True)
class Budget:
    """One money budget of a key or a user."""

    scope: Scope
    ident: str
    """The key_id or user_id."""
    name: str
    """budget_usd_daily or budget_usd_monthly."""
    amount: Decimal
    user_id: str
    """Whose hash tag holds the counter: the user's own, or the key's user."""

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

    def counter(self, now: datetime) -> str:
        """The name of its counter in `now`'s period."""
        key_id = self.ident if self.scope == "key" else None
        return spend_key(self.period, self.user_id, key_id, now)


def budgets_of_record(scope: Scope, ident: str, record: Any) -> list[Budget]:
    """The budgets of a user (`ident` its user_id) or of a key (`ident` its key_id, `record` a
    KeyRecord)."""
    user_id = ident if scope == "user" else record.user_id
    return [Budget(scope, ident, name, amount, user_id) for name, amount in budgets_of(record)]


async def spent(redis: RedisClient, budgets: Sequence[Budget], now: datetime) -> list[int]:
    """Nano-USD spent against each budget in `now`'s period, in one round trip (a GET each,
    not an MGET: the counters of different users lie in different cluster slots)."""
    if not budgets:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for budget in budgets:
            pipe.get(budget.counter(now))
        return [int(value or 0) for value in await pipe.execute()]


async def budget_views(
    redis: RedisClient, budgets: Sequence[Budget], warn_percent: int, now: datetime
) -> dict[tuple[Scope, str], dict[str, dict[str, Any]]]:
    """(scope, id) -> budget name -> its view, for every budget given."""
    views: dict[tuple[Scope, str], dict[str, dict[str, Any]]] = {}
    for budget, used in zip(budgets, await spent(redis, budgets, now), strict=True):
        owner = views.setdefault((budget.scope, budget.ident), {})
        owner[budget.name] = budget.view(used, warn_percent, now)
    return views


async def owner_budget_views(
    redis: RedisClient,
    scope: Scope,
    owners: Sequence[tuple[str, Any]],
    warn_percent: int,
    now: datetime,
) -> dict[str, dict[str, dict[str, Any]]]:
    """id -> budget name -> its view, for (id, record) pairs of one scope (empty: no budget)."""
    budgets = [b for ident, record in owners for b in budgets_of_record(scope, ident, record)]
    views = await budget_views(redis, budgets, warn_percent, now)
    return {ident: views.get((scope, ident), {}) for ident, _ in owners}


async def token_limits(
    redis: RedisClient, key: KeyRecord, now: datetime
) -> dict[str, dict[str, Any]]:
    """Each token or request limit of the key: the limit, what is used against it now, what is
    left (as ADMIT computes them, on Redis' clock)."""
    return (await many_token_limits(redis, [key], now))[key.key_id]


async def many_token_limits(
    redis: RedisClient, keys: Sequence[KeyRecord], now: datetime
) -> dict[str, dict[str, dict[str, Any]]]:
    """key_id -> token_limits of each key, in one round trip whatever their number: READ_LIMITS
    for each (EVAL: in a pipeline, see shared/redis_client.py Script)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            names = limit_keys(key.key_id, key.user_id, now)[:4]
            pipe.eval(READ_LIMITS, len(names), *names)
        states = await pipe.execute()
    found = {}
    for key, (seconds, micros, tat, level, ts, daily, monthly) in zip(keys, states, strict=True):
        now_ms = int(seconds) * 1000 + int(micros) // 1000
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
