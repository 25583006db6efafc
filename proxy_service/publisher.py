"""Publishes usage events to the Redis stream in the background, in batches.

Requests only append to an in-memory buffer (no Redis round trip on the request path). A
background task drains it with pipelined XADDs. While Redis is unreachable events stay in the
buffer, up to EVENT_BUFFER_SIZE; past that an event is dropped, counted in `dropped` (exported on
/metrics and /readyz) and logged, never silently.

Redis may also restart empty and lose entries the logger had not read yet. Each flush reads the
dataset's epoch marker (REDIS_EPOCH) in the same round trip; when it changed, the events
published in the last REPLAY_SECONDS are published again (the logger drops duplicates by
request_id).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import redis_names

log = logging.getLogger(__name__)

BATCH_SIZE = 256
RETRY_DELAY_SECONDS = 0.2
REPLAY_SECONDS = 10.0
REPLAY_MAX_EVENTS = 5000


class EventPublisher:
    def __init__(self, redis: Redis, capacity: int) -> None:
        self._redis = redis
        self._capacity = capacity
        self._buffer: deque[dict[str, Any]] = deque()
        self._recent: deque[tuple[float, dict[str, Any]]] = deque(maxlen=REPLAY_MAX_EVENTS)
        self._epoch: bytes | None = None
        self._ready = asyncio.Event()
        self.published = 0
        self.dropped = 0
        self.redis_ok = True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def publish(self, event: dict[str, Any]) -> None:
        if len(self._buffer) >= self._capacity:
            self.dropped += 1
            log.error(
                "usage event buffer full (%d); dropped event %s (%d dropped so far)",
                self._capacity,
                event.get("request_id"),
                self.dropped,
            )
            return
        self._buffer.append(event)
        self._ready.set()

    async def run(self) -> None:
        """Drain forever; on a Redis error keep the batch and retry."""
        while True:
            await self._ready.wait()
            if not self._buffer:
                self._ready.clear()
                continue
            try:
                await self.flush_once()
            except (RedisError, OSError) as error:
                if self.redis_ok:
                    log.warning("cannot publish usage events (%s); buffering", error)
                self.redis_ok = False
                await asyncio.sleep(RETRY_DELAY_SECONDS)

    async def flush_once(self) -> None:
        """XADD up to BATCH_SIZE buffered events in one round trip; drop them only on success."""
        batch = [self._buffer[i] for i in range(min(BATCH_SIZE, len(self._buffer)))]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(redis_names.REDIS_EPOCH, secrets.token_hex(8), nx=True)
            pipe.get(redis_names.REDIS_EPOCH)
            for event in batch:
                pipe.xadd(redis_names.EVENTS_STREAM, {"e": orjson.dumps(event)})
            _, epoch, *_ = await pipe.execute()
        now = time.monotonic()
        for _ in batch:
            self._buffer.popleft()
        self.published += len(batch)
        if self._epoch is not None and epoch != self._epoch:
            self._replay_recent(now)
        self._epoch = epoch
        self._recent.extend((now, event) for event in batch)
        if not self.redis_ok:
            log.warning("publishing usage events again")
        self.redis_ok = True

    def _replay_recent(self, now: float) -> None:
        """Queue again what recent flushes handed to a Redis that has since lost its data."""
        replay = [event for sent_at, event in self._recent if now - sent_at <= REPLAY_SECONDS]
        log.warning("Redis restarted empty; publishing the last %d usage events again", len(replay))
        self._recent.clear()
        self._buffer.extendleft(reversed(replay))
        self._ready.set()

    async def drain(self, timeout: float) -> None:
        """At shutdown: publish what is buffered, giving up after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._buffer and loop.time() < deadline:
            try:
                await self.flush_once()
            except (RedisError, OSError):
                await asyncio.sleep(RETRY_DELAY_SECONDS)
        if self._buffer:
            log.error("shutting down with %d unpublished usage events", len(self._buffer))
