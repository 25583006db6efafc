"""How GET /admin/usage (and the dashboard) read the aggregates: in chunks, never one huge
transaction, and still one consistent snapshot: lines counted during the read make it read
again, so an answer adds up the lines before one watermark."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from proxy_service.routes.usage import read_cells, usage_report
from shared.redis_names import usage_watermark
from shared.usage import Tally
from shared.usage_layout import bucket_key
from shared.usage_query import UsageQuery, build_query
from tests.usage_data import HOUR, assert_matches, expected_report, lines_of, random_records

START = (1_780_000_000_000 // HOUR) * HOUR
RECORDS = random_records(1500, seed=11, start_ms=START, hours=96)
UNTIL = START + 96 * HOUR


def window_query(since_ms: int, group_by: str, filters: dict) -> UsageQuery:
    """The query from `since_ms` to UNTIL, asked long after (START + 200 h)."""
    return build_query(
        since=str(since_ms // 1000),
        until=str(UNTIL // 1000),
        group_by=group_by,
        filters=filters,
        now_ms=START + 200 * HOUR,
    )


QUERY = window_query(START, "day,model", {})


@pytest.fixture
async def counted(redis_client, redis_url, tmp_path) -> tuple[Redis, Path]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines_of(RECORDS[:1000])))
    redis = Redis.from_url(redis_url)
    await Rollup(redis, path, 3650).catch_up()
    yield redis, path
    await redis.aclose()


def answer(cells) -> dict:
    return QUERY.report(QUERY.fold(cells, Tally.add_fields))


@pytest.mark.parametrize("chunk", [1, 7, 2000, 10**6])
async def test_any_chunk_size_reads_the_same_cells(counted, chunk):
    redis, _ = counted
    assert answer(await read_cells(redis, QUERY, chunk=chunk)) == answer(
        await read_cells(redis, QUERY)
    )
    assert answer(await read_cells(redis, QUERY, chunk=chunk))["totals"]["requests"] > 0


async def test_lines_counted_during_the_read_make_it_read_again(counted):
    redis, path = counted
    with path.open("ab") as file:
        file.writelines(lines_of(RECORDS[1000:]))
    real_get = redis.get
    counted_during = []

    async def get_after_a_rollup(name):
        if not counted_during:  # the check after the first read: the logger counted meanwhile
            logger = Redis(connection_pool=redis.connection_pool)  # its own, unpatched get
            counted_during.append(await Rollup(logger, path, 3650).catch_up())
        return await real_get(name)

    redis.get = get_after_a_rollup
    seen = answer(await read_cells(redis, QUERY, chunk=50))
    redis.get = real_get
    assert counted_during[0] >= 500, "the 500 lines appended were counted during the read"
    assert seen == answer(await read_cells(redis, QUERY)), "the second read, after the count"


PLAIN_START = START + HOUR
"""Not on a day's start: the first day is read as hours, the next as day projections."""


@pytest.mark.parametrize(
    "group_by,filters,projection",
    [
        ("day", {}, "day-total"),
        ("user", {}, "day-user"),
        ("key", {}, "day-key"),
        ("model,day", {}, "day-model"),
        ("client_app", {}, "day-app"),
        ("day", {"model": "gpt-4o"}, "day-model"),
        ("model", {"model": "claude-sonnet-4"}, "day-model"),
        ("day", {"user_id": "alice"}, "day-user"),
        ("key", {"user_id": "alice"}, None),
        ("user,model", {}, None),
        ("day", {"user_id": "bob", "model": "gpt-4o"}, None),
    ],
)
async def test_a_question_about_one_dimension_reads_its_projection_and_the_same_answer(
    redis_client, redis_url, tmp_path, group_by, filters, projection
):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines_of(RECORDS)))
    redis = Redis.from_url(redis_url)
    await Rollup(redis, path, 3650).catch_up()
    query = window_query(PLAIN_START, group_by, filters)
    assert query.projection() == projection
    if projection is not None:
        day = (START + 24 * HOUR) // (24 * HOUR)
        assert await redis.exists(bucket_key((projection, day))), "the rollup wrote it"
    report = query.report(query.fold(await read_cells(redis, query), Tally.add_fields))
    expected = expected_report(
        RECORDS, since_ms=PLAIN_START, until_ms=UNTIL, group_by=group_by, filters=filters
    )
    assert_matches(report, expected)
    await redis.aclose()


# --- event shards -----------------------------------------------------------------------------

SHARDS = 3
SHARD_RECORDS = {
    0: random_records(700, seed=31, start_ms=START, hours=60),
    1: random_records(600, seed=32, start_ms=START + 30 * HOUR, hours=66),
    2: [  # no bob, no deepseek-chat: groups of its own beside ones shared with the others
        record
        for record in random_records(900, seed=33, start_ms=START + 12 * HOUR, hours=84)
        if record.get("user_id") != "bob" and record.get("model") != "deepseek-chat"
    ],
}
LATE = 250
"""Shard 1's last lines, counted during a read in the watermark test."""
ALL_RECORDS = [record for records in SHARD_RECORDS.values() for record in records]


def shard_path(directory: Path, shard: int) -> Path:
    return directory / ("events.jsonl" if shard == 0 else f"events-{shard}.jsonl")


@pytest.fixture
async def sharded(redis_client, redis_url, tmp_path) -> tuple[Redis, Path]:
    """Three shards' files, each counted into its own aggregates by its own rollup, as each
    shard's logger does; shard 1 without its LATE last lines."""
    redis = Redis.from_url(redis_url)
    for shard, records in SHARD_RECORDS.items():
        kept = records[:-LATE] if shard == 1 else records
        shard_path(tmp_path, shard).write_bytes(b"".join(lines_of(kept)))
        rollup = Rollup(redis, shard_path(tmp_path, shard), 3650, shard=shard, recent_max=100)
        assert await rollup.catch_up() == len(kept)
    yield redis, tmp_path
    await redis.aclose()


def count_late_lines(directory: Path) -> None:
    with shard_path(directory, 1).open("ab") as file:
        file.writelines(lines_of(SHARD_RECORDS[1][-LATE:]))


@pytest.mark.parametrize(
    "group_by,filters,since",
    [
        ("day,model", {}, START),
        ("user", {}, START),
        ("key", {}, PLAIN_START),
        ("model", {}, PLAIN_START),
        ("client_app", {}, START),
        ("user,model", {}, PLAIN_START),
        ("day", {"user_id": "bob"}, START),
        ("key,day", {"model": "gpt-4o"}, PLAIN_START),
    ],
)
async def test_three_shards_aggregates_add_up_to_a_recount_of_all_their_files(
    sharded, group_by, filters, since
):
    """Every reader's answer over EVENT_SHARDS=3 is the recount of the three files together:
    groups only one shard has, and groups two or three have (their cells added)."""
    redis, directory = sharded
    count_late_lines(directory)
    assert await Rollup(redis, shard_path(directory, 1), 3650, shard=1).catch_up() == LATE
    query = window_query(since, group_by, filters)
    report = await usage_report(redis, query, SHARDS)
    expected = expected_report(
        ALL_RECORDS, since_ms=since, until_ms=UNTIL, group_by=group_by, filters=filters
    )
    assert_matches(report, expected)
    shard_0 = expected_report(
        SHARD_RECORDS[0], since_ms=since, until_ms=UNTIL, group_by=group_by, filters=filters
    )
    assert_matches(await usage_report(redis, query), shard_0)  # one shard: shard 0's alone


async def test_a_watermark_moved_during_the_read_rereads_that_shard_only(sharded):
    """Shard 1's logger counts LATE lines between that shard's reads and its watermark check:
    shard 1 is read again (the answer holds the lines, as a recount of the files now does), and
    shards 0 and 2, whose watermarks did not move, are read once."""
    redis, directory = sharded
    count_late_lines(directory)
    real_get = redis.get
    checks: list[str] = []
    counted_during: list[int] = []

    async def get_after_a_rollup(name):
        checks.append(name)
        if name == usage_watermark(1) and not counted_during:
            logger = Redis(connection_pool=redis.connection_pool)  # its own, unpatched get
            rollup = Rollup(logger, shard_path(directory, 1), 3650, shard=1)
            counted_during.append(await rollup.catch_up())
        return await real_get(name)

    redis.get = get_after_a_rollup
    try:
        report = await usage_report(redis, QUERY, SHARDS)
    finally:
        redis.get = real_get
    assert counted_during == [LATE]
    expected = expected_report(ALL_RECORDS, since_ms=START, until_ms=UNTIL, group_by="day,model")
    assert_matches(report, expected)
    assert checks == [usage_watermark(shard) for shard in (0, 1, 1, 2)]
