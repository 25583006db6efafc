"""The logger: reads usage events from the Redis streams of the shards it owns and appends
each shard's to its own file (events.jsonl for shard 0, events-<k>.jsonl for shard k).

At-least-once delivery from Redis plus request_id dedupe in the sink gives exactly-once lines:
a batch is written and fsynced before it is acknowledged (XACK) and deleted (XDEL); after a crash
the entries it had read but not acknowledged are read again from the group's pending list (its
own, by its stable consumer name; a dead consumer's, through XAUTOCLAIM) and the ones already
written are skipped.

The same loop drains the stream of the Redis names before hash tags while it exists, and the
key file loop moves what else an upgrade needs (logger_service/upgrade.py).

Each owned shard is a lane: its stream, its file (EventSink), its rollup, and its events and
rollup loops; one logger of LOGGER_REPLICAS owns shards s with s % LOGGER_REPLICAS ==
LOGGER_ORDINAL, so no two loggers write one file, and only logger 0 keeps keys.json. After each
batch the lane's rollup counts the new lines into its shard's usage aggregates in Redis
(logger_service/rollup.py); the sink rotates the file, and the tidy task writes the rotated
files' sidecars and deletes those past retention (logger_service/rotated.py).

Each line is priced as it is made (logger_service/records.py) with the price table in force when
its batch began: the prices task reads PRICES_FILE again when it changes, keeping the last good
table when it cannot be used (the status report says which table is in force, and why not).

The loops run under one Supervisor: the rollup, tidy and prices loops are restarted if they fail;
the events loops and the key file loop are not, and their failure ends run() (LoggerFailed), so the
process exits and its container restarts it rather than staying up writing nothing. The
heartbeat is refreshed only while the events loop completes read/write cycles and every loop
runs; a file that cannot be written is named (DiskError), retried, and never acknowledged.

A batch is bounded in bytes as well as in entries: a Lua script reads entries one at a time
(XREADGROUP COUNT 1, in Redis) until BATCH_SIZE entries or LOGGER_BATCH_BYTES of their fields,
so a batch holds at most LOGGER_BATCH_BYTES plus one entry, whatever the sizes (a blocking read,
when nothing waits, takes one entry). Its lines are made in a thread, in slices of at most
SLICE_BYTES, the heartbeat's progress noted after each: a batch of huge events neither stalls
the event loop nor lets the heartbeat lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.exceptions import ResponseError

from logger_service.health import DiskError, Health
from logger_service.keyfile import KeyFileKeeper
from logger_service.records import record_line
from logger_service.rollup import Rollup
from logger_service.rotated import delete_expired, missing_sidecars, write_sidecar
from logger_service.sink import EventSink
from logger_service.upgrade import OLD_STREAM, drop_if_empty, retire_old_names
from shared import redis_names
from shared.prices import PriceBook, PriceTable
from shared.redis_client import REDIS_ERRORS, RedisClient, Script
from shared.settings import Settings
from shared.supervision import Supervisor

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
SLICE_BYTES = 8 << 20
BLOCK_MS = 200
GATHER_SECONDS = 0.02
"""After a batch short of BATCH_SIZE (the logger is keeping up), let the next events gather this
long: a trickle read as it comes costs a read, an fsync, an acknowledgement and a rollup for every
few events (half a core at 1,000 events/s), for a delay to disk that stays far under a second."""
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_SECONDS = 10.0
DISK_RETRY_SECONDS = 1.0
KEYFILE_EVERY_SECONDS = 0.2
RETRY_DELAY_SECONDS = 0.5
ROLLUP_EVERY_SECONDS = 1.0
TIDY_EVERY_SECONDS = 60.0

READ_BOUNDED = """
local stream, group, consumer, start = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local max_count, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local entries, bytes = {}, 0
while #entries < max_count and bytes < max_bytes do
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1,
                           'STREAMS', stream, start)
  local entry = reply and reply[1][2][1]
  if not entry then break end
  entries[#entries + 1] = entry
  for _, part in ipairs(entry[2] or {}) do bytes = bytes + #part end
  if start ~= '>' then start = entry[1] end
end
return entries
"""
"""Entries for this consumer after `start` ('>': new ones; an id: its own pending ones), one
XREADGROUP each, until `max_count` entries or `max_bytes` of their fields (the last one may
pass it). A pending entry deleted from the stream comes without fields."""


class LoggerFailed(Exception):
    """A loop the logger cannot do without failed (the Supervisor logged why)."""


@dataclass
class Lane:
    """One owned shard: where its events come from, the file they go to, and its rollup."""

    shard: int
    stream: str
    sink: EventSink
    rollup: Rollup
    rollup_due: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def of(cls, shard: int, settings: Settings, redis: RedisClient) -> Lane:
        path = settings.event_file(shard)
        return cls(
            shard,
            redis_names.events_stream(shard),
            EventSink(path, rotate_bytes=settings.events_rotate_bytes),
            Rollup(
                redis,
                path,
                settings.events_retention_days,
                shard=shard,
                recent_max=settings.recent_requests_max,
            ),
        )


class UsageLogger:
    def __init__(self, settings: Settings, redis: RedisClient) -> None:
        self._settings = settings
        self._redis = redis
        self._consumer = settings.logger_consumer
        self.lanes = [Lane.of(shard, settings, redis) for shard in settings.owned_shards]
        self.keyfile = KeyFileKeeper(redis, settings.keys_path) if settings.owns_key_file else None
        self.health = Health(redis, settings.logger_consumer)
        self.prices = PriceBook(settings.prices_file)
        self.supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._read_bounded = Script(READ_BOUNDED)
        self._old_names_retired = False
        self.written = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Until stop(): keep keys.json in step and move events to the file, riding out Redis
        outages and full disks; raises LoggerFailed when the events or key file loop fails."""
        for lane in self.lanes:
            lane.sink.open()
        await asyncio.to_thread(self.prices.refresh)
        supervisor = self.supervisor
        for lane in self.lanes:
            name = "events" if lane.shard == 0 else f"events {lane.shard}"
            supervisor.start(name, functools.partial(self._events_loop, lane), restart=False)
            rollup = "rollup" if lane.shard == 0 else f"rollup {lane.shard}"
            supervisor.start(rollup, functools.partial(self._rollup_loop, lane), restart=True)
        supervisor.start("key file", self._keyfile_loop, restart=False)
        supervisor.start("tidy", self._tidy, restart=True)
        reload = functools.partial(self.prices.run, self._settings.prices_reload_seconds)
        supervisor.start("prices", reload, restart=True)
        try:
            await _first_set(self._stop, supervisor.fatal)
        finally:
            # Every loop ends at its next check of _stop, and is cancelled too (redis-py may
            # swallow a cancellation). Cancelled anywhere is safe: an entry is acknowledged only
            # after its line is fsynced (and a line written twice is dropped), a rollup step is
            # one transaction, a sidecar or keys.json one rename; the sink waits for an append
            # still running in its thread.
            self._stop.set()
            await supervisor.stop()
            for lane in self.lanes:
                lane.sink.close()
        if supervisor.fatal.is_set():
            raise LoggerFailed("a loop the logger cannot do without failed")

    async def _keyfile_loop(self) -> None:
        """Keep keys.json in step (logger 0 only), then report: the status always, the
        heartbeat while events move and every loop runs."""
        keyfile = self.keyfile
        while not self._stop.is_set():
            delay = KEYFILE_EVERY_SECONDS
            try:
                try:
                    if keyfile is not None:
                        await keyfile.tick()
                        self.health.disk_ok(keyfile.path.name)
                    if not self._old_names_retired:
                        now = datetime.now(UTC)
                        self._old_names_retired = await retire_old_names(self._redis, now)
                except DiskError as error:
                    self.health.disk_failed(error)
                    delay = DISK_RETRY_SECONDS
                await self.health.publish(
                    alive=self.health.progressing and self.supervisor.all_running,
                    keys_file_error=None if keyfile is None else keyfile.file_error,
                    prices=self.prices,
                )
            except REDIS_ERRORS as error:
                log.warning("key file sync: Redis unavailable (%s)", error)
            await self._sleep(delay)

    async def _rollup_loop(self, lane: Lane) -> None:
        """Count the lane's new lines into its usage aggregates after each batch (and every
        second, which also finishes a rebuild), never holding up the writing of events."""
        while not self._stop.is_set():
            try:
                await lane.rollup.catch_up()
            except REDIS_ERRORS as error:
                log.warning("usage rollup of shard %d: %s; retrying", lane.shard, error)
            await self._sleep(ROLLUP_EVERY_SECONDS, lane.rollup_due)
            lane.rollup_due.clear()

    async def _tidy(self) -> None:
        """Delete rotated files past retention; write the sidecars of newly rotated ones."""
        retention_days = self._settings.events_retention_days
        while not self._stop.is_set():
            for lane in self.lanes:
                try:
                    await asyncio.to_thread(
                        delete_expired, lane.sink.path, retention_days, time.time()
                    )
                    for path in await asyncio.to_thread(missing_sidecars, lane.sink.path):
                        await asyncio.to_thread(write_sidecar, path)
                except OSError as error:
                    log.warning("rotated event files: %s", error)
            await self._sleep(TIDY_EVERY_SECONDS)

    async def _events_loop(self, lane: Lane) -> None:
        while not self._stop.is_set():
            try:
                await self._ensure_group(lane.stream)
                await self._consume(lane)
            except DiskError as error:  # the entries stay pending: read and written again
                self.health.disk_failed(error)
                await self._sleep(DISK_RETRY_SECONDS)
            except REDIS_ERRORS as error:
                log.warning("event stream: Redis unavailable (%s); retrying", error)
                await self._sleep(RETRY_DELAY_SECONDS)

    async def _ensure_group(self, stream: str) -> None:
        try:
            await self._redis.xgroup_create(stream, redis_names.LOGGER_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _consume(self, lane: Lane) -> None:
        """Own pending entries first (a previous run's), then new ones, claiming dead
        consumers' leftovers and (shard 0) draining the old stream now and then."""
        while not self._stop.is_set() and await self._read_batch(lane, lane.stream, "0"):
            pass
        next_claim = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_claim:
                await self._claim_abandoned(lane, lane.stream)
                if lane.shard == 0:
                    await self._drain_old_stream(lane)
                next_claim = time.monotonic() + CLAIM_EVERY_SECONDS
            if not await self._read_batch(lane, lane.stream, ">", wait=True):
                await asyncio.sleep(GATHER_SECONDS)

    async def _drain_old_stream(self, lane: Lane) -> None:
        """The stream of the names before hash tags (logger_service/upgrade.py), while it
        exists: read to its end as ours is, into shard 0's file, then deleted once empty."""
        if not await self._redis.exists(OLD_STREAM):
            return
        await self._ensure_group(OLD_STREAM)
        while not self._stop.is_set() and await self._read_batch(lane, OLD_STREAM, "0"):
            pass
        await self._claim_abandoned(lane, OLD_STREAM)
        while not self._stop.is_set() and await self._read_batch(lane, OLD_STREAM, ">"):
            pass
        if await drop_if_empty(self._redis, OLD_STREAM):
            log.warning("the old event stream %s is written out and deleted", OLD_STREAM)

    async def _read_batch(self, lane: Lane, stream: str, start: str, *, wait: bool = False) -> bool:
        """Read a batch bounded in bytes and write it; True if it was full (more may wait).
        `wait`: when no new entry is there, wait up to BLOCK_MS for one."""
        reply = await self._read_bounded(
            self._redis,
            keys=[stream],
            args=[
                redis_names.LOGGER_GROUP,
                self._consumer,
                start,
                BATCH_SIZE,
                self._settings.logger_batch_bytes,
            ],
        )
        entries = [(entry_id, _fields(flat)) for entry_id, flat in reply]
        if not entries and wait:
            waited = await self._redis.xreadgroup(
                redis_names.LOGGER_GROUP,
                self._consumer,
                {stream: ">"},
                count=1,
                block=BLOCK_MS,
            )
            entries = waited[0][1] if waited else []
        await self._write(lane, stream, entries)
        size = sum(map(_entry_bytes, entries))
        return len(entries) >= BATCH_SIZE or size >= self._settings.logger_batch_bytes

    async def _claim_abandoned(self, lane: Lane, stream: str) -> None:
        """Take over what dead consumers left pending (ids only: no entry is carried twice),
        then write it as this consumer's own pending entries."""
        while await self._redis.xautoclaim(
            stream,
            redis_names.LOGGER_GROUP,
            self._consumer,
            min_idle_time=CLAIM_IDLE_MS,
            start_id="0-0",
            count=BATCH_SIZE,
            justid=True,
        ):
            while not self._stop.is_set() and await self._read_batch(lane, stream, "0"):
                pass

    async def _write(self, lane: Lane, stream: str, entries: list) -> None:
        """Append, fsync, then acknowledge and delete: never the other way round. Each call
        ends a read/write cycle: progress, for the heartbeat. A pending entry deleted from the
        stream (no fields) is only acknowledged: there is nothing left to write."""
        kept = [(entry_id, fields) for entry_id, fields in entries if fields]
        prices = self.prices.table  # immutable: a reload swaps it, never changes it
        lines: list[tuple[str, bytes]] = []
        for piece in _slices(kept, SLICE_BYTES):
            lines += await asyncio.to_thread(self._lines, piece, prices)
            self.health.progressed()
        if lines:
            self.written += await self._append(lane.sink, lines)
        if entries:
            await self._acknowledge(stream, [entry_id for entry_id, _ in entries])
            lane.rollup_due.set()
        self.health.progressed()

    def _lines(self, entries: list, prices: PriceTable | None) -> list[tuple[str, bytes]]:
        return [
            record_line(entry_id.decode(), fields, self._settings, prices)
            for entry_id, fields in entries
        ]

    async def _append(self, sink: EventSink, lines: list[tuple[str, bytes]]) -> int:
        try:
            written = await asyncio.to_thread(sink.append, lines)
        except OSError as error:
            raise DiskError("append to", sink.path, error) from error
        self.health.disk_ok(sink.path.name)
        return written

    async def _acknowledge(self, stream: str, ids: list) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, redis_names.LOGGER_GROUP, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()

    async def _sleep(self, seconds: float, *wake: asyncio.Event) -> None:
        """Sleep, cut short by stop() or any of `wake`: no loop sleeps through a stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first_set(self._stop, *wake), seconds)


async def _first_set(*events: asyncio.Event) -> None:
    """Wait until any of the events is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _fields(flat: list | None) -> dict[bytes, bytes]:
    """A script reply's [name, value, ...] as XREADGROUP's dict (empty: deleted entry)."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}


def _entry_bytes(entry: tuple) -> int:
    return sum(len(name) + len(value) for name, value in entry[1].items())


def _slices(entries: list, max_bytes: int) -> list[list]:
    """`entries` in order, in runs of at most `max_bytes` (or of one larger entry)."""
    slices: list[list] = []
    size = max_bytes
    for entry in entries:
        entry_size = _entry_bytes(entry)
        if size + entry_size > max_bytes:
            slices.append([])
            size = 0
        slices[-1].append(entry)
        size += entry_size
    return slices
