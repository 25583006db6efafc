"""Publishes usage events to the Redis stream in the background, in batches, within bounds in
bytes.

Requests only append to an in-memory buffer (no Redis round trip on the request path); each event
is encoded there, once (proxy_service/event_bounds.py), so its size is known. A background task
drains the buffer with pipelined XADDs. While Redis is unreachable events stay in the buffer, up
to EVENT_BUFFER_BYTES; past that the oldest are compacted (prompt and response left out, usage and
every other field kept, `"compacted": true`), and only once all are compacted is the oldest
dropped, counted in `dropped` (on /metrics and /readyz) and logged, never silently.

The stream is bounded too, never by XADD MAXLEN (which deletes entries the logger has not
written). Each flush reads, in its round trip, the stream's length (XLEN) and an estimate of its
bytes (MEMORY USAGE, which samples its oldest nodes: it errs high while old full events remain).
Past STREAM_COMPACT_BYTES the proxy publishes compacted events (the logger is behind: Redis then
holds ~0.6 KB per event); past STREAM_MAX_ENTRIES it stops publishing and keeps events in its
buffer (so in EVENT_BUFFER_BYTES) until the logger catches up. Both are logged once per episode
and shown on /readyz and /metrics.

Redis may also restart empty and lose entries the logger had not written yet. So the publisher
keeps each published event until it knows the logger has it on disk: the logger deletes an entry
only after fsync, so every entry older than the oldest one left in the stream is safe. Each flush
reads that oldest id and the dataset's epoch marker (REDIS_EPOCH) in the same round trip; when
the epoch changed, the events not yet known safe are published again (the logger drops
duplicates by request_id). What is kept for this is bounded by REPLAY_MAX_BYTES the same way
(compacted, then the oldest no longer kept: counted, lost only if Redis also restarts empty).

Each event is serialised on its own: one that cannot be (a value orjson refuses) is replaced by
a sanitised record of the fields that can, counted in `sanitised`, so it can never stop the
others. The drain loop runs under the process's Supervisor (restarted if it ever fails).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from proxy_service.event_bounds import BoundedEvents, EncodedEvent, encode_event
from shared import redis_names
from shared.redis_client import REDIS_ERRORS, RedisClient
from shared.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 256
BATCH_MAX_BYTES = 4 << 20
"""A batch is cut here too (one event larger goes alone): what one round trip carries, and what
is held outside the buffer's bound while it is in flight."""
RETRY_DELAY_SECONDS = 0.2
STREAM_SAMPLES = 16
"""Stream nodes MEMORY USAGE reads to estimate the stream's bytes (O(samples), not O(entries))."""
BUFFER_WHY = "proxy buffer past EVENT_BUFFER_BYTES"
REPLAY_WHY = "replay copy past REPLAY_MAX_BYTES"
STREAM_WHY = "Redis stream past STREAM_COMPACT_BYTES"
SHUTDOWN_WHY = "published at shutdown past STREAM_MAX_ENTRIES"


class StreamState(StrEnum):
    OK = "ok"
    COMPACTING = "compacting"
    """Past STREAM_COMPACT_BYTES: events are published compacted."""
    FULL = "full"
    """Past STREAM_MAX_ENTRIES: events wait in the proxy's buffer."""


@dataclass(frozen=True)
class EventBounds:
    buffer_bytes: int
    replay_bytes: int
    stream_compact_bytes: int
    stream_max_entries: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBounds:
        return cls(
            settings.event_buffer_bytes,
            settings.replay_max_bytes,
            settings.stream_compact_bytes,
            settings.stream_max_entries,
        )

    @classmethod
    def none(cls) -> EventBounds:
        """No bound reached in practice: for benchmarks that measure throughput, not bounds."""
        return cls(sys.maxsize, sys.maxsize, sys.maxsize, sys.maxsize)


def stream_state(entries: int, estimated_bytes: int, bounds: EventBounds) -> StreamState:
    if entries >= bounds.stream_max_entries:
        return StreamState.FULL
    if estimated_bytes >= bounds.stream_compact_bytes:
        return StreamState.COMPACTING
    return StreamState.OK


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
    def __init__(self, redis: RedisClient, bounds: EventBounds) -> None:
        self._redis = redis
        self._bounds = bounds
        self._buffer = BoundedEvents(bounds.buffer_bytes, BUFFER_WHY)
        self._unconfirmed = BoundedEvents(bounds.replay_bytes, REPLAY_WHY)
        """Published events (with their stream ids) the logger may not have written yet."""
        self._epoch: bytes | None = None
        self._ready = asyncio.Event()
        self._replay_overflowing = False
        self.published = 0
        self.sanitised = 0
        self.stream_compacted = 0
        """Events published compacted because of the stream's state (or at a shutdown)."""
        self.redis_ok = True
        self.stream = StreamState.OK
        self.stream_entries = 0
        self.stream_bytes = 0
        """The stream's bytes as last estimated."""

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def pending_bytes(self) -> int:
        return self._buffer.bytes

    @property
    def dropped(self) -> int:
        """Events lost: the buffer was past its bound with every event in it compacted."""
        return self._buffer.dropped

    @property
    def buffer_compacted(self) -> int:
        return self._buffer.compacted

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    @property
    def unconfirmed_bytes(self) -> int:
        return self._unconfirmed.bytes

    @property
    def replay_compacted(self) -> int:
        return self._unconfirmed.compacted

    @property
    def replay_dropped(self) -> int:
        """Published events no longer kept for a replay: lost only if Redis restarts empty
        before the logger writes them."""
        return self._unconfirmed.dropped

    def publish(self, event: dict[str, Any]) -> None:
        self._log_dropped(self._buffer.append(self._encode(event)))
        self._ready.set()

    async def run(self) -> None:
        """Drain forever; on a Redis error keep the batch and retry. While the stream is past a
        bound, look at it again every RETRY_DELAY_SECONDS, events or not, so its state (and
        the alarm) ends when the logger has caught up, not at the next request."""
        while True:
            await self._ready.wait()
            if not self._buffer and self.stream is StreamState.OK:
                self._ready.clear()
                continue
            try:
                await self.flush_once()
            except REDIS_ERRORS as error:
                if self.redis_ok:
                    log.warning("cannot publish usage events (%s); buffering", error)
                self.redis_ok = False
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                continue
            idle_in_alarm = not self._buffer and self.stream is not StreamState.OK
            if self.stream is StreamState.FULL or idle_in_alarm:
                await asyncio.sleep(RETRY_DELAY_SECONDS)

    async def flush_once(self, at_shutdown: bool = False) -> None:
        """XADD a batch of buffered events in one round trip (none while the stream is full,
        unless `at_shutdown`: then compacted), reading the stream's state in the same one; the
        batch goes back to the buffer's head if the round trip fails."""
        publishing = at_shutdown or self.stream is not StreamState.FULL
        batch = self._buffer.take(BATCH_SIZE, BATCH_MAX_BYTES) if publishing else []
        try:
            reply = await self._round_trip(batch, at_shutdown)
        except BaseException:
            self._log_dropped(self._buffer.prepend(batch))
            raise
        epoch, ids, entries, estimated_bytes, oldest = reply
        self.published += len(batch)
        if self._epoch is not None and epoch != self._epoch:
            self._replay_unconfirmed()
        self._epoch = epoch
        for entry, raw_id in zip(batch, ids, strict=True):
            entry.stream_id = stream_id(raw_id)
            self._keep_for_replay(entry)
        self._forget_written(stream_id(oldest[0][0]) if oldest else None)
        self._observe_stream(entries, estimated_bytes or 0)
        if not self.redis_ok:
            log.warning("publishing usage events again")
        self.redis_ok = True

    async def _round_trip(
        self, batch: list[EncodedEvent], at_shutdown: bool
    ) -> tuple[bytes | None, list[bytes], int, int | None, list]:
        why = self._compact_why(at_shutdown)
        if why is not None:
            self.stream_compacted += sum(entry.compact(why) for entry in batch)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(redis_names.REDIS_EPOCH, secrets.token_hex(8), nx=True)
            pipe.get(redis_names.REDIS_EPOCH)
            for entry in batch:
                pipe.xadd(redis_names.EVENTS_STREAM, {"e": entry.data()})
            pipe.xlen(redis_names.EVENTS_STREAM)
            pipe.memory_usage(redis_names.EVENTS_STREAM, samples=STREAM_SAMPLES)
            pipe.xrange(redis_names.EVENTS_STREAM, count=1)
            _, epoch, *ids, entries, estimated_bytes, oldest = await pipe.execute()
        return epoch, ids, entries, estimated_bytes, oldest

    def _compact_why(self, at_shutdown: bool) -> str | None:
        if self.stream is StreamState.FULL:
            return SHUTDOWN_WHY if at_shutdown else None
        return STREAM_WHY if self.stream is StreamState.COMPACTING else None

    def _observe_stream(self, entries: int, estimated_bytes: int) -> None:
        """Take the stream's new state; say so once when an episode starts or ends."""
        self.stream_entries, self.stream_bytes = entries, estimated_bytes
        state = stream_state(entries, estimated_bytes, self._bounds)
        if state is self.stream:
            return
        if state is StreamState.FULL:
            log.error(
                "Redis stream holds %d entries (STREAM_MAX_ENTRIES %d): the logger is behind; "
                "keeping usage events in this proxy's buffer",
                entries,
                self._bounds.stream_max_entries,
            )
        elif state is StreamState.COMPACTING:
            log.error(
                "Redis stream holds ~%d bytes in %d entries (STREAM_COMPACT_BYTES %d): the "
                "logger is behind; publishing usage events compacted (usage kept, prompt and "
                "response left out)",
                estimated_bytes,
                entries,
                self._bounds.stream_compact_bytes,
            )
        else:
            log.warning(
                "Redis stream back under its bounds (%d entries); publishing in full", entries
            )
        self.stream = state

    def _encode(self, event: dict[str, Any]) -> EncodedEvent:
        try:
            return encode_event(event)
        except TypeError as error:  # orjson.JSONEncodeError: too deep, an int past 64 bits...
            self.sanitised += 1
            log.error(
                "usage event %s not serialisable (%s); publishing the fields that are",
                event.get("request_id"),
                error,
            )
            return encode_event(sanitised(event, str(error)))

    def _log_dropped(self, lost: list[EncodedEvent]) -> None:
        for entry in lost:
            log.error(
                "usage event buffer past EVENT_BUFFER_BYTES (%d) with every event compacted; "
                "dropped event %s (%d dropped so far)",
                self._bounds.buffer_bytes,
                entry.request_id,
                self._buffer.dropped,
            )

    def _keep_for_replay(self, entry: EncodedEvent) -> None:
        dropped = self._unconfirmed.append(entry)
        if dropped and not self._replay_overflowing:
            self._replay_overflowing = True
            log.warning(
                "events kept for a replay past REPLAY_MAX_BYTES (%d) with every one compacted: "
                "the oldest are no longer kept (lost only if Redis restarts empty before the "
                "logger writes them; run Redis with appendonly)",
                self._bounds.replay_bytes,
            )

    def _forget_written(self, oldest_in_stream: tuple[int, int] | None) -> None:
        """Entries older than the stream's oldest (all, if it is empty) were deleted by the
        logger after fsync: they no longer need a replay."""
        unconfirmed = self._unconfirmed
        while unconfirmed and (
            oldest_in_stream is None or unconfirmed.entries[0].stream_id < oldest_in_stream
        ):
            unconfirmed.popleft()
        if self._replay_overflowing and unconfirmed.bytes < unconfirmed.limit // 2:
            self._replay_overflowing = False

    def _replay_unconfirmed(self) -> None:
        """Queue again what Redis took but has since lost before the logger wrote it."""
        replay = [self._unconfirmed.popleft() for _ in range(len(self._unconfirmed))]
        log.warning("Redis restarted empty; publishing %d unwritten events again", len(replay))
        self._log_dropped(self._buffer.prepend(replay))
        self._ready.set()

    async def drain(self, timeout: float) -> None:
        """At shutdown: publish what is buffered, giving up after `timeout` seconds; past
        STREAM_MAX_ENTRIES too (compacted: a replica's buffer at most), as it would be lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._buffer and loop.time() < deadline:
            try:
                await self.flush_once(at_shutdown=True)
            except REDIS_ERRORS:
                await asyncio.sleep(RETRY_DELAY_SECONDS)
        if self._buffer:
            log.error("shutting down with %d unpublished usage events", len(self._buffer))
