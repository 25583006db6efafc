"""Throttling of failed admin authentication, per client address, in process memory.

Each address has a token bucket of ALLOWED_FAILURES wrong tokens, refilled evenly over
WINDOW_SECONDS. Once it is empty, every admin request from that address gets 429 with
`retry-after` before its token is looked at, so a guess made during the lockout tells nothing.
Successes cost nothing. Every failure is logged until the bucket is empty, then one line says
the address is throttled; a token is never logged, not even in part.

Per process: N replicas allow N times the failures. Behind the nginx front every client has the
front's address, so a lockout there also locks out the admin: while the guessing goes on, and
for at most WINDOW_SECONDS / ALLOWED_FAILURES (6 s) after it stops.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from proxy_service.errors import ProxyError

log = logging.getLogger(__name__)

ALLOWED_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 4096
"""Addresses tracked at once; past it the one that failed least recently is forgotten."""


class AdminThrottled(ProxyError):
    status = 429
    code = "rate_limit_exceeded"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class AdminGuard:
    def __init__(
        self,
        allowed: int = ALLOWED_FAILURES,
        window: float = WINDOW_SECONDS,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowed = allowed
        self._window = window
        self._rate = allowed / window
        self._max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, address: str) -> None:
        """AdminThrottled when `address` used up its failures; to call before the token."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return
        tokens = self._tokens(bucket, self._clock())
        if tokens < 1:
            seconds = self._seconds_to_one(tokens)
            raise AdminThrottled(
                f"too many failed admin authentications from this address; retry after {seconds}s",
                headers={"retry-after": str(seconds)},
            )

    def failed(self, address: str, route: str) -> None:
        """Count a wrong token from `address` (on `route`, a path template) and log it."""
        now = self._clock()
        bucket = self._buckets.pop(address, None)
        tokens = (self._allowed if bucket is None else self._tokens(bucket, now)) - 1
        self._buckets[address] = _Bucket(tokens, now)
        if len(self._buckets) > self._max_addresses:
            self._buckets.popitem(last=False)
        log.warning(
            "admin authentication failed from %s on %s: wrong x-admin-token", address, route
        )
        if tokens < 1:
            log.warning(
                "admin authentication: %s throttled, its %d failures per %gs used up: its "
                "admin requests get 429 for %ds",
                address,
                self._allowed,
                self._window,
                self._seconds_to_one(tokens),
            )

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        return min(self._allowed, bucket.tokens + (now - bucket.at) * self._rate)

    def _seconds_to_one(self, tokens: float) -> int:
        """Whole seconds until the bucket holds one failure again (at least 1)."""
        return max(1, math.ceil((1 - tokens) / self._rate))
