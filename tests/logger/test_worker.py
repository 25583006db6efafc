"""The logger's event loop in process, on a real Redis: how it batches what it reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from logger_service import worker
from logger_service.worker import UsageLogger
from shared.redis_names import EVENTS_STREAM
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN

EVENTS = 40


@contextlib.asynccontextmanager
async def running_logger(
    redis_url: str, data_dir: Path, expect: int, **options: Any
) -> AsyncIterator[tuple[UsageLogger, Redis]]:
    """The logger's run loop, with a Redis client to feed it; on leaving the block, waits until
    `expect` lines are written, then stops it (a crash of the loop is raised there)."""
    settings = Settings(
        _env_file=None, admin_token=ADMIN_TOKEN, redis_url=redis_url, data_dir=data_dir, **options
    )
    redis = Redis.from_url(redis_url)
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
        append = logger.sink.append
        logger.sink.append = lambda lines: batches.append(len(lines)) or append(lines)
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
    lines = [orjson.loads(line) for line in logger.sink.path.read_bytes().splitlines()]
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
        logger._write = lambda entries: batches.append(entry_bytes(entries)) or write(entries)
        logger._lines = lambda entries: slices.append(entry_bytes(entries)) or lines(entries)
    entry = entry_kib << 10
    assert logger.written == count
    assert max(batches) <= BATCH_BYTES + entry + 100 and sum(batches) >= count * entry
    assert max(slices) <= max(BATCH_BYTES, entry + 100)


def entry_bytes(entries: list) -> int:
    return sum(len(name) + len(value) for _, fields in entries for name, value in fields.items())
