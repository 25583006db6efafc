"""The event publisher against a real Redis: what it keeps for a replay, the replay itself, and
the stream's bounds (compacted past STREAM_COMPACT_BYTES, held back past STREAM_MAX_ENTRIES)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from proxy_service.publisher import (
    BATCH_MAX_BYTES,
    EventBounds,
    EventPublisher,
    StreamState,
)
from shared import redis_names


@pytest.fixture
async def redis(redis_url: str, redis_client) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def bounds(**values: int) -> EventBounds:
    return EventBounds(
        **{
            "buffer_bytes": 1 << 30,
            "replay_bytes": 1 << 30,
            "stream_compact_bytes": 1 << 30,
            "stream_max_entries": 1 << 30,
            **values,
        }
    )


def big(request_id: str, prompt_bytes: int = 100_000) -> dict:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    return {"request_id": request_id, "prompt": "p" * prompt_bytes, "usage": usage}


async def publish(publisher: EventPublisher, *request_ids: str, prompt_bytes: int = 0) -> None:
    for request_id in request_ids:
        publisher.publish(
            big(request_id, prompt_bytes) if prompt_bytes else {"request_id": request_id}
        )
    while publisher.pending and publisher.stream is not StreamState.FULL:
        await publisher.flush_once()


async def act_as_logger(redis: Redis) -> None:
    """What the logger does once a batch is fsynced: the entries leave the stream."""
    entries = await redis.xrange(redis_names.EVENTS_STREAM)
    await redis.xdel(redis_names.EVENTS_STREAM, *(entry_id for entry_id, _ in entries))


async def stream_request_ids(redis: Redis) -> list[str]:
    entries = await redis.xrange(redis_names.EVENTS_STREAM)
    return [orjson.loads(fields[b"e"])["request_id"] for _, fields in entries]


async def test_events_the_logger_has_written_are_not_kept(redis: Redis):
    publisher = EventPublisher(redis, EventBounds.none())
    await publish(publisher, *(f"r{i}" for i in range(10)))
    assert publisher.unconfirmed == 10
    await act_as_logger(redis)
    await publish(publisher, "r10")
    assert publisher.unconfirmed == 1


async def test_a_partly_read_stream_keeps_only_what_is_still_in_it(redis: Redis):
    publisher = EventPublisher(redis, EventBounds.none())
    await publish(publisher, "r0", "r1", "r2")
    first, *_ = await redis.xrange(redis_names.EVENTS_STREAM)
    await redis.xdel(redis_names.EVENTS_STREAM, first[0])
    await publish(publisher, "r3")
    assert publisher.unconfirmed == 3


async def test_unwritten_events_are_published_again_when_redis_returns_empty(redis: Redis):
    publisher = EventPublisher(redis, EventBounds.none())
    await publish(publisher, "written")
    await act_as_logger(redis)
    await publish(publisher, "r0", "r1")
    await redis.flushdb()  # a Redis without persistence, restarted
    await publish(publisher, "r2")
    await publisher.flush_once()
    assert await stream_request_ids(redis) == ["r2", "r0", "r1"]
    assert publisher.pending == 0


async def stream_events(redis: Redis) -> list[dict]:
    return [
        orjson.loads(fields[b"e"]) for _, fields in await redis.xrange(redis_names.EVENTS_STREAM)
    ]


async def test_past_stream_compact_bytes_events_are_published_compacted(redis: Redis):
    publisher = EventPublisher(redis, bounds(stream_compact_bytes=1 << 20))
    for index in range(30):
        await publish(publisher, f"r{index}", prompt_bytes=100_000)
    events = await stream_events(redis)
    assert [e["request_id"] for e in events] == [f"r{i}" for i in range(30)]
    compacted = [e.get("compacted", False) for e in events]
    first = compacted.index(True)
    assert 8 <= first <= 12 and all(compacted[first:]), "full until about 1 MiB, then compacted"
    assert all(e["usage"]["total_tokens"] == 18 for e in events)
    assert publisher.stream is StreamState.COMPACTING
    assert publisher.stream_compacted == 30 - first
    await act_as_logger(redis)
    await publish(publisher, "after", prompt_bytes=100_000)
    assert publisher.stream is StreamState.OK
    await publish(publisher, "full-again", prompt_bytes=100_000)
    assert "compacted" not in (await stream_events(redis))[-1]


async def test_past_stream_max_entries_events_wait_in_the_buffer(redis: Redis):
    publisher = EventPublisher(redis, bounds(stream_max_entries=20))
    await publish(publisher, *(f"r{i}" for i in range(25)))
    assert publisher.stream is StreamState.FULL
    await publish(publisher, *(f"held{i}" for i in range(10)))
    await publisher.flush_once()
    assert await redis.xlen(redis_names.EVENTS_STREAM) == 25
    assert publisher.pending == 10
    await act_as_logger(redis)
    await publisher.flush_once()  # sees the stream empty again
    await publish(publisher)
    assert await stream_request_ids(redis) == [f"held{i}" for i in range(10)]


async def test_at_shutdown_a_full_stream_takes_what_is_left_compacted(redis: Redis):
    publisher = EventPublisher(redis, bounds(stream_max_entries=5))
    await publish(publisher, *(f"r{i}" for i in range(5)))
    await publish(publisher, "last", prompt_bytes=100_000)
    assert publisher.stream is StreamState.FULL and publisher.pending == 1
    await publisher.drain(timeout=5)
    last = (await stream_events(redis))[-1]
    assert last["request_id"] == "last" and last["compacted"] is True
    assert last["usage"]["total_tokens"] == 18


async def test_the_replay_copy_is_compacted_then_its_oldest_dropped(redis: Redis):
    """Full events first, then a crowd of small ones: the replay copy stays in its bound, and
    when Redis returns empty the newest it kept are published again."""
    publisher = EventPublisher(redis, bounds(replay_bytes=1 << 16))
    large = [f"large{i}" for i in range(4)]
    small = [f"small{i}" for i in range(400)]
    await publish(publisher, *large, prompt_bytes=100_000)
    assert publisher.replay_compacted == 4 and publisher.replay_dropped == 0
    await publish(publisher, *small)
    assert publisher.replay_dropped > 0 and publisher.unconfirmed_bytes <= 1 << 16
    kept = len(large) + len(small) - publisher.replay_dropped
    await redis.flushdb()
    await publish(publisher, "after")
    assert await stream_request_ids(redis) == ["after", *[*large, *small][-kept:]]


async def test_batches_are_cut_in_bytes(redis: Redis):
    publisher = EventPublisher(redis, EventBounds.none())
    for index in range(12):
        publisher.publish(big(f"r{index}", 1_000_000))
    await publisher.flush_once()
    assert 0 < await redis.xlen(redis_names.EVENTS_STREAM) <= BATCH_MAX_BYTES // 1_000_000
