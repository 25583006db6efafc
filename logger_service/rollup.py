"""Usage aggregates in Redis (layout: shared/usage_layout.py), an exact function of the event
files.

The watermark says how far the files are counted: a file, named by the digest of its first line
(which survives its rotation, and a restore to another disk), the offset of its first line not
yet counted, and which counters the aggregates hold (COUNTERS_VERSION). It moves in the same
MULTI/EXEC as the counters of the lines it passes, guarded by its value (GUARD), so neither a
crash at any point nor a second logger replica counts a line twice or skips one: lines written
but not yet counted are counted by the next catch-up, whoever runs it. When the watermark is
missing (Redis lost the aggregates), points at no file that still exists, or is of other
counters (an upgrade added some), every usage key is deleted and counting restarts from the
oldest file, one chunk per transaction, on the logger's rollup task, so event writing never
waits for it.

The same transactions add each counted line (every line that is a JSON object) to the
recent-requests window (recent_requests(shard), shared/recent_requests.py), trimmed to about
`recent_max` entries: it holds the last lines counted, each once, in file order, and being
under the shard's usage prefix it is deleted and refilled by a rebuild like the counters.

Each event shard's files are counted into that shard's own names (shared/redis_names.py) by
the logger that owns the shard: a rebuild of one shard touches no other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from logger_service.eventfiles import EventFileSet, first_line, line_blocks
from logger_service.tallies import line_records, tally_block
from shared.recent_requests import ENTRY_FIELD, entry_value, line_streamed, slim_fields
from shared.redis_client import RedisClient, atomic
from shared.redis_names import recent_requests, usage_groups, usage_prefix, usage_watermark
from shared.usage import COUNTERS_VERSION, Cell, Tally, tally_records
from shared.usage_layout import bucket_key, by_bucket, cell_key, encode_group, end_ms, group_id

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
GUARD = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
"""
"""Every script of a rollup transaction starts here: KEYS[1] is the watermark, ARGV[1] the
value the step read (empty: none). In one MULTI/EXEC nothing runs between them, so either
every script of the step sees the watermark it read and applies, or none does (another replica
moved it first): the optimistic check WATCH gave, without WATCH, which redis-py's cluster
transactions run outside this event loop."""
COUNT_SCRIPT = (
    GUARD
    + """
-- KEYS[2]: the group registry, then for each cell: its hash and its bucket's set of groups.
-- ARGV[2]: JSON, for each cell: [group id, group JSON, expiry (ms), {field: increment}], with
-- numbers as strings (Lua's would print large ones in exponent form).
local cells = cjson.decode(ARGV[2])
for i, cell in ipairs(cells) do
  local hash, members = KEYS[2 * i + 1], KEYS[2 * i + 2]
  for field, increment in pairs(cell[4]) do
    redis.call('HINCRBY', hash, field, increment)
  end
  redis.call('PEXPIREAT', hash, cell[3])
  redis.call('SADD', members, cell[1])
  redis.call('PEXPIREAT', members, cell[3])
  redis.call('HSET', KEYS[2], cell[1], cell[2])
end
return 1
"""
)
"""A chunk's counts in one command (one argument each is what keeps it fast). EVAL, not
EVALSHA, which could fail with NOSCRIPT inside the MULTI while the watermark still moved."""
RECENT_SCRIPT = (
    GUARD
    + """
-- KEYS[2]: the recent-requests window. ARGV[2]: its bound; ARGV[3]: the entries' field name;
-- ARGV[4], ...: each entry's value, in file order.
for i = 4, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[i])
end
return 1
"""
)
"""A chunk's window entries in one command: sent as an XADD command per entry (each packed, and
its reply read, by the client), the window made a rebuild take 2.4 times as long, not ~1.3."""
UNLINK_SCRIPT = (
    GUARD
    + """
redis.call('UNLINK', unpack(KEYS, 2))
return 1
"""
)
MOVE_SCRIPT = (
    GUARD
    + """
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
)
"""The step's last command: the watermark moved to ARGV[2]; 1 if the step applied."""
SCAN_COUNT = 1000
UNLINK_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Position:
    file: str | None = None
    """Digest of the file's first line; None: before every file."""
    offset: int = 0

    def dump(self) -> bytes:
        return orjson.dumps(
            {"file": self.file, "offset": self.offset, "counters": COUNTERS_VERSION}
        )

    @classmethod
    def load(cls, raw: bytes | None) -> Position | None:
        """None when absent, unreadable or of other counters: each calls for a rebuild."""
        try:
            value = orjson.loads(raw or b"")
            if not isinstance(value, dict) or value.get("counters") != COUNTERS_VERSION:
                return None
            return cls(value["file"], int(value["offset"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(slots=True)
class Chunk:
    """Lines after a position, tallied, and the position after them."""

    end: Position
    lines: int = 0
    cells: dict[Cell, Tally] = field(default_factory=dict)
    recent: list[bytes] = field(default_factory=list)
    """The window entry (entry_value) of each line, in file order; none with the window off."""


class Rollup:
    def __init__(
        self,
        redis: RedisClient,
        events_path: Path,
        retention_days: int,
        *,
        shard: int = 0,
        recent_max: int = 0,
    ) -> None:
        """`events_path`: the shard's current event file; `recent_max`: entries the
        recent-requests window keeps (RECENT_REQUESTS_MAX); 0, none."""
        self._redis = redis
        self._path = events_path
        self._shard = shard
        self._watermark = usage_watermark(shard)
        self._recent = recent_requests(shard)
        self._retention_ms = retention_days * 86_400_000
        self._recent_max = recent_max

    async def catch_up(self) -> int:
        """Count every whole line the files hold now; returns how many lines this call counted."""
        counted = 0
        while True:
            step = await self._step()
            if step == 0:
                return counted
            counted += step or 0

    async def _step(self) -> int | None:
        """Lines counted by one transaction; None when it must be tried again (another replica
        moved the watermark first, or a rebuild just started)."""
        read = await self._redis.get(self._watermark)
        at = Position.load(read)
        chunk = None
        if at is not None:
            recent = self._recent_max > 0
            chunk = await asyncio.to_thread(next_chunk, self._path, at, recent=recent)
        if chunk is not None and chunk.end == at:
            return 0
        stale = [] if chunk is not None else await self._stale_keys()
        expected = read or b""
        async with atomic(self._redis) as pipe:
            if chunk is None:
                for start in range(0, len(stale), UNLINK_BATCH):
                    batch = stale[start : start + UNLINK_BATCH]
                    pipe.eval(UNLINK_SCRIPT, 1 + len(batch), self._watermark, *batch, expected)
                new = Position().dump()
            else:
                self._queue_counts(pipe, chunk.cells, expected)
                self._queue_recent(pipe, chunk.recent, expected)
                new = chunk.end.dump()
            pipe.eval(MOVE_SCRIPT, 1, self._watermark, expected, new)
            *_, moved = await pipe.execute()
        if not moved:
            return None
        return None if chunk is None else chunk.lines

    async def _stale_keys(self) -> list[str]:
        log.warning(
            "usage aggregates of shard %d missing or stale: rebuilding them from its event files",
            self._shard,
        )
        prefix = usage_prefix(self._shard)
        return [
            key
            async for key in self._redis.scan_iter(f"{prefix}*", SCAN_COUNT)
            if key != self._watermark.encode()
        ]

    def _queue_counts(
        self, pipe: Pipeline | ClusterPipeline, cells: dict[Cell, Tally], expected: bytes
    ) -> None:
        """COUNT_SCRIPT for every bucket the cells fall in, skipping buckets already past
        retention (a rebuild of old files)."""
        now_ms = time.time_ns() // 1_000_000
        keys: list[str] = [self._watermark, usage_groups(self._shard)]
        counts = []
        for (bucket, group), tally in by_bucket(cells, projections=True).items():
            expire_at = end_ms(bucket) + self._retention_ms
            if expire_at <= now_ms:
                continue
            gid = group_id(group)
            keys += (cell_key(bucket, gid, self._shard), bucket_key(bucket, self._shard))
            fields = {name: str(value) for name, value in tally.to_fields().items()}
            counts.append((gid, encode_group(group).decode(), str(expire_at), fields))
        if counts:
            pipe.eval(COUNT_SCRIPT, len(keys), *keys, expected, orjson.dumps(counts))

    def _queue_recent(
        self, pipe: Pipeline | ClusterPipeline, entries: list[bytes], expected: bytes
    ) -> None:
        """RECENT_SCRIPT: an XADD per entry, each trimming the window to about `recent_max`
        (`~`: whole stream nodes only, so up to stream-node-max-entries more, 100 by default).
        With the window off, its deletion, so a window kept before does not linger stale."""
        if self._recent_max == 0:
            pipe.eval(UNLINK_SCRIPT, 2, self._watermark, self._recent, expected)
        elif entries:
            pipe.eval(
                RECENT_SCRIPT,
                2,
                self._watermark,
                self._recent,
                expected,
                self._recent_max,
                ENTRY_FIELD,
                *entries,
            )


def next_chunk(
    events_path: Path, at: Position, max_bytes: int = CHUNK_BYTES, *, recent: bool = False
) -> Chunk | None:
    """The whole lines after `at` (about `max_bytes`, from one file), tallied, with their window
    entries if `recent`; None when `at` is in no file that still exists, or past its end: then
    only a rebuild is exact."""
    with ExitStack() as stack:
        files = EventFileSet(events_path, stack)
        start = 0 if at.file is None else _find(files, at.file)
        if start is None:
            return None
        offset = at.offset
        for index in range(start, len(files)):
            file = files.open(index)
            digest = None if file is None else file_digest(file)
            if file is None or digest is None:
                break
            if os.fstat(file.fileno()).st_size < offset:
                return None
            block = next(line_blocks(file, offset, max_bytes), b"")
            if block:
                chunk = Chunk(Position(digest, offset + len(block)), block.count(b"\n"))
                if recent:
                    _count_with_recent(block, chunk)
                else:
                    tally_block(block, chunk.cells)
                return chunk
            offset = 0
    return Chunk(at)


def _count_with_recent(block: bytes, chunk: Chunk) -> None:
    records = []
    for line, record in line_records(block):
        chunk.recent.append(entry_value(slim_fields(record, line_streamed(line))))
        records.append(record)
    tally_records(records, chunk.cells)


def file_digest(file: BinaryIO) -> str | None:
    line = first_line(file)
    return None if line is None else hashlib.blake2b(line, digest_size=8).hexdigest()


def _find(files: EventFileSet, digest: str) -> int | None:
    """Index of the file whose first line has this digest, looking from the newest."""
    for index in reversed(range(len(files))):
        file = files.open(index)
        if file is not None and file_digest(file) == digest:
            return index
    return None
