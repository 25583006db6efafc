"""Usage aggregates in a real Redis stay an exact function of the event files: crashes,
replicas, rotations and a lost Redis neither double-count nor miss a line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from logger_service.sink import EventSink
from proxy_service.routes.usage import read_cells
from shared.redis_names import USAGE_GROUPS, USAGE_PREFIX, USAGE_WATERMARK
from shared.usage import FIELD_CODES, SPLIT_SOURCES, Tally
from shared.usage_query import build_query
from tests.usage_data import HOUR, assert_matches, expected_report, lines_of, random_records

RETENTION_DAYS = 3650
START = (1_780_000_000_000 // HOUR) * HOUR
"""An hour in 2026, inside RETENTION_DAYS of the machine's clock."""
END = START + 80 * HOUR


@pytest.fixture
async def redis(redis_client, redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def records(count: int, seed: int = 1) -> list[dict]:
    return random_records(count, seed=seed, start_ms=START, hours=72)


def rollup(redis: Redis, tmp_path) -> Rollup:
    return Rollup(redis, tmp_path / "events.jsonl", RETENTION_DAYS)


async def redis_report(redis: Redis, group_by: str = "user,model") -> dict:
    query = build_query(
        since=str(START // 1000),
        until=str(END // 1000),
        group_by=group_by,
        filters={},
        now_ms=END,
    )
    return query.report(query.fold(await read_cells(redis, query), Tally.add_fields))


async def assert_counts(redis: Redis, written: list[dict], group_by: str = "user,model") -> None:
    expected = expected_report(written, since_ms=START, until_ms=END, group_by=group_by)
    assert_matches(await redis_report(redis, group_by), expected)


def with_ids(written: list[dict]) -> list[tuple[str, bytes]]:
    return [(r["request_id"], line) for r, line in zip(written, lines_of(written), strict=True)]


def append(path, lines: list[bytes]) -> None:
    with path.open("ab") as file:
        file.write(b"".join(lines))


async def test_lines_written_before_a_crash_are_counted_once_on_restart(redis, tmp_path):
    path = tmp_path / "events.jsonl"
    written = records(2000)
    lines = lines_of(written)
    append(path, lines[:1000])
    assert await rollup(redis, tmp_path).catch_up() == 1000
    append(path, lines[1000:])  # on disk, then the logger died before its catch-up
    restarted = rollup(redis, tmp_path)
    assert await restarted.catch_up() == len(lines) - 1000
    assert await restarted.catch_up() == 0
    await assert_counts(redis, written)
    for group_by in ("day", "key", "client_app"):
        await assert_counts(redis, written, group_by)


async def test_a_partial_last_line_waits_until_it_is_whole(redis, tmp_path):
    path = tmp_path / "events.jsonl"
    written = records(10)
    first, last = lines_of(written[:9]), lines_of(written[9:])[0]
    append(path, [*first, last[:20]])
    assert await rollup(redis, tmp_path).catch_up() == 9
    append(path, [last[20:]])
    assert await rollup(redis, tmp_path).catch_up() == 1
    await assert_counts(redis, written)


class CrashBeforeExec(Rollup):
    def _queue_counts(self, pipe, cells, expected) -> None:
        raise RuntimeError("killed between reading the file and EXEC")


async def test_a_catch_up_interrupted_before_exec_counts_nothing(redis, tmp_path):
    written = records(500)
    append(tmp_path / "events.jsonl", lines_of(written[:200]))
    assert await rollup(redis, tmp_path).catch_up() == 200
    append(tmp_path / "events.jsonl", lines_of(written[200:]))
    with pytest.raises(RuntimeError):
        await CrashBeforeExec(redis, tmp_path / "events.jsonl", RETENTION_DAYS).catch_up()
    await assert_counts(redis, written[:200])
    assert await rollup(redis, tmp_path).catch_up() == len(written) - 200
    await assert_counts(redis, written)


async def test_two_replicas_catching_up_together_count_each_line_once(redis, tmp_path):
    written = records(3000)
    lines = lines_of(written)
    one, two = rollup(redis, tmp_path), rollup(redis, tmp_path)
    counted = 0
    for start in range(0, len(lines), 150):
        append(tmp_path / "events.jsonl", lines[start : start + 150])
        counted += sum(await asyncio.gather(one.catch_up(), two.catch_up()))
    assert counted == len(lines)
    await assert_counts(redis, written)


async def test_rebuild_after_flushdb_gives_the_same_totals(redis, tmp_path):
    written = records(3000)
    pairs = with_ids(written)
    sink = EventSink(tmp_path / "events.jsonl", rotate_bytes=64 << 10)
    sink.open()
    for start in range(0, len(pairs), 100):
        sink.append(pairs[start : start + 100])
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 3
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    before = await redis_report(redis)
    await redis.flushdb()
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    assert await redis_report(redis) == before
    await assert_counts(redis, written)


async def test_a_lost_watermark_rebuilds_without_doubling(redis, tmp_path):
    written = records(800)
    append(tmp_path / "events.jsonl", lines_of(written))
    await rollup(redis, tmp_path).catch_up()
    await redis.delete(USAGE_WATERMARK)  # evicted, say: the counters stayed
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    await assert_counts(redis, written)
    await redis.set(USAGE_WATERMARK, b"{not json")
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    await assert_counts(redis, written)


async def test_the_watermark_follows_its_file_through_rotations(redis, tmp_path):
    written = records(4000)
    pairs = with_ids(written)
    sink = EventSink(tmp_path / "events.jsonl", rotate_bytes=32 << 10)
    sink.open()
    counter = rollup(redis, tmp_path)
    counted = 0
    for number, start in enumerate(range(0, len(pairs), 40)):
        sink.append(pairs[start : start + 40])
        if number % 7 == 0:  # several rotations between some catch-ups
            counted += await counter.catch_up()
    counted += await counter.catch_up()
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 20
    assert counted == len(written)  # a rebuild would have counted lines again
    await assert_counts(redis, written)


async def test_a_watermark_in_a_deleted_file_rebuilds_from_the_files_left(redis, tmp_path):
    written = records(600)
    pairs = with_ids(written)
    sink = EventSink(tmp_path / "events.jsonl", rotate_bytes=1 << 30)
    sink.open()
    sink.append(pairs[:300])
    await rollup(redis, tmp_path).catch_up()
    os.utime(tmp_path / "events.jsonl", (0, 0))  # last written long ago: the next append rotates
    sink.append(pairs[300:])
    for path in tmp_path.glob("events-*.jsonl"):
        path.unlink()  # retention (or a person) removed the file the watermark is in
    assert await rollup(redis, tmp_path).catch_up() == len(written) - 300
    await assert_counts(redis, written[300:])


async def test_hours_past_retention_are_not_kept(redis, tmp_path):
    old = random_records(50, start_ms=START - 400 * 24 * HOUR, hours=24)
    append(tmp_path / "events.jsonl", lines_of(old))
    assert await Rollup(redis, tmp_path / "events.jsonl", 90).catch_up() == len(old)
    assert [key async for key in redis.scan_iter(f"{USAGE_PREFIX}*")] == [USAGE_WATERMARK.encode()]


async def test_usage_keys_expire_after_retention(redis, tmp_path):
    append(tmp_path / "events.jsonl", lines_of(records(20)))
    await rollup(redis, tmp_path).catch_up()
    retention_ms = RETENTION_DAYS * 86_400_000
    async for key in redis.scan_iter(f"{USAGE_PREFIX}day:*"):
        assert START + retention_ms < await redis.pexpiretime(key) <= END + retention_ms


def spend(report: dict) -> tuple[Decimal, int]:
    totals = report["totals"]
    return Decimal(totals["cost_usd"]), totals["unpriced_requests"]


async def test_spend_is_counted_once_however_often_and_by_whom_catch_up_runs(redis, tmp_path):
    written = records(1200, seed=5)
    lines = lines_of(written)
    for start in range(0, len(lines), 100):
        append(tmp_path / "events.jsonl", lines[start : start + 100])
        await asyncio.gather(*(rollup(redis, tmp_path).catch_up() for _ in range(3)))
    assert await rollup(redis, tmp_path).catch_up() == 0
    costs = [r["cost"] for r in written if r.get("cost")]
    usd = sum((Decimal(c["usd"]) for c in costs if c["usd"] is not None), Decimal(0))
    unpriced = sum(c["status"] == "unpriced" for c in costs)
    assert spend(await redis_report(redis, "model")) == (usd, unpriced) and usd > 0
    await assert_counts(redis, written, "model")


async def test_aggregates_of_older_counters_are_rebuilt_with_spend_counted_once(redis, tmp_path):
    """An upgrade: the aggregates an older logger kept (its watermark names no counters'
    version, its hashes hold no spend) are rebuilt from the files, every line once."""
    written = records(500)
    append(tmp_path / "events.jsonl", lines_of(written))
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    old_mark = orjson.loads(await redis.get(USAGE_WATERMARK))
    del old_mark["counters"]
    await redis.set(USAGE_WATERMARK, orjson.dumps(old_mark))
    new_codes = [FIELD_CODES[name] for name in (*SPLIT_SOURCES, "cost_nano", "unpriced_requests")]
    async for key in redis.scan_iter(f"{USAGE_PREFIX}*"):
        if await redis.type(key) == b"hash" and key != USAGE_GROUPS.encode():
            await redis.hdel(key, *new_codes)
    assert await rollup(redis, tmp_path).catch_up() == len(written)
    assert await rollup(redis, tmp_path).catch_up() == 0
    await assert_counts(redis, written)
