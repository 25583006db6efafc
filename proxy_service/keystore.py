"""Each replica's in-memory copy of the key set and the user settings, kept current through
Redis pub/sub.

The hot path (`lookup`, `user`) is a dict read: no request waits on Redis. A change published
on KEYS_CHANNEL or USERS_CHANNEL (sharded pub/sub on a cluster: shared/redis_client.py's
`announce` and `listen`) reaches every subscribed replica in milliseconds; after any
disconnect, or a subscription the server ended (a cluster slot moved), the replica subscribes
again and the whole set is reloaded, and a periodic full reload bounds staleness even if a
message is lost. While Redis is unreachable the last known set keeps serving, and so it does
after a failover until the logger has loaded keys.json into the new node.
"""

from __future__ import annotations

import asyncio
import logging

from shared import redis_names
from shared.keys import KeyRecord
from shared.redis_client import NODE_IDENTITY, REDIS_ERRORS, RedisClient, atomic, listen
from shared.users import UserSettings

log = logging.getLogger(__name__)

FULL_RELOAD_SECONDS = 30.0
RECONNECT_DELAY_SECONDS = 0.2


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class KeyStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._records: dict[str, KeyRecord] = {}
        self._users: dict[str, UserSettings] = {}
        self.loaded = False
        """True once a full set has been read from Redis (after the logger loaded keys.json)."""
        self._source: tuple[bytes, bytes] | None = None
        """(run_id of the node, KEYS_LOADED) the set was last read with."""
        self._waiting_for_logger = False
        self.connected = False

    def lookup(self, key_hash: str) -> KeyRecord | None:
        return self._records.get(key_hash)

    def user(self, user_id: str) -> UserSettings | None:
        return self._users.get(user_id)

    def records(self) -> list[KeyRecord]:
        return list(self._records.values())

    def users(self) -> list[UserSettings]:
        return list(self._users.values())

    def apply(self, key_hash: str, record: KeyRecord | None) -> None:
        """Put a change in force locally at once (the admin call that made it)."""
        if record is None:
            self._records.pop(key_hash, None)
        else:
            self._records[key_hash] = record

    def apply_user(self, user_id: str, settings: UserSettings | None) -> None:
        if settings is None:
            self._users.pop(user_id, None)
        else:
            self._users[user_id] = settings

    async def reload_all(self) -> None:
        """Replace the set from Redis, unless Redis lost it, or the node holding it is not the
        one the set was last read from and the logger has not loaded keys.json into it since
        (a failover may have brought back an older copy, a revoked key active in it): then
        keep serving what we know until the logger has (it publishes '*' when it has)."""
        async with atomic(self._redis) as pipe:
            pipe.get(redis_names.KEYS_LOADED)
            pipe.hgetall(redis_names.KEYS_HASH)
            pipe.hgetall(redis_names.USERS_HASH)
            pipe.eval(NODE_IDENTITY.source, 1, redis_names.KEYS_LOADED)
            restored, raw, users, node = await pipe.execute()
        if restored is None:
            return
        if self._source is not None and node != self._source[0] and restored == self._source[1]:
            if not self._waiting_for_logger:
                log.warning(
                    "the Redis node holding the key set changed: serving the last known set "
                    "until the logger has loaded keys.json into it"
                )
            self._waiting_for_logger = True
            return
        self._source, self._waiting_for_logger = (node, restored), False
        self._records = {
            key_hash.decode(): KeyRecord.from_redis(key_hash.decode(), value)
            for key_hash, value in raw.items()
        }
        self._users = {
            user_id.decode(): UserSettings.from_redis(user_id.decode(), value)
            for user_id, value in users.items()
        }
        self.loaded = True

    async def reload_one(self, key_hash: str) -> None:
        raw = await self._redis.hget(redis_names.KEYS_HASH, key_hash)
        self.apply(key_hash, KeyRecord.from_redis(key_hash, raw) if raw is not None else None)

    async def reload_user(self, user_id: str) -> None:
        raw = await self._redis.hget(redis_names.USERS_HASH, user_id)
        settings = UserSettings.from_redis(user_id, raw) if raw is not None else None
        self.apply_user(user_id, settings)

    async def run(self) -> None:
        """Follow both channels forever, resubscribing and reloading after every disconnect."""
        while True:
            try:
                await self._follow()
            except REDIS_ERRORS as error:
                if _cancel_requested():
                    raise asyncio.CancelledError from error
                if self.connected:
                    log.warning("key sync lost Redis (%s); serving the last known key set", error)
                self.connected = False
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def _follow(self) -> None:
        async with self._redis.pubsub() as pubsub:
            receive = await listen(pubsub, redis_names.KEYS_CHANNEL, redis_names.USERS_CHANNEL)
            await self.reload_all()
            self.connected = True
            loop = asyncio.get_running_loop()
            next_full_reload = loop.time() + FULL_RELOAD_SECONDS
            while True:
                message = await receive(1.0)
                if _cancel_requested():
                    raise asyncio.CancelledError  # redis-py may turn a cancel into a timeout
                if message is not None:
                    await self._reload_changed(message["channel"].decode(), message["data"])
                if loop.time() >= next_full_reload:
                    await self.reload_all()
                    next_full_reload = loop.time() + FULL_RELOAD_SECONDS

    async def _reload_changed(self, channel: str, data: bytes) -> None:
        changed = data.decode()
        if channel == redis_names.USERS_CHANNEL:
            await self.reload_user(changed)
        elif changed == "*":
            await self.reload_all()
        else:
            await self.reload_one(changed)
