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

With EVENT_SHARDS > 1 each event goes to one of N streams by a hash of its request_id
(shard_of), chosen once and kept with it; each stream is bounded and watched on its own, and
the publisher's state is the worst of them (one stream past STREAM_MAX_ENTRIES holds back every
event: one buffer, in order).

Redis may also lose entries the logger had not written yet: restart empty, or fail over to a
replica that had not received them (replication is asynchronous; the replica keeps the epoch
marker, which predates the loss). So the publisher keeps each published event until it knows
the logger has it on disk: the logger deletes an entry only after fsync, so every entry older
than the oldest one left in the stream is safe. Each flush is one script per stream (FLUSH_SCRIPT)
that adds the batch and returns, from the node holding that stream, the oldest id, the
dataset's epoch marker and the node's run_id (new at every restart and every promotion); when
either changed, the events of that stream not yet known safe are published again (the logger
drops duplicates by request_id). What is kept for this is bounded by REPLAY_MAX_BYTES the same
way (compacted, then the oldest no longer kept: counted, lost only if Redis loses them too).

Each event is serialised on its own: one that cannot be (a value orjson refuses) is replaced by
a sanitised record of the fields that can, counted in `sanitised`, so it can never stop the
others. The drain loop runs under the process's Supervisor (restarted if it ever fails).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from proxy_service.event_bounds import BoundedEvents, EncodedEvent, encode_event
from shared import redis_names
from shared.redis_client import NODE_IDENTITY_LUA, REDIS_ERRORS, RedisClient
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
FLUSH_SCRIPT = f"""
-- KEYS: the stream, its epoch marker. ARGV: a new epoch value, MEMORY USAGE's samples, then
-- each event to add. Returns the epoch, the node's run_id, the new entries' ids, the stream's
-- length, its estimated bytes and its oldest entry's id (false when there is none).
redis.call('SET', KEYS[2], ARGV[1], 'NX')
local ids = {{}}
for i = 3, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
return {{redis.call('GET', KEYS[2]), {NODE_IDENTITY_LUA}, ids, redis.call('XLEN', KEYS[1]),
        redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', ARGV[2]) or false,
        oldest and oldest[1] or false}}
"""
"""One stream's flush, atomic on its node: what it says about the dataset (epoch, run_id) is
about the node that took the batch. EVAL, not EVALSHA, which a cluster pipeline refuses."""


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


def shard_of(request_id: Any, shards: int) -> int:
    """A stable spread of request ids over the shards (the same in every proxy and release)."""
    return zlib.crc32(str(request_id).encode()) % shards


def worst(states: list[StreamState]) -> StreamState:
    for state in (StreamState.FULL, StreamState.COMPACTING):
        if state in states:
            return state
    return StreamState.OK


@dataclass
class ShardStream:
    """What the publisher knows of one shard's stream."""

    shard: int
    stream: str
    epoch_key: str
    unconfirmed: BoundedEvents
    """Published events (with their stream ids) the logger may not have written yet."""
    dataset: tuple[bytes | None, bytes | None] | None = None
    """(epoch marker, run_id) of the node that took the last batch."""
    state: StreamState = StreamState.OK
    entries: int = 0
    estimated_bytes: int = 0
    overflowing: bool = False
    """Its replay copy is past its bound (said once per episode)."""


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
    def __init__(self, redis: RedisClient, bounds: EventBounds, shards: int = 1) -> None:
        """`shards`: EVENT_SHARDS; REPLAY_MAX_BYTES is shared out evenly among them."""
        self._redis = redis
        self._bounds = bounds
        self._buffer = BoundedEvents(bounds.buffer_bytes, BUFFER_WHY)
        self._shards = [
            ShardStream(
                shard,
                redis_names.events_stream(shard),
                redis_names.redis_epoch(shard),
                BoundedEvents(max(bounds.replay_bytes // shards, 1), REPLAY_WHY),
            )
            for shard in range(shards)
        ]
        self._ready = asyncio.Event()
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
        return sum(len(shard.unconfirmed) for shard in self._shards)

    @property
    def unconfirmed_bytes(self) -> int:
        return sum(shard.unconfirmed.bytes for shard in self._shards)

    @property
    def replay_compacted(self) -> int:
        return sum(shard.unconfirmed.compacted for shard in self._shards)

    @property
    def replay_dropped(self) -> int:
        """Published events no longer kept for a replay: lost only if Redis loses them too
        before the logger writes them."""
        return sum(shard.unconfirmed.dropped for shard in self._shards)

    def publish(self, event: dict[str, Any]) -> None:
        entry = self._encode(event)
        entry.shard = shard_of(entry.request_id, len(self._shards))
        self._log_dropped(self._buffer.append(entry))
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
        by_shard: dict[int, list[EncodedEvent]] = {
            shard.shard: []
            for shard in self._shards
            if shard.unconfirmed or shard.state is not StreamState.OK
        }
        for entry in batch:
            by_shard.setdefault(entry.shard, []).append(entry)
        try:
            replies = await self._round_trip(by_shard, at_shutdown)
        except BaseException:
            self._log_dropped(self._buffer.prepend(batch))
            raise
        self.published += len(batch)
        for (shard, entries), reply in zip(by_shard.items(), replies, strict=True):
            self._took(self._shards[shard], entries, reply)
        self._observe_streams()
        if not self.redis_ok:
            log.warning("publishing usage events again")
        self.redis_ok = True

    async def _round_trip(
        self, by_shard: dict[int, list[EncodedEvent]], at_shutdown: bool
    ) -> list[list]:
        """FLUSH_SCRIPT for each shard in `by_shard` (with its events: none to only look), in
        one pipeline (on a cluster, one per node, sent at once)."""
        if not by_shard:
            return []
        why = self._compact_why(at_shutdown)
        if why is not None:
            self.stream_compacted += sum(
                entry.compact(why) for entries in by_shard.values() for entry in entries
            )
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, entries in by_shard.items():
                names = self._shards[shard]
                pipe.eval(
                    FLUSH_SCRIPT,
                    2,
                    names.stream,
                    names.epoch_key,
                    secrets.token_hex(8),
                    STREAM_SAMPLES,
                    *(entry.data() for entry in entries),
                )
            return await pipe.execute()

    def _took(self, shard: ShardStream, entries: list[EncodedEvent], reply: list) -> None:
        """What a shard's node said after taking `entries`: replay if it is not the dataset
        the last batch went to, keep the new ones, forget what the logger has written."""
        epoch, run_id, ids, length, estimated_bytes, oldest = reply
        dataset = (epoch, run_id)
        if shard.dataset is not None and dataset != shard.dataset:
            self._replay_unconfirmed(shard)
        shard.dataset = dataset
        for entry, raw_id in zip(entries, ids, strict=True):
            entry.stream_id = stream_id(raw_id)
            self._keep_for_replay(shard, entry)
        self._forget_written(shard, stream_id(oldest) if oldest else None)
        shard.entries, shard.estimated_bytes = length, estimated_bytes or 0

    def _compact_why(self, at_shutdown: bool) -> str | None:
        if self.stream is StreamState.FULL:
            return SHUTDOWN_WHY if at_shutdown else None
        return STREAM_WHY if self.stream is StreamState.COMPACTING else None

    def _observe_streams(self) -> None:
        """Take each stream's new state, saying so once when an episode starts or ends; the
        publisher's is the worst of them."""
        for shard in self._shards:
            self._observe(shard, stream_state(shard.entries, shard.estimated_bytes, self._bounds))
        self.stream_entries = sum(shard.entries for shard in self._shards)
        self.stream_bytes = sum(shard.estimated_bytes for shard in self._shards)
        self.stream = worst([shard.state for shard in self._shards])

    def _observe(self, shard: ShardStream, state: StreamState) -> None:
        if state is shard.state:
            return
        if state is StreamState.FULL:
            log.error(
                "Redis stream %s holds %d entries (STREAM_MAX_ENTRIES %d): its logger is "
                "behind; keeping usage events in this proxy's buffer",
                shard.stream,
                shard.entries,
                self._bounds.stream_max_entries,
            )
        elif state is StreamState.COMPACTING:
            log.error(
                "Redis stream %s holds ~%d bytes in %d entries (STREAM_COMPACT_BYTES %d): its "
                "logger is behind; publishing usage events compacted (usage kept, prompt and "
                "response left out)",
                shard.stream,
                shard.estimated_bytes,
                shard.entries,
                self._bounds.stream_compact_bytes,
            )
        else:
            log.warning(
                "Redis stream %s back under its bounds (%d entries); publishing in full",
                shard.stream,
                shard.entries,
            )
        shard.state = state

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

    def _keep_for_replay(self, shard: ShardStream, entry: EncodedEvent) -> None:
        dropped = shard.unconfirmed.append(entry)
        if dropped and not shard.overflowing:
            shard.overflowing = True
            log.warning(
                "events of %s kept for a replay past their share of REPLAY_MAX_BYTES (%d) with "
                "every one compacted: the oldest are no longer kept (lost only if Redis loses "
                "them before the logger writes them; run Redis with appendonly)",
                shard.stream,
                shard.unconfirmed.limit,
            )

    def _forget_written(self, shard: ShardStream, oldest_in_stream: tuple[int, int] | None) -> None:
        """Entries older than the stream's oldest (all, if it is empty) were deleted by the
        logger after fsync: they no longer need a replay."""
        unconfirmed = shard.unconfirmed
        while unconfirmed and (
            oldest_in_stream is None or unconfirmed.entries[0].stream_id < oldest_in_stream
        ):
            unconfirmed.popleft()
        if shard.overflowing and unconfirmed.bytes < unconfirmed.limit // 2:
            shard.overflowing = False

    def _replay_unconfirmed(self, shard: ShardStream) -> None:
        """Queue again what the shard's node took but may have lost before the logger wrote
        it: it restarted, or is another node now (a failover)."""
        unconfirmed = shard.unconfirmed
        replay = [unconfirmed.popleft() for _ in range(len(unconfirmed))]
        log.warning(
            "the Redis node holding %s restarted or failed over; publishing %d events the "
            "logger may not have written again",
            shard.stream,
            len(replay),
        )
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
