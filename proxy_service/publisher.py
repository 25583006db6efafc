"""Publishes usage events to the Redis stream in the background, in batches.

Requests only append to an in-memory buffer (no Redis round trip on the request path). A
background task drains it with pipelined XADDs. While Redis is unreachable events stay in the
buffer, up to EVENT_BUFFER_SIZE; past that an event is dropped, counted in `dropped` (exported on
/metrics and /readyz) and logged, never silently.

Redis may also restart empty and lose entries the logger had not written yet. So the publisher
keeps each published event until it knows the logger has it on disk: the logger deletes an entry
only after fsync, so every entry older than the oldest one left in the stream is safe. Each flush
reads that oldest id and the dataset's epoch marker (REDIS_EPOCH) in the same round trip; when
the epoch changed, the events not yet known safe are published again (the logger drops
duplicates by request_id). With a logger keeping up, that is a batch or two, not a time window
of traffic (which cost tens of MiB at a few thousand events/s).

Each event is serialised on its own: one that cannot be (a value orjson refuses) is replaced by
a sanitised record of the fields that can, counted in `sanitised`, so it can never stop the
others. The drain loop runs under the process's Supervisor (restarted if it ever fails).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import redis_names

log = logging.getLogger(__name__)

BATCH_SIZE = 256
RETRY_DELAY_SECONDS = 0.2
REPLAY_MAX_EVENTS = 5000
"""Events kept for a replay at most: a logger down long enough to fall further behind than this
while Redis also restarts empty loses the oldest (run Redis with appendonly, as compose does)."""


def stream_id(raw: bytes) -> tuple[int, int]:
    """A stream entry id (`ms-seq`) in a form that orders like Redis orders ids."""
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)


def sanitised(event: dict[str, Any], reason: str) -> dict[str, Any]:
    """The event with every field that cannot be serialised set to null, and why."""
    kept: dict[str, Any] = {}
    dropped = []
    for name, value in event.items():
        try:
            orjson.dumps(value)
        except TypeError:
            kept[name] = None
            dropped.append(name)
        else:
            kept[name] = value
    kept["unserialisable"] = f"{', '.join(dropped)}: {reason}"
    return kept


class EventPublisher:
    def __init__(self, redis: Redis, capacity: int) -> None:
        self._redis = redis
        self._capacity = capacity
        self._buffer: deque[dict[str, Any]] = deque()
        self._unconfirmed: deque[tuple[tuple[int, int], dict[str, Any]]] = deque(
            maxlen=REPLAY_MAX_EVENTS
        )
        """Published events (with their stream ids) the logger may not have written yet."""
        self._epoch: bytes | None = None
        self._ready = asyncio.Event()
        self.published = 0
        self.dropped = 0
        self.sanitised = 0
        self.redis_ok = True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

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
                pipe.xadd(redis_names.EVENTS_STREAM, {"e": self._encode(event)})
            pipe.xrange(redis_names.EVENTS_STREAM, count=1)
            _, epoch, *ids, oldest = await pipe.execute()
        for _ in batch:
            self._buffer.popleft()
        self.published += len(batch)
        if self._epoch is not None and epoch != self._epoch:
            self._replay_unconfirmed()
        self._epoch = epoch
        self._unconfirmed.extend(zip(map(stream_id, ids), batch, strict=True))
        self._forget_written(stream_id(oldest[0][0]) if oldest else None)
        if not self.redis_ok:
            log.warning("publishing usage events again")
        self.redis_ok = True

    def _encode(self, event: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(event)
        except TypeError as error:  # orjson.JSONEncodeError: too deep, an int past 64 bits...
            self.sanitised += 1
            log.error(
                "usage event %s not serialisable (%s); publishing the fields that are",
                event.get("request_id"),
                error,
            )
            return orjson.dumps(sanitised(event, str(error)))

    def _forget_written(self, oldest_in_stream: tuple[int, int] | None) -> None:
        """Entries older than the stream's oldest (all, if it is empty) were deleted by the
        logger after fsync: they no longer need a replay."""
        unconfirmed = self._unconfirmed
        while unconfirmed and (oldest_in_stream is None or unconfirmed[0][0] < oldest_in_stream):
            unconfirmed.popleft()

    def _replay_unconfirmed(self) -> None:
        """Queue again what Redis took but has since lost before the logger wrote it."""
        replay = [event for _, event in self._unconfirmed]
        log.warning("Redis restarted empty; publishing %d unwritten events again", len(replay))
        self._unconfirmed.clear()
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
