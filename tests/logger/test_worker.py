"""The logger's event loop in process, on a real Redis: how it batches what it reads, and the
price table it prices records with."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from logger_service import worker
from logger_service.worker import UsageLogger
from shared.logger_status import files_report
from shared.redis_client import RedisClient, connect
from shared.redis_names import EVENTS_STREAM
from shared.settings import Settings
from tests.poison import proxy_event
from tests.processes import ADMIN_TOKEN
from tests.usage_data import PRICE_FILE

EVENTS = 40


@contextlib.asynccontextmanager
async def running_logger(
    redis_url: str, data_dir: Path, expect: int, **options: Any
) -> AsyncIterator[tuple[UsageLogger, RedisClient]]:
    """The logger's run loop, with a Redis client to feed it; on leaving the block, waits until
    `expect` lines are written, then stops it (a crash of the loop is raised there)."""
    settings = Settings(
        _env_file=None, admin_token=ADMIN_TOKEN, redis_url=redis_url, data_dir=data_dir, **options
    )
    redis = connect(settings, timeout=5)  # REDIS_MODE's client (tests/cluster: a cluster's)
    logger = UsageLogger(settings, redis)
    running = asyncio.create_task(logger.run())
    try:
        yield logger, redis
        async with asyncio.timeout(10):
            while logger.written < expect and not running.done():
                await asyncio.sleep(0.01)
    finally:
        logger.stop()
        await running
        await redis.aclose()


async def test_a_trickle_of_events_is_written_in_a_few_batches(redis_url, redis_client, tmp_path):
    """One event every 2 ms: the logger lets them gather rather than paying a read, an fsync, an
    acknowledgement and a rollup for each one."""
    batches: list[int] = []
    async with running_logger(redis_url, tmp_path, EVENTS) as (logger, redis):
        append = logger.lanes[0].sink.append
        logger.lanes[0].sink.append = lambda lines: batches.append(len(lines)) or append(lines)
        for index in range(EVENTS):
            await redis.xadd(EVENTS_STREAM, {"e": orjson.dumps({"request_id": f"r{index}"})})
            await asyncio.sleep(0.002)
    assert sum(batches) == EVENTS
    assert len(batches) <= EVENTS // 4, batches


POISON_STREAMS = (
    ("openai_chat", 'data: {"choices": [{"index": [1], "delta": {"content": "x"}}]}\n\n'),
    (
        "anthropic_messages",
        'data: {"type": "content_block_delta", "index": 0, '
        '"delta": {"type": "text_delta", "text": 7}}\n\n',
    ),
)


async def test_an_event_the_assembler_chokes_on_is_still_written_and_the_rest_follow(
    redis_url, redis_client, tmp_path
):
    """A stream of a shape no API sends must not stop the metering (nor crash-loop the logger
    on the same pending entry): its line keeps the chunks, and the events after it are written."""
    async with running_logger(redis_url, tmp_path, 3) as (logger, redis):
        for index, (protocol, stream) in enumerate(POISON_STREAMS):
            event = {
                "request_id": f"poison{index}",
                "protocol": protocol,
                "response_stream": stream,
            }
            await redis.xadd(EVENTS_STREAM, {"e": orjson.dumps(event)})
        await redis.xadd(EVENTS_STREAM, {"e": orjson.dumps({"request_id": "after"})})
    lines = [orjson.loads(line) for line in logger.lanes[0].sink.path.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == ["poison0", "poison1", "after"]
    for line in lines[:2]:
        assert line["response"]["chunk_count"] == 1 and "unassembled" in line["response"]


BATCH_BYTES = 1 << 20


@pytest.mark.parametrize("entry_kib", [100, 400, 3000])
async def test_a_batch_holds_at_most_its_bytes_and_one_entry_more(
    redis_url, redis_client, tmp_path, monkeypatch, entry_kib
):
    """A backlog of large entries is read in batches of LOGGER_BATCH_BYTES plus one entry at
    most (it was 1,000 entries whatever their size), and each line is made in a slice of its
    own when entries pass SLICE_BYTES; every entry is written, once."""
    monkeypatch.setattr(worker, "SLICE_BYTES", BATCH_BYTES)
    count = 12
    for index in range(count):
        event = {"request_id": f"big{index}", "prompt": "p" * (entry_kib << 10)}
        redis_client.xadd(EVENTS_STREAM, {"e": orjson.dumps(event)})
    batches: list[int] = []
    slices: list[int] = []
    async with running_logger(redis_url, tmp_path, count, logger_batch_bytes=BATCH_BYTES) as (
        logger,
        _,
    ):
        write, lines = logger._write, logger._lines
        logger._write = lambda lane, stream, entries: (
            batches.append(entry_bytes(entries)) or write(lane, stream, entries)
        )
        logger._lines = lambda entries, prices: (
            slices.append(entry_bytes(entries)) or lines(entries, prices)
        )
    entry = entry_kib << 10
    assert logger.written == count
    assert max(batches) <= BATCH_BYTES + entry + 100 and sum(batches) >= count * entry
    assert max(slices) <= max(BATCH_BYTES, entry + 100)


def entry_bytes(entries: list) -> int:
    return sum(len(name) + len(value) for _, fields in entries for name, value in fields.items())


async def eventually(check: Callable[[], Any], what: str, timeout: float = 5) -> Any:
    """What `check` returns (awaited, if it is a coroutine) once it is true."""
    async with asyncio.timeout(timeout):
        while True:
            found = check()
            found = await found if inspect.isawaitable(found) else found
            if found:
                return found
            await asyncio.sleep(0.02)


async def price_error_report(redis: Redis) -> dict | None:
    """/readyz's logger report once it names a price file error."""
    report = await files_report(redis)
    return report if report and report["prices"] != "ok" else None


async def test_an_edited_price_file_is_picked_up_and_an_invalid_one_keeps_the_last_good_table(
    redis_url, redis_client, tmp_path
):
    """While it runs, the logger prices each record with the table in force: an edit within
    PRICES_RELOAD_SECONDS; a file that does not parse keeps the last good table, and the status
    /readyz shows says which table is in force and why the file is not."""
    path = tmp_path / "prices.toml"
    path.write_bytes(PRICE_FILE)
    options = {"prices_file": path, "prices_reload_seconds": 0.05}
    async with running_logger(redis_url, tmp_path, 3, **options) as (logger, redis):

        def send(request_id: str) -> Awaitable:
            return redis.xadd(EVENTS_STREAM, {"e": orjson.dumps(proxy_event(request_id))})

        first = (await eventually(lambda: logger.prices.table, "the table at start")).version
        await send("r0")
        await eventually(lambda: logger.written == 1, "the first record")
        path.write_bytes(PRICE_FILE.replace(b'output = "10"', b'output = "12.5"', 1))
        await eventually(lambda: logger.prices.table.version != first, "the edited table")
        second = logger.prices.table.version
        await send("r1")
        await eventually(lambda: logger.written == 2, "the second record")
        path.write_text('[models."gpt-4o"]\ninput = 2.5\n')  # a float: refused
        report = await eventually(lambda: price_error_report(redis), "the error in the status")
        assert "write prices as strings" in report["prices"]
        assert report["price_version"] == second == logger.prices.table.version
        await send("r2")
    costs = [
        orjson.loads(line)["cost"] for line in logger.lanes[0].sink.path.read_bytes().splitlines()
    ]
    assert [cost["price_version"] for cost in costs] == [first, second, second]
    # 2 uncached x 2.5 + 1 cache read x 1.25 + 4 output x 10, then x 12.5, per million tokens
    assert [cost["usd"] for cost in costs] == ["0.00004625", "0.00005625", "0.00005625"]
