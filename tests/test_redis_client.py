"""REDIS_MODE: the client each mode gets (a real Sentinel and a one-node cluster answer), its
settings checked at start; and scripts sent as EVALSHA, falling back to EVAL on NOSCRIPT
without SCRIPT LOAD, whatever the client."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from starlette.requests import Request

from proxy_service.errors import error_response
from proxy_service.limits import Limiter, LimitsUnavailable
from proxy_service.publisher import EventBounds, EventPublisher
from shared.keys import KeyRecord, hash_api_key
from shared.redis_client import Script, connect
from shared.settings import Settings, describe_invalid_settings
from tests.processes import ADMIN_TOKEN, ManagedProcess, RedisServer, free_port, wait_until

MASTER = "b23"


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, admin_token=ADMIN_TOKEN, **values)


@pytest.fixture
def sentinel(private_redis: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A sentinel on a free port monitoring the test's own Redis as MASTER; its port."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {private_redis.port} 1\n"
    )
    argv = [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"]
    process = ManagedProcess("sentinel", argv, {}, tmp_path).start()
    client = redis.Redis(port=port)
    try:
        wait_until(lambda: client.sentinel_get_master_addr_by_name(MASTER), 10, what="sentinel")
        yield port
    finally:
        client.close()
        process.stop()


async def test_sentinel_mode_reaches_the_master_the_sentinels_name(sentinel, private_redis):
    client = connect(
        settings(
            redis_mode="sentinel",
            redis_sentinels=f"127.0.0.1:{free_port()}, 127.0.0.1:{sentinel}",  # one down
            redis_sentinel_master=MASTER,
            redis_url="redis://ignored:1/3",  # its database applies
        ),
        timeout=2,
    )
    try:
        assert isinstance(client, Redis)
        started = time.monotonic()
        await client.set("b23:{keys}:loaded", 1)
        assert time.monotonic() - started < 2, "the sentinel that is down was retried"
    finally:
        await client.aclose()
    assert redis.Redis(port=private_redis.port, db=3).get("b23:{keys}:loaded") == b"1"


async def test_cluster_mode_from_the_url_or_the_node_list(cluster_url):
    port = cluster_url.rsplit(":", 1)[1].split("/")[0]
    for values in (
        {"redis_url": cluster_url},
        {"redis_cluster_nodes": f"127.0.0.1:{port}", "redis_url": "redis://unused:1/0"},
    ):
        client = connect(settings(redis_mode="cluster", **values), timeout=2)
        try:
            assert isinstance(client, RedisCluster)
            assert await client.set("b23:{events}:epoch", "e") and await client.get(
                "b23:{events}:epoch"
            )
        finally:
            await client.aclose()


async def test_standalone_mode_is_redis_url(redis_url, redis_client):
    client = connect(settings(redis_url=redis_url), timeout=2)
    try:
        assert type(client) is Redis and await client.ping()
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 2
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"redis_mode": "sentinel", "redis_sentinel_master": "m"}, "REDIS_SENTINELS is required"),
        ({"redis_mode": "sentinel", "redis_sentinels": "h:1"}, "REDIS_SENTINEL_MASTER is required"),
        ({"redis_sentinels": "h:1,nope"}, "REDIS_SENTINELS 'nope' is not host:port"),
        ({"redis_cluster_nodes": "h:99999"}, "REDIS_CLUSTER_NODES 'h:99999' is not host:port"),
        ({"redis_mode": "replicas"}, "REDIS_MODE "),
    ],
)
def test_redis_settings_are_checked_at_start(values, expected):
    with pytest.raises(ValidationError) as invalid:
        settings(**values)
    assert expected in describe_invalid_settings(invalid.value)


ECHO = Script("return {KEYS[1], ARGV[1]}")


class Counted:
    """A client's EVALSHA, EVAL and SCRIPT LOAD calls, counted; SCRIPT LOAD refused, as some
    Redis proxies do."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.calls: list[str] = []
        for name in ("evalsha", "eval"):
            setattr(client, name, self._counting(name, getattr(client, name)))
        client.script_load = self._refused

    def _counting(self, name, call):
        async def counted(*args):
            self.calls.append(name)
            return await call(*args)

        return counted

    async def _refused(self, *args):
        raise redis.ResponseError("unknown command 'SCRIPT'")


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
async def test_a_script_falls_back_to_eval_on_noscript_and_is_cached_by_it(
    mode, redis_url, redis_client, cluster_url
):
    url = cluster_url if mode == "cluster" else redis_url
    client = connect(settings(redis_mode=mode, redis_url=url), timeout=2)
    try:
        await client.script_flush()
        counted = Counted(client)
        assert await ECHO(client, ["b23:{keys}:x"], ["a"]) == [b"b23:{keys}:x", b"a"]
        assert counted.calls == ["evalsha", "eval"]  # NOSCRIPT, then EVAL; no SCRIPT LOAD
        assert await ECHO(client, ["b23:{keys}:x"], ["b"]) == [b"b23:{keys}:x", b"b"]
        assert counted.calls == ["evalsha", "eval", "evalsha"]  # EVAL cached it
    finally:
        await client.aclose()


def test_a_cluster_refuses_what_spans_slots(cluster_url):
    """What the one-node cluster the REDIS_MODE=cluster tests run on enforces."""
    client = redis.Redis.from_url(cluster_url)
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
        client.eval("return 1", 2, "b23:limit:a:rpm", "b23:limit:a:tpm")
    assert client.eval("return 1", 2, "b23:{u:a}:limit:a:rpm", "b23:{u:a}:limit:a:tpm") == 1
    client.close()


async def test_an_unreachable_cluster_is_a_redis_outage_like_any_other():
    """The cluster client raises RedisClusterException (no RedisError) when no node answers:
    limits still fail open or closed as LIMITS_FAIL_OPEN says, the publisher keeps its events,
    a route answers 503."""
    dead = connect(
        settings(redis_mode="cluster", redis_url=f"redis://127.0.0.1:{free_port()}/0"), timeout=1
    )
    key = KeyRecord(key_hash=hash_api_key("bsk-outage-00001"), key_id="k", user_id="u", rpm_limit=1)
    await Limiter(dead, fail_open=True).admit(key, None)
    with pytest.raises(LimitsUnavailable):
        await Limiter(dead, fail_open=False).admit(key, None)
    publisher = EventPublisher(dead, EventBounds(1 << 20, 1 << 20, 1 << 20, 1 << 20))
    publisher.publish({"request_id": "kept"})
    running = asyncio.create_task(publisher.run())
    await asyncio.sleep(0.3)
    assert not running.done() and not publisher.redis_ok and publisher.pending == 1
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    with pytest.raises(RedisClusterException) as raised:
        await dead.get("b23:{keys}:loaded")
    request = Request({"type": "http", "path": "/v1/models", "headers": [], "method": "GET"})
    assert error_response(raised.value, request).status_code == 503
    await dead.aclose()
