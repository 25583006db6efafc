"""Tests that each use the one-node cluster alone (tests/cluster/conftest.py), REDIS_MODE=cluster:
the key set's end-to-end test (its own proxy and logger, Redis flushed under them), and the
limit scripts and views, the event publisher, the rollup, the upgrade from the old names and the
key-change notices in process, on redis-py's cluster client (the `redis` fixture). The tests
imported below are collected here again, with this module's fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from logger_service.rollup import Rollup
from proxy_service.keystore import KeyStore
from proxy_service.keywriter import KeyWriter
from proxy_service.routes.usage import usage_report
from shared.keys import KeyRecord, hash_api_key
from shared.redis_names import RECENT_REQUESTS, USAGE_WATERMARK
from shared.usage_query import build_query
from shared.users import UserSettings
from tests.logger.test_upgrade import (  # noqa: F401
    test_an_old_deployment_is_carried_over_when_the_logger_starts,
)
from tests.test_budget_limits import (  # noqa: F401
    limiter,
    test_a_key_budget_admits_below_it_and_refuses_at_it,
    test_a_user_budget_is_the_sum_of_the_users_keys,
    test_nothing_is_counted_without_a_budget,
    test_views_read_spend_and_token_limits_back,
)
from tests.test_e2e_keys import test_readiness_persistence_and_reload_from_keys_json  # noqa: F401
from tests.test_publisher import (  # noqa: F401
    test_events_the_logger_has_written_are_not_kept,
    test_past_stream_compact_bytes_events_are_published_compacted,
    test_unwritten_events_are_published_again_when_redis_returns_empty,
)
from tests.usage_data import HOUR, lines_of, random_records

START = (1_780_000_000_000 // HOUR) * HOUR
RECORDS = random_records(300, seed=5, start_ms=START, hours=30)
QUERY = build_query(
    since=str(START // 1000),
    until=str((START + 30 * HOUR) // 1000),
    group_by="day,user",
    filters={},
    now_ms=START + 100 * HOUR,
)


@pytest.fixture
async def redis(redis_url: str, redis_client) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_key_change_reaches_another_client_over_sharded_pub_sub(redis, redis_url):
    """SPUBLISH inside the key set's MULTI, followed through SSUBSCRIBE by a KeyStore of its own
    (the periodic full reload is 30 s away: only the notice can bring it)."""
    other = RedisCluster.from_url(redis_url)
    follower = KeyStore(other)
    following = asyncio.create_task(follower.run())
    record = KeyRecord(key_hash=hash_api_key("bsk-sharded-0001"), key_id="kay", user_id="kai")
    try:
        async with asyncio.timeout(10):
            while not follower.connected:
                await asyncio.sleep(0.01)
            writer = KeyWriter(redis, KeyStore(redis))
            await writer.change(put=[record], users={"kai": UserSettings(user_id="kai")})
            while follower.lookup(record.key_hash) is None or follower.user("kai") is None:
                await asyncio.sleep(0.01)
            await writer.change(remove=[record])
            while follower.lookup(record.key_hash) is not None:
                await asyncio.sleep(0.01)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await other.aclose()


async def test_a_rebuild_deletes_what_it_counts_again(redis, tmp_path):
    """The rollup's rebuild UNLINKs the old aggregates inside its cluster transaction (and the
    window, once it is off): counted twice over, the answer is still the files'."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines_of(RECORDS)))
    await Rollup(redis, path, 3650, recent_max=10).catch_up()
    first = await usage_report(redis, QUERY)
    await redis.delete(USAGE_WATERMARK)
    await Rollup(redis, path, 3650, recent_max=0).catch_up()
    assert await usage_report(redis, QUERY) == first
    assert first["totals"]["requests"] > len(RECORDS) // 2  # most in the window
    assert not await redis.exists(RECENT_REQUESTS)
