"""What the logger tells the others about itself: the heartbeat, refreshed only while events
are really moving, and its status report (shared/logger_status.py: file errors, the price table
in force) for /readyz and --check."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from shared import redis_names
from shared.logger_status import STATUS_FRESH_SECONDS, LoggerStatus
from shared.prices import PriceBook
from shared.redis_client import RedisClient

log = logging.getLogger(__name__)

HEARTBEAT_TTL_SECONDS = 10
PROGRESS_STALE_SECONDS = 5.0
"""An events loop that completed no read/write cycle for this long is stuck, whatever else runs:
no heartbeat then (a cycle is a blocking read of at most 200 ms and the writing of one batch)."""


class DiskError(Exception):
    """A file the logger writes could not be written (a full disk, a file size limit, an I/O
    error): named as such, never taken for a Redis outage."""

    def __init__(self, action: str, path: Path, error: OSError) -> None:
        super().__init__(f"cannot {action} {path.name}: {error}")
        self.file = path.name


class Health:
    """This logger's progress and file errors, and their publication in Redis."""

    def __init__(self, redis: RedisClient, consumer: str) -> None:
        self._redis = redis
        self._consumer = consumer
        self._last_progress = -math.inf
        """Monotonic time the events loop last completed a cycle: none yet, no heartbeat."""
        self._disk_errors: dict[str, str] = {}
        """File name -> why it cannot be written, until a write of it succeeds."""

    def progressed(self) -> None:
        """The events loop completed a read/write cycle."""
        self._last_progress = time.monotonic()

    @property
    def progressing(self) -> bool:
        return time.monotonic() - self._last_progress < PROGRESS_STALE_SECONDS

    def disk_failed(self, error: DiskError) -> None:
        """Record a failed write; logged once while the reason stays the same (it is retried)."""
        if self._disk_errors.get(error.file) != str(error):
            log.error("%s; retrying, nothing acknowledged meanwhile", error)
        self._disk_errors[error.file] = str(error)

    def disk_ok(self, file: str) -> None:
        if self._disk_errors.pop(file, None) is not None:
            log.info("%s written again", file)

    async def publish(self, *, alive: bool, keys_file_error: str | None, prices: PriceBook) -> None:
        """This logger's status report; the heartbeat too when `alive`."""
        status = LoggerStatus(
            at=time.time(),
            keys_file_error=keys_file_error,
            disk_error="; ".join(self._disk_errors.values()) or None,
            price_version=None if prices.table is None else prices.table.version,
            price_error=prices.error,
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(redis_names.LOGGER_STATUS, self._consumer, status.model_dump_json())
            pipe.expire(redis_names.LOGGER_STATUS, int(STATUS_FRESH_SECONDS))
            if alive:
                pipe.set(redis_names.LOGGER_HEARTBEAT, int(time.time()), ex=HEARTBEAT_TTL_SECONDS)
            await pipe.execute()

    async def withdraw(self) -> None:
        """At a clean stop: a stopped logger is neither alive nor reporting."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(redis_names.LOGGER_HEARTBEAT)
            pipe.hdel(redis_names.LOGGER_STATUS, self._consumer)
            await pipe.execute()
