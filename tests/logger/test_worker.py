"""The logger's event loop in process, on a real Redis: how it batches what it reads."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis

from logger_service.worker import UsageLogger
from shared.redis_names import EVENTS_STREAM
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN

EVENTS = 40


async def test_a_trickle_of_events_is_written_in_a_few_batches(redis_url, redis_client, tmp_path):
    """One event every 2 ms: the logger lets them gather rather than paying a read, an fsync, an
    acknowledgement and a rollup for each one."""
    settings = Settings(
        _env_file=None, admin_token=ADMIN_TOKEN, redis_url=redis_url, data_dir=tmp_path
    )
    redis = Redis.from_url(redis_url)
    logger = UsageLogger(settings, redis)
    batches: list[int] = []
    append = logger.sink.append
    logger.sink.append = lambda lines: batches.append(len(lines)) or append(lines)
    running = asyncio.create_task(logger.run())
    try:
        for index in range(EVENTS):
            await redis.xadd(EVENTS_STREAM, {"e": orjson.dumps({"request_id": f"r{index}"})})
            await asyncio.sleep(0.002)
        async with asyncio.timeout(10):
            while logger.written < EVENTS:
                await asyncio.sleep(0.01)
    finally:
        logger.stop()
        await running
        await redis.aclose()
    assert sum(batches) == EVENTS
    assert len(batches) <= EVENTS // 4, batches
