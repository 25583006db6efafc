"""Admin-side writes of the key set: Redis first, then wait for the logger to persist."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from proxy_service.keystore import KeyStore
from shared import redis_names
from shared.keys import KeyRecord

PERSIST_POLL_SECONDS = 0.05


async def write_key(redis: Redis, keys: KeyStore, record: KeyRecord) -> int:
    """Store, version and announce one record atomically; in force here at once. Returns the
    version the logger must reach for the change to be in keys.json."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(redis_names.KEYS_HASH, record.key_hash, record.to_redis())
        pipe.incr(redis_names.KEYS_VERSION)
        pipe.publish(redis_names.KEYS_CHANNEL, record.key_hash)
        _, version, _ = await pipe.execute()
    keys.apply(record.key_hash, record)
    return int(version)


async def wait_persisted(redis: Redis, version: int, timeout: float) -> bool:
    """True once the logger reports keys.json holds `version` (or later) within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        persisted = await redis.get(redis_names.KEYS_PERSISTED_VERSION)
        if persisted is not None and int(persisted) >= version:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(PERSIST_POLL_SECONDS)
