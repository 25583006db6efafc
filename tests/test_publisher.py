"""The event publisher against a real Redis: what it keeps for a replay, and the replay itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from proxy_service.publisher import EventPublisher
from shared import redis_names


@pytest.fixture
async def redis(redis_url: str, redis_client) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def publish(publisher: EventPublisher, *request_ids: str) -> None:
    for request_id in request_ids:
        publisher.publish({"request_id": request_id})
    await publisher.flush_once()


async def act_as_logger(redis: Redis) -> None:
    """What the logger does once a batch is fsynced: the entries leave the stream."""
    entries = await redis.xrange(redis_names.EVENTS_STREAM)
    await redis.xdel(redis_names.EVENTS_STREAM, *(entry_id for entry_id, _ in entries))


async def stream_request_ids(redis: Redis) -> list[str]:
    entries = await redis.xrange(redis_names.EVENTS_STREAM)
    return [orjson.loads(fields[b"e"])["request_id"] for _, fields in entries]


async def test_events_the_logger_has_written_are_not_kept(redis: Redis):
    publisher = EventPublisher(redis, capacity=100)
    await publish(publisher, *(f"r{i}" for i in range(10)))
    assert publisher.unconfirmed == 10
    await act_as_logger(redis)
    await publish(publisher, "r10")
    assert publisher.unconfirmed == 1


async def test_a_partly_read_stream_keeps_only_what_is_still_in_it(redis: Redis):
    publisher = EventPublisher(redis, capacity=100)
    await publish(publisher, "r0", "r1", "r2")
    first, *_ = await redis.xrange(redis_names.EVENTS_STREAM)
    await redis.xdel(redis_names.EVENTS_STREAM, first[0])
    await publish(publisher, "r3")
    assert publisher.unconfirmed == 3


async def test_unwritten_events_are_published_again_when_redis_returns_empty(redis: Redis):
    publisher = EventPublisher(redis, capacity=100)
    await publish(publisher, "written")
    await act_as_logger(redis)
    await publish(publisher, "r0", "r1")
    await redis.flushdb()  # a Redis without persistence, restarted
    await publish(publisher, "r2")
    await publisher.flush_once()
    assert await stream_request_ids(redis) == ["r2", "r0", "r1"]
    assert publisher.pending == 0
