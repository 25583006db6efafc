"""Failed logins per client address, counted in Redis so every replica shares one allowance.

A fixed one-minute window per address: the first failure starts it (INCR, then EXPIRE only on
the first), `allowed` failures use it up, and until it ends every login from that address is
refused before its secret is looked at, so guesses made during the lockout tell nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.redis_client import atomic
from shared.redis_names import UI_LOGIN_FAILURES_PREFIX

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
MAX_ADDRESS_CHARS = 64


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    redis: Redis
    allowed: int

    def _key(self, address: str) -> str:
        return UI_LOGIN_FAILURES_PREFIX + address[:MAX_ADDRESS_CHARS]

    async def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None while it has failures left."""
        key = self._key(address)
        async with atomic(self.redis) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if count is None or int(count) < self.allowed:
            return None
        return max(1, int(ttl))

    async def failed(self, address: str, page: str) -> None:
        """Count a wrong secret; logged with the address and page, never the secret."""
        key = self._key(address)
        async with atomic(self.redis) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
            count, _ = await pipe.execute()
        log.warning(
            "%s login failed from %s (%d of %d this minute)", page, address, count, self.allowed
        )
