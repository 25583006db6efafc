"""Admin-side changes of the key set and the user settings: Redis first (in force everywhere
through pub/sub), then wait for the logger to persist them to keys.json."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from proxy_service.errors import ChangeReplaced
from proxy_service.keystore import KeyStore
from shared import redis_names
from shared.keys import KeyRecord
from shared.redis_client import RedisClient, announce, atomic
from shared.users import UserSettings

PERSIST_POLL_SECONDS = 0.05


class KeyWriter:
    def __init__(self, redis: RedisClient, keys: KeyStore) -> None:
        self._redis = redis
        self._keys = keys

    async def change(
        self,
        *,
        put: Sequence[KeyRecord] = (),
        remove: Sequence[KeyRecord] = (),
        users: Mapping[str, UserSettings | None] | None = None,
    ) -> int:
        """Store and remove key records, and set (or, for None, clear) user settings, in one
        transaction; announce each, put them in force here at once. Returns the version
        keys.json must reach to hold the change."""
        users = users or {}
        async with atomic(self._redis) as pipe:
            pipe.incr(redis_names.KEYS_VERSION)
            for record in remove:
                pipe.hdel(redis_names.KEYS_HASH, record.key_hash)
            for record in put:
                pipe.hset(redis_names.KEYS_HASH, record.key_hash, record.to_redis())
            for user_id, settings in users.items():
                if settings is None:
                    pipe.hdel(redis_names.USERS_HASH, user_id)
                else:
                    pipe.hset(redis_names.USERS_HASH, user_id, settings.to_redis())
            for record in [*remove, *put]:
                announce(pipe, redis_names.KEYS_CHANNEL, record.key_hash)
            for user_id in users:
                announce(pipe, redis_names.USERS_CHANNEL, user_id)
            version, *_ = await pipe.execute()
        for record in remove:
            self._keys.apply(record.key_hash, None)
        for record in put:
            self._keys.apply(record.key_hash, record)
        for user_id, settings in users.items():
            self._keys.apply_user(user_id, settings)
        return int(version)

    async def records_of(self, key_id: str) -> list[KeyRecord]:
        """Every record of a key: its current secret and, during a rotation's grace, the old."""
        return [record for record in await self.all_records() if record.key_id == key_id]

    async def all_records(self) -> list[KeyRecord]:
        raw = await self._redis.hgetall(redis_names.KEYS_HASH)
        return [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]

    async def all_users(self) -> list[UserSettings]:
        raw = await self._redis.hgetall(redis_names.USERS_HASH)
        return [UserSettings.from_redis(u.decode(), value) for u, value in raw.items()]

    async def user(self, user_id: str) -> UserSettings | None:
        raw = await self._redis.hget(redis_names.USERS_HASH, user_id)
        return None if raw is None else UserSettings.from_redis(user_id, raw)

    async def wait_persisted(self, version: int, timeout: float) -> bool:
        """True once the logger reports keys.json holds `version` (or later) within `timeout`;
        ChangeReplaced when the logger loaded keys.json over the set since (KEYS_LOADED holds a
        later version: a hand edit, or a failover of the key set's node), undoing the change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(redis_names.KEYS_PERSISTED_VERSION)
                pipe.get(redis_names.KEYS_LOADED)
                persisted, loaded = await pipe.execute()
            if loaded is not None and int(loaded) > version:
                raise ChangeReplaced
            if persisted is not None and int(persisted) >= version:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(PERSIST_POLL_SECONDS)
