"""keys.json against a Redis that comes back as another node: a restart, or a replica promoted
by a failover, may answer with an older copy of the key set (asynchronous replication loses the
last acknowledged writes) that still carries the loaded marker. The logger notices the node's
new run_id and loads keys.json again, so a revocation answered 200 (in the file) stays in force.
Also: an admin change that such a load replaced is refused as replaced (KEYS_LOADED's version)."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from logger_service.keyfile import KeyFileKeeper
from proxy_service.errors import ChangeReplaced
from proxy_service.keystore import KeyStore
from proxy_service.keywriter import KeyWriter
from shared import redis_names
from shared.keys import KeyRecord, hash_api_key
from tests.processes import RedisServer

SECRET = "bsk-failover-key-0001"


async def stored(redis: Redis) -> KeyRecord:
    key_hash = hash_api_key(SECRET)
    return KeyRecord.from_redis(key_hash, await redis.hget(redis_names.KEYS_HASH, key_hash))


async def restart(server: RedisServer, client: Redis) -> None:
    server.stop()
    server.start()
    with contextlib.suppress(RedisConnectionError):
        await client.ping()  # the connection to the old process fails once


async def test_a_revocation_lost_by_the_node_is_loaded_again_from_keys_json(tmp_path):
    server = RedisServer(tmp_path, "--appendonly", "yes").start()
    redis = Redis.from_url(server.url)
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"keys": [{"api_key": SECRET, "user_id": "ann"}]}))
    try:
        keeper = KeyFileKeeper(redis, path)
        await keeper.tick()
        active = await stored(redis)
        before = {
            name: await redis.get(name)
            for name in (
                redis_names.KEYS_VERSION,
                redis_names.KEYS_PERSISTED_VERSION,
                redis_names.KEYS_FILE_DIGEST,
            )
        }
        # The revocation, as an admin call makes it and the logger persists it (then: 200).
        await redis.hset(
            redis_names.KEYS_HASH,
            active.key_hash,
            active.model_copy(update={"active": False}).to_redis(),
        )
        await redis.incr(redis_names.KEYS_VERSION)
        await keeper.tick()
        assert orjson.loads(path.read_bytes())["keys"][0]["active"] is False
        # The node that answers next never got those writes: the older copy, marker and all.
        await redis.hset(redis_names.KEYS_HASH, active.key_hash, active.to_redis())
        for name, value in before.items():
            await redis.set(name, value)
        await restart(server, redis)
        await keeper.tick()
        assert (await stored(redis)).active is False, "keys.json loaded again"
        assert orjson.loads(path.read_bytes())["keys"][0]["active"] is False, "file intact"
        await keeper.tick()
        assert (await stored(redis)).active is False
    finally:
        await redis.aclose()
        server.stop()


async def test_the_same_node_answering_again_loads_nothing(redis_url, redis_client, tmp_path):
    redis = Redis.from_url(redis_url)
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"keys": [{"api_key": SECRET, "user_id": "ann"}]}))
    try:
        keeper = KeyFileKeeper(redis, path)
        await keeper.tick()
        loaded_at = await redis.get(redis_names.KEYS_LOADED)
        for _ in range(3):
            await keeper.tick()
        assert await redis.get(redis_names.KEYS_LOADED) == loaded_at
    finally:
        await redis.aclose()


async def test_an_admin_change_a_load_replaced_is_not_confirmed(redis_url, redis_client, tmp_path):
    """The change reached Redis, then keys.json was loaded over it (a hand edit, a failover)
    before it was persisted: the file does not hold it, so the call must not answer 200."""
    redis = Redis.from_url(redis_url)
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"keys": []}))
    try:
        keeper = KeyFileKeeper(redis, path)
        await keeper.tick()
        writer = KeyWriter(redis, KeyStore(redis))
        record = KeyRecord(key_hash=hash_api_key(SECRET), user_id="ann", key_id="k-ann")
        version = await writer.change(put=[record])
        await keeper.load(path.read_bytes())  # what a hand edit or a failover does
        await keeper.tick()  # and the set is persisted: the version passes the change's
        assert int(await redis.get(redis_names.KEYS_PERSISTED_VERSION)) > version
        with pytest.raises(ChangeReplaced):
            await writer.wait_persisted(version, timeout=0.3)
        later = await writer.change(put=[record])
        await keeper.tick()
        assert await writer.wait_persisted(later, timeout=2)
        assert orjson.loads(path.read_bytes())["keys"][0]["user_id"] == "ann"
    finally:
        await redis.aclose()


async def test_a_proxy_keeps_its_set_until_the_logger_has_loaded_keys_json_into_a_new_node(
    tmp_path,
):
    """A proxy that reads the set again from a node that changed (here: restarted from its
    append-only file holding an older copy) keeps what it knows, a revocation included, until
    the logger's load (a new KEYS_LOADED), rather than serving the older copy meanwhile."""
    server = RedisServer(tmp_path, "--appendonly", "yes").start()
    redis = Redis.from_url(server.url)
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"keys": [{"api_key": SECRET, "user_id": "ann"}]}))
    try:
        keeper, store = KeyFileKeeper(redis, path), KeyStore(redis)
        await keeper.tick()
        active = await stored(redis)
        revoked = active.model_copy(update={"active": False})
        await KeyWriter(redis, store).change(put=[revoked])  # in force here at once
        await keeper.tick()
        await store.reload_all()
        assert store.lookup(active.key_hash).active is False
        await redis.hset(redis_names.KEYS_HASH, active.key_hash, active.to_redis())  # lost
        await restart(server, redis)
        await store.reload_all()
        assert store.lookup(active.key_hash).active is False, "not the node's older copy"
        await keeper.tick()  # the logger sees the new node and loads keys.json
        await store.reload_all()
        assert store.lookup(active.key_hash).active is False
        await KeyWriter(redis, store).change(put=[active])  # and later changes apply as ever
        await store.reload_all()
        assert store.lookup(active.key_hash).active is True
    finally:
        await redis.aclose()
        server.stop()
