"""The event publisher against a real Redis: what it keeps for a replay, the replay itself, and
the stream's bounds (compacted past STREAM_COMPACT_BYTES, held back past STREAM_MAX_ENTRIES)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy_service.publisher import (
    BATCH_MAX_BYTES,
    EventBounds,
    EventPublisher,
    StreamState,
    shard_of,
)
from shared import redis_names
from tests.processes import RedisServer


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


async def test_a_restarted_node_that_kept_its_epoch_gets_the_unwritten_events_again(tmp_path):
    """A node that comes back with the epoch marker but without entries it had acknowledged
    (a replica promoted before it got them; here: they are deleted, then the node restarts
    from its append-only file, so only its run_id tells): they are published again. Without the
    run_id the proxy would see the stream's oldest entry newer than them and forget them."""
    server = RedisServer(tmp_path, "--appendonly", "yes").start()
    client = Redis.from_url(server.url)
    try:
        publisher = EventPublisher(client, EventBounds.none())
        await publish(publisher, "r0", "r1")
        epoch = await client.get(redis_names.REDIS_EPOCH)
        await client.delete(redis_names.EVENTS_STREAM)  # acknowledged, then lost
        server.stop()
        server.start()
        with contextlib.suppress(RedisConnectionError):
            await client.ping()  # the connection to the old process fails once
        assert await client.get(redis_names.REDIS_EPOCH) == epoch, "the marker survived"
        await publish(publisher, "r2")
        await publisher.flush_once()
        assert await stream_request_ids(client) == ["r2", "r0", "r1"]
    finally:
        await client.aclose()
        server.stop()


async def test_the_same_node_answering_again_replays_nothing(redis: Redis):
    publisher = EventPublisher(redis, EventBounds.none())
    await publish(publisher, "r0", "r1")
    await publish(publisher, "r2")
    await publish(publisher, "r3")
    assert await stream_request_ids(redis) == ["r0", "r1", "r2", "r3"]


@pytest.mark.parametrize("shards", [2, 3, 7])
async def test_events_spread_over_the_shards_by_request_id_and_replay_into_their_own(
    redis: Redis, shards: int
):
    """Each event lands in the stream shard_of(request_id) names, every shard gets some; a
    shard whose node lost its data gets its own events again, the others nothing."""
    publisher = EventPublisher(redis, EventBounds.none(), shards)
    request_ids = [f"req-{i}" for i in range(60)]
    await publish(publisher, *request_ids)
    streams = [redis_names.events_stream(shard) for shard in range(shards)]
    expected = {
        stream: [rid for rid in request_ids if shard_of(rid, shards) == shard]
        for shard, stream in enumerate(streams)
    }
    found = {stream: await request_ids_in(redis, stream) for stream in streams}
    assert found == expected
    assert all(found.values()), "every shard got some"
    lost = streams[1]
    await redis.delete(lost, redis_names.redis_epoch(1))  # shard 1's data gone: a new epoch
    await publish(publisher, "one-more")
    await publisher.flush_once()
    replayed = {stream: await request_ids_in(redis, stream) for stream in streams}
    one_more = streams[shard_of("one-more", shards)]
    for stream in streams:
        want = expected[stream] + (["one-more"] if stream == one_more else [])
        if stream == lost:
            assert sorted(replayed[stream]) == sorted(want)
        else:
            assert replayed[stream] == want
    assert publisher.pending == 0


async def test_a_full_shard_holds_back_every_event(redis: Redis):
    """One stream past STREAM_MAX_ENTRIES (its logger stopped) makes the publisher full: the
    events wait in its buffer, in order, rather than skipping ahead on the other shards."""
    publisher = EventPublisher(redis, bounds(stream_max_entries=5), 2)
    await publish(publisher, *(f"r{i}" for i in range(40)))
    assert publisher.stream is StreamState.FULL
    await publish(publisher, *(f"later{i}" for i in range(5)))
    assert publisher.pending == 5
    lengths = [await redis.xlen(redis_names.events_stream(shard)) for shard in range(2)]
    assert max(lengths) >= 5 and publisher.stream_entries == sum(lengths)


async def request_ids_in(redis: Redis, stream: str) -> list[str]:
    return [orjson.loads(fields[b"e"])["request_id"] for _, fields in await redis.xrange(stream)]
