"""Per-key request and token limits, enforced across all replicas through Redis.

One Lua script per request checks every limit of the key atomically (and takes the request from
the requests-per-minute allowance); a second script charges the real token usage when the
response has ended. Keys without limits never touch Redis here.

- rpm_limit: GCRA (a token bucket of rpm_limit requests refilled evenly over a minute), exact
  across replicas.
- tpm_limit: a leaky bucket of tokens draining at tpm_limit per minute; a request is admitted
  while the bucket is below the limit, then charged with its real usage.
- daily/monthly_token_quota: UTC day and month counters; a request is admitted while the counter
  is below the quota.
Token limits are charged after the fact, so concurrent requests admitted while the bucket was
below the limit can overshoot it by at most the tokens of those in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy_service.errors import ProxyError
from shared import redis_names
from shared.keys import KeyRecord

log = logging.getLogger(__name__)

ADMIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local daily, monthly = tonumber(ARGV[3]), tonumber(ARGV[4])
if daily > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= daily then
  return {0, tonumber(ARGV[5]), 'daily_token_quota'}
end
if monthly > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= monthly then
  return {0, tonumber(ARGV[6]), 'monthly_token_quota'}
end
if tpm > 0 then
  local state = redis.call('HMGET', KEYS[2], 'level', 'ts')
  local level = tonumber(state[1] or '0')
  local elapsed = now - tonumber(state[2] or now)
  level = math.max(0, level - elapsed * tpm / 60000)
  if level >= tpm then
    return {0, math.ceil((level - tpm + 1) * 60000 / tpm), 'tpm_limit'}
  end
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
"""

CHARGE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tokens, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 then
  local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
  local level = tonumber(state[1] or '0')
  local elapsed = now - tonumber(state[2] or now)
  level = math.max(0, level - elapsed * tpm / 60000) + tokens
  redis.call('HSET', KEYS[1], 'level', tostring(level), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(level * 60000 / tpm) + 60000)
end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[2], tokens)
  redis.call('EXPIRE', KEYS[2], 2 * 86400)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('INCRBY', KEYS[3], tokens)
  redis.call('EXPIRE', KEYS[3], 32 * 86400)
end
return 1
"""


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


def limit_keys(key_id: str, now: datetime) -> list[str]:
    base = f"{redis_names.LIMITS_PREFIX}{key_id}:"
    return [
        base + "rpm",
        base + "tpm",
        base + now.strftime("d:%Y%m%d"),
        base + now.strftime("m:%Y%m"),
    ]


def seconds_to_period_ends(now: datetime) -> tuple[int, int]:
    """Seconds until the next UTC midnight and the next first of the month."""
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    next_month = (now.replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return math.ceil((tomorrow - now).total_seconds()), math.ceil(
        (next_month - now).total_seconds()
    )


class Limiter:
    def __init__(self, redis: Redis, fail_open: bool) -> None:
        self._admit = redis.register_script(ADMIT)
        self._charge = redis.register_script(CHARGE)
        self._fail_open = fail_open
        self._charges: set[asyncio.Task[None]] = set()

    async def admit(self, key: KeyRecord) -> None:
        """Raise RateLimited (with retry-after) when any limit of the key is reached."""
        if not key.has_limits:
            return
        now = datetime.now(UTC)
        to_day_end, to_month_end = seconds_to_period_ends(now)
        args = [key.rpm_limit, key.tpm_limit, key.daily_token_quota, key.monthly_token_quota]
        try:
            allowed, retry_after, which = await self._admit(
                keys=limit_keys(key.key_id, now),
                args=[value or 0 for value in args] + [to_day_end * 1000, to_month_end * 1000],
            )
        except (RedisError, OSError) as error:
            if self._fail_open:
                log.warning("limits unavailable (%s); serving (LIMITS_FAIL_OPEN)", error)
                return
            raise LimitsUnavailable("rate limits cannot be checked right now") from error
        if not allowed:
            seconds = max(1, math.ceil(int(retry_after) / 1000))
            name = which.decode() if isinstance(which, bytes) else which
            raise RateLimited(
                f"{name} reached for this API key; retry after {seconds}s",
                limit=name,
                headers={"retry-after": str(seconds)},
            )

    def charge(self, key: KeyRecord, tokens: int) -> None:
        """Charge real usage in the background; the client never waits on it."""
        if tokens <= 0 or not (key.tpm_limit or key.daily_token_quota or key.monthly_token_quota):
            return
        task = asyncio.get_running_loop().create_task(self._charge_now(key, tokens))
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def _charge_now(self, key: KeyRecord, tokens: int) -> None:
        keys = limit_keys(key.key_id, datetime.now(UTC))
        args = [
            tokens,
            key.tpm_limit or 0,
            key.daily_token_quota or 0,
            key.monthly_token_quota or 0,
        ]
        try:
            await self._charge(keys=keys[1:], args=args)
        except (RedisError, OSError) as error:
            log.warning("could not charge %d tokens to %s: %s", tokens, key.key_id, error)
