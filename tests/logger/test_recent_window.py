"""The recent-requests window in a real Redis stays the last lines the rollup counted, each once,
in file order: through catch-ups, crashes between chunks, replicas, rotations and rebuilds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict

import orjson
import pytest
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from logger_service.sink import EventSink
from logger_service.worker import UsageLogger
from shared.recent_requests import RecentRequest, entry_value, slim_fields
from shared.redis_names import RECENT_REQUESTS, USAGE_WATERMARK
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN
from tests.recent_data import record_lines

RETENTION_DAYS = 3650
PADDING = "p" * 2500
"""Prompt text that makes a few hundred lines span several 1 MiB chunks."""


@pytest.fixture
async def redis(redis_client, redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def rollup(redis: Redis, tmp_path, recent_max: int) -> Rollup:
    return Rollup(redis, tmp_path / "events.jsonl", RETENTION_DAYS, recent_max=recent_max)


def append(path, lines: list[bytes]) -> None:
    with path.open("ab") as file:
        file.write(b"".join(lines))


def big_lines(count: int, seed: int = 1) -> list[bytes]:
    lines = []
    for line in record_lines(count, seed):
        record = orjson.loads(line)
        record["prompt"] = {"messages": [{"role": "user", "content": PADDING}]}
        lines.append(orjson.dumps(record) + b"\n")
    return lines


async def window(redis: Redis) -> list[RecentRequest]:
    """The whole window, oldest first."""
    return [RecentRequest.from_entry(i, f) for i, f in await redis.xrange(RECENT_REQUESTS)]


def id_order(row: RecentRequest) -> tuple[int, ...]:
    return tuple(map(int, row.id.split("-")))


def request_ids_of(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in lines]


async def slack(redis: Redis) -> int:
    """How far past its bound `XADD MAXLEN ~` may leave the window: it trims whole stream nodes
    only, each of at most stream-node-max-entries (100 by default)."""
    return int((await redis.config_get("stream-node-max-entries"))["stream-node-max-entries"])


async def assert_window_is_last(redis: Redis, lines: list[bytes], bound: int) -> None:
    """The window holds the last `bound` lines (and at most `slack` older ones), in file order,
    each once, each as slim_fields reads its line."""
    rows = await window(redis)
    kept = len(rows)
    assert min(bound, len(lines)) <= kept <= min(bound + await slack(redis), len(lines))
    assert [row.request_id for row in rows] == request_ids_of(lines[-kept:])
    for row, line in zip(rows, lines[-kept:], strict=True):
        assert asdict(row) == asdict(
            RecentRequest.from_entry(row.id, {b"r": entry_value(slim_fields(orjson.loads(line)))})
        )


async def test_a_catch_up_fills_the_window_with_every_counted_line_in_file_order(redis, tmp_path):
    lines = record_lines(700)
    append(tmp_path / "events.jsonl", lines[:300])
    counter = rollup(redis, tmp_path, recent_max=10_000)
    assert await counter.catch_up() == 300
    append(tmp_path / "events.jsonl", lines[300:])
    assert await counter.catch_up() == 400
    assert await counter.catch_up() == 0
    assert await redis.xlen(RECENT_REQUESTS) == 700
    await assert_window_is_last(redis, lines, 10_000)


async def test_the_window_keeps_about_its_bound_of_the_newest_lines(redis, tmp_path):
    lines = record_lines(3000)
    counter = rollup(redis, tmp_path, recent_max=250)
    for start in range(0, len(lines), 130):
        append(tmp_path / "events.jsonl", lines[start : start + 130])
        await counter.catch_up()
        assert await redis.xlen(RECENT_REQUESTS) <= 250 + await slack(redis)
    await assert_window_is_last(redis, lines, 250)


async def test_lines_that_are_not_json_objects_are_counted_but_not_shown(redis, tmp_path):
    lines = record_lines(5)
    append(tmp_path / "events.jsonl", [lines[0], b"{not json\n", b"[1, 2]\n", *lines[1:]])
    assert await rollup(redis, tmp_path, recent_max=100).catch_up() == 7
    await assert_window_is_last(redis, lines, 100)


class CrashAfterChunks(Rollup):
    """Killed after `survive` transactions: the chunk being read when it died is not counted."""

    def __init__(self, *args, survive: int, **options) -> None:
        super().__init__(*args, **options)
        self.left = survive

    async def _step(self) -> int | None:
        if self.left == 0:
            raise RuntimeError("killed between chunks")
        self.left -= 1
        return await super()._step()


async def test_a_crash_between_chunks_neither_repeats_nor_skips_a_line(redis, tmp_path):
    lines = big_lines(900)
    append(tmp_path / "events.jsonl", lines)
    path = tmp_path / "events.jsonl"
    crashing = CrashAfterChunks(redis, path, RETENTION_DAYS, survive=2, recent_max=10_000)
    with pytest.raises(RuntimeError):
        await crashing.catch_up()
    shown = await redis.xlen(RECENT_REQUESTS)
    assert 0 < shown < len(lines)  # some chunks were counted, not all
    assert request_ids_of(lines[:shown]) == [row.request_id for row in await window(redis)]
    assert await rollup(redis, tmp_path, recent_max=10_000).catch_up() == len(lines) - shown
    assert await redis.xlen(RECENT_REQUESTS) == len(lines)
    await assert_window_is_last(redis, lines, 10_000)


class CrashBeforeExec(Rollup):
    def _queue_counts(self, pipe, cells, expected) -> None:
        raise RuntimeError("killed between reading the file and EXEC")


async def test_a_catch_up_interrupted_before_exec_shows_nothing_of_its_chunk(redis, tmp_path):
    lines = record_lines(400)
    append(tmp_path / "events.jsonl", lines[:150])
    await rollup(redis, tmp_path, recent_max=10_000).catch_up()
    append(tmp_path / "events.jsonl", lines[150:])
    crashing = CrashBeforeExec(redis, tmp_path / "events.jsonl", RETENTION_DAYS, recent_max=10_000)
    with pytest.raises(RuntimeError):
        await crashing.catch_up()
    await assert_window_is_last(redis, lines[:150], 10_000)
    await rollup(redis, tmp_path, recent_max=10_000).catch_up()
    await assert_window_is_last(redis, lines, 10_000)
    assert await redis.xlen(RECENT_REQUESTS) == len(lines)


async def test_two_replicas_catching_up_together_show_each_line_once(redis, tmp_path):
    lines = record_lines(2000)
    one, two = rollup(redis, tmp_path, 10_000), rollup(redis, tmp_path, 10_000)
    for start in range(0, len(lines), 120):
        append(tmp_path / "events.jsonl", lines[start : start + 120])
        await asyncio.gather(one.catch_up(), two.catch_up())
    assert await redis.xlen(RECENT_REQUESTS) == len(lines)
    await assert_window_is_last(redis, lines, 10_000)


async def test_a_rebuild_refills_the_window_from_the_files_once(redis, tmp_path):
    lines = record_lines(2500)
    sink = EventSink(tmp_path / "events.jsonl", rotate_bytes=128 << 10)
    sink.open()
    pairs = list(zip(request_ids_of(lines), lines, strict=True))
    for start in range(0, len(pairs), 100):
        sink.append(pairs[start : start + 100])
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 3
    counter = rollup(redis, tmp_path, recent_max=1000)
    assert await counter.catch_up() == len(lines)
    before = await window(redis)
    await assert_window_is_last(redis, lines, 1000)
    await redis.delete(USAGE_WATERMARK)  # lost: every usage key is rebuilt from the files
    assert await counter.catch_up() == len(lines)
    after = await window(redis)
    assert min(map(id_order, after)) > max(map(id_order, before))  # none left over
    await assert_window_is_last(redis, lines, 1000)
    await redis.flushdb()
    assert await counter.catch_up() == len(lines)
    await assert_window_is_last(redis, lines, 1000)


async def test_a_bound_of_zero_keeps_no_window_and_drops_one_kept_before(redis, tmp_path):
    lines = record_lines(300)
    append(tmp_path / "events.jsonl", lines[:100])
    assert await rollup(redis, tmp_path, recent_max=0).catch_up() == 100
    assert not await redis.exists(RECENT_REQUESTS)
    append(tmp_path / "events.jsonl", lines[100:200])
    await rollup(redis, tmp_path, recent_max=50).catch_up()
    assert await redis.exists(RECENT_REQUESTS)
    append(tmp_path / "events.jsonl", lines[200:])
    assert await rollup(redis, tmp_path, recent_max=0).catch_up() == 100
    assert not await redis.exists(RECENT_REQUESTS)


async def test_the_logger_keeps_the_window_of_recent_requests_max(redis, redis_url, tmp_path):
    settings = Settings(
        _env_file=None,
        admin_token=ADMIN_TOKEN,
        redis_url=redis_url,
        data_dir=tmp_path,
        recent_requests_max=7,
    )
    lines = record_lines(400)
    append(settings.events_path, lines)
    assert await UsageLogger(settings, redis).lanes[0].rollup.catch_up() == len(lines)
    await assert_window_is_last(redis, lines, 7)
    assert await redis.xlen(RECENT_REQUESTS) < len(lines)
    default = Settings(_env_file=None, admin_token=ADMIN_TOKEN)
    assert default.recent_requests_max == 50_000
