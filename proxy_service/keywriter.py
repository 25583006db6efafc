"""Admin-side changes of the key set: Redis first (in force everywhere through pub/sub), then
wait for the logger to persist them to keys.json."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from proxy_service.keystore import KeyStore
from shared import redis_names
from shared.keys import KeyRecord

PERSIST_POLL_SECONDS = 0.05


class KeyWriter:
    def __init__(self, redis: Redis, keys: KeyStore) -> None:
        self._redis = redis
        self._keys = keys

    async def change(
        self, *, put: Sequence[KeyRecord] = (), remove: Sequence[KeyRecord] = ()
    ) -> int:
        """Store and remove records in one transaction, announce each, put them in force here
        at once. Returns the version keys.json must reach to hold the change."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for record in remove:
                pipe.hdel(redis_names.KEYS_HASH, record.key_hash)
            for record in put:
                pipe.hset(redis_names.KEYS_HASH, record.key_hash, record.to_redis())
            pipe.incr(redis_names.KEYS_VERSION)
            for record in [*remove, *put]:
                pipe.publish(redis_names.KEYS_CHANNEL, record.key_hash)
            results = await pipe.execute()
        for record in remove:
            self._keys.apply(record.key_hash, None)
        for record in put:
            self._keys.apply(record.key_hash, record)
        return int(results[len(remove) + len(put)])

    async def records_of(self, key_id: str) -> list[KeyRecord]:
        """Every record of a key: its current secret and, during a rotation's grace, the old."""
        return [record for record in await self.all_records() if record.key_id == key_id]

    async def all_records(self) -> list[KeyRecord]:
        raw = await self._redis.hgetall(redis_names.KEYS_HASH)
        return [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]

    async def wait_persisted(self, version: int, timeout: float) -> bool:
        """True once the logger reports keys.json holds `version` (or later) within `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            persisted = await self._redis.get(redis_names.KEYS_PERSISTED_VERSION)
            if persisted is not None and int(persisted) >= version:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(PERSIST_POLL_SECONDS)
