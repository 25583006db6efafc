"""Per-key request and token limits and money budgets, enforced across all replicas through
Redis.

One Lua script per request checks every limit of the key and every budget of the key and its
user atomically (and takes the request from the requests-per-minute allowance); a second script
charges the real token usage and cost when the response has ended. A key without limits or
budgets, whose user has no budget, never touches Redis here.

- rpm_limit: GCRA (a token bucket of rpm_limit requests refilled evenly over a minute), exact
  across replicas.
- tpm_limit: a leaky bucket of tokens draining at tpm_limit per minute; a request is admitted
  while the bucket is below the limit, then charged with its real usage.
- daily/monthly_token_quota: UTC day and month counters; a request is admitted while the counter
  is below the quota.
- budget_usd_daily/monthly, of the key and of its user (all of the user's keys together):
  UTC day and month counters of nano-USD; a request is admitted while the spend is below the
  budget, then charged with its cost under this proxy's price table. Counters exist only while
  a budget is set: spend before that is not counted against it.
Limits are charged after the fact: a request is admitted on what has been charged so far, so
requests admitted concurrently, before the counter reached its bound, all go through. Each
limit can be overshot by at most what the requests in flight when it was reached use: their
tokens, or their cost (with one request at a time: by at most that one request).
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Literal

from proxy_service.errors import ProxyError
from shared.budgets import to_nano
from shared.keys import KeyRecord
from shared.redis_client import REDIS_ERRORS, RedisClient, Script
from shared.redis_names import limit_keys
from shared.users import UserSettings

log = logging.getLogger(__name__)

Scope = Literal["key", "user"]

COUNTED = (
    "daily_token_quota",
    "monthly_token_quota",
    "budget_usd_daily",
    "budget_usd_monthly",
    "user_budget_usd_daily",
    "user_budget_usd_monthly",
)
"""The period counters, day and month in turn: KEYS[3..8] of ADMIT, each named as it refuses
(and as b23_limit_refusals_total labels it)."""

ADMIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait, which = 0, ''
local function refuse(ms, name)
  if ms > wait then wait, which = ms, name end
end
local names = {COUNTED}
for i, name in ipairs(names) do
  local bound = tonumber(ARGV[4 + i])
  if bound > 0 and tonumber(redis.call('GET', KEYS[2 + i]) or '0') >= bound then
    refuse(tonumber(ARGV[i % 2 == 1 and 3 or 4]), name)
  end
end
if tpm > 0 then
  local state = redis.call('HMGET', KEYS[2], 'level', 'ts')
  local level = tonumber(state[1] or '0')
  local elapsed = now - tonumber(state[2] or now)
  level = math.max(0, level - elapsed * tpm / 60000)
  if level >= tpm then
    refuse(math.ceil((level - tpm + 1) * 60000 / tpm), 'tpm_limit')
  end
end
if which ~= '' then
  return {0, wait, which}
end
if rpm > 0 then
  local interval = 60000 / rpm
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
  local allow_at = tat - (60000 - interval)
  if allow_at > now then
    return {0, math.ceil(allow_at - now), 'rpm_limit'}
  end
  redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 1000)
end
return {1, 0, ''}
""".replace("{COUNTED}", "{" + ", ".join(f"'{name}'" for name in COUNTED) + "}")
"""Every refusing limit is found and the longest wait answered: the request can pass only once
all of them have cleared. The requests-per-minute allowance is taken last, only from a request
every other limit admits."""

CHARGE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tokens, tpm, nano = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm > 0 and tokens > 0 then
  local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
  local level = tonumber(state[1] or '0')
  local elapsed = now - tonumber(state[2] or now)
  level = math.max(0, level - elapsed * tpm / 60000) + tokens
  redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(level * 60000 / tpm) + 60000)
end
for i = 1, 6 do
  local amount = i <= 2 and tokens or nano
  if tonumber(ARGV[3 + i]) > 0 and amount > 0 then
    redis.call('INCRBY', KEYS[1 + i], ARGV[i <= 2 and 1 or 3])
    redis.call('EXPIRE', KEYS[1 + i], i % 2 == 1 and 2 * 86400 or 32 * 86400)
  end
end
return 1
"""
"""Tokens go to the tokens-per-minute bucket and the token quota counters, the cost in nano-USD
to the budget counters; only to the counters whose limit is set (ARGV[4..9] > 0)."""


class RateLimited(ProxyError):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, limit: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.limit = limit
        """Which of the key's limits refused it (rpm_limit, tpm_limit, ...)."""


class LimitsUnavailable(ProxyError):
    """Redis is unreachable and LIMITS_FAIL_OPEN is false."""

    status = 503
    code = "limits_unavailable"


def counted_bounds(key: KeyRecord, user: UserSettings | None) -> list[int]:
    """The bound of each of COUNTED (0: not set): tokens, then nano-USD."""
    return [
        key.daily_token_quota or 0,
        key.monthly_token_quota or 0,
        to_nano(key.budget_usd_daily),
        to_nano(key.budget_usd_monthly),
        to_nano(user.budget_usd_daily if user else None),
        to_nano(user.budget_usd_monthly if user else None),
    ]


def has_budget(key: KeyRecord, user: UserSettings | None) -> bool:
    """Whether a request of `key` counts against any money budget (its own or its user's)."""
    return key.has_budget or (user is not None and user.has_budget)


def seconds_to_period_ends(now: datetime) -> tuple[int, int]:
    """Seconds until the next UTC midnight and the next first of the month."""
    tomorrow, next_month = period_ends(now)
    return math.ceil((tomorrow - now).total_seconds()), math.ceil(
        (next_month - now).total_seconds()
    )


def period_ends(now: datetime) -> tuple[datetime, datetime]:
    """The next UTC midnight and the next first of the month, when counters start again."""
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    next_month = (now.replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return tomorrow, next_month


class Limiter:
    def __init__(self, redis: RedisClient, fail_open: bool) -> None:
        self._redis = redis
        self._admit = Script(ADMIT)
        self._charge = Script(CHARGE)
        self._fail_open = fail_open
        self._charges: set[asyncio.Task[None]] = set()

    async def admit(self, key: KeyRecord, user: UserSettings | None) -> None:
        """Raise RateLimited (with retry-after) when any limit or budget of the key, or a
        budget of its user, is reached."""
        if not (key.has_limits or has_budget(key, user)):
            return
        now = datetime.now(UTC)
        to_day_end, to_month_end = seconds_to_period_ends(now)
        args = [key.rpm_limit or 0, key.tpm_limit or 0, to_day_end * 1000, to_month_end * 1000]
        try:
            allowed, retry_after, which = await self._admit(
                self._redis,
                keys=limit_keys(key.key_id, key.user_id, now),
                args=args + counted_bounds(key, user),
            )
        except REDIS_ERRORS as error:
            if self._fail_open:
                log.warning("limits unavailable (%s); serving (LIMITS_FAIL_OPEN)", error)
                return
            raise LimitsUnavailable("rate limits cannot be checked right now") from error
        if not allowed:
            seconds = max(1, math.ceil(int(retry_after) / 1000))
            name = which.decode() if isinstance(which, bytes) else which
            raise RateLimited(
                f"{refusal_subject(name)}; retry after {seconds}s",
                limit=name,
                headers={"retry-after": str(seconds)},
            )

    def charge(self, key: KeyRecord, user: UserSettings | None, tokens: int, nano_usd: int) -> None:
        """Charge real usage and cost in the background; the client never waits on it."""
        if not (key.has_limits or has_budget(key, user)):
            return
        bounds = counted_bounds(key, user)
        charges_tokens = tokens > 0 and (key.tpm_limit or any(bounds[:2]))
        if not (charges_tokens or (nano_usd > 0 and any(bounds[2:]))):
            return
        args = [tokens, key.tpm_limit or 0, nano_usd, *bounds]
        task = asyncio.get_running_loop().create_task(self._charge_now(key, args))
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def _charge_now(self, key: KeyRecord, args: list[int]) -> None:
        keys = limit_keys(key.key_id, key.user_id, datetime.now(UTC))
        try:
            await self._charge(self._redis, keys=keys[1:], args=args)
        except REDIS_ERRORS as error:
            log.warning("could not charge %s: %s", key.key_id, error)


def refusal_subject(limit: str) -> str:
    """What a refusal's message says was reached, naming the budget and whose it is."""
    if limit.startswith("user_"):
        return f"{limit.removeprefix('user_')} of this API key's user reached"
    return f"{limit} reached for this API key"
