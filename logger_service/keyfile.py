"""keys.json, the durable record of the key set, kept in step with Redis by the logger.

- Redis lost the set (KEYS_LOADED absent: first start, or Redis restarted empty): load the file.
- An admin change bumped KEYS_VERSION: write the set to the file (temp file + fsync + rename).
- The file changed on disk and we did not write it (a hand edit): load it into Redis.
Each load replaces the set in one transaction and announces '*' so every replica reloads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from shared import redis_names
from shared.keys import KeyFile, KeyRecord

log = logging.getLogger(__name__)


class KeyFileKeeper:
    def __init__(self, redis: Redis, path: Path) -> None:
        self._redis = redis
        self.path = path
        self._known_stat: tuple[int, int, int] | None = None
        self._rejected_stat: tuple[int, int, int] | None = None

    async def tick(self) -> None:
        """One pass of the three checks above; called every fraction of a second."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(redis_names.KEYS_LOADED)
            pipe.get(redis_names.KEYS_VERSION)
            pipe.get(redis_names.KEYS_PERSISTED_VERSION)
            loaded, version, persisted = await pipe.execute()
        if not loaded or self._edited_by_hand():
            await self.load_file()
        elif int(version or 0) > int(persisted or 0):
            await self.persist()

    def _edited_by_hand(self) -> bool:
        stat = self._stat()
        return stat != self._known_stat and stat != self._rejected_stat and stat is not None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    async def load_file(self) -> None:
        stat = self._stat()
        try:
            records = self._read() if stat is not None else []
        except (OSError, ValueError, ValidationError) as error:
            self._rejected_stat = stat
            log.error("keys.json not loaded, keeping the current key set: %s", error)
            await self._redis.set(redis_names.KEYS_LOADED, 1)
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(redis_names.KEYS_HASH)
            if records:
                pipe.hset(
                    redis_names.KEYS_HASH,
                    mapping={record.key_hash: record.to_redis() for record in records},
                )
            pipe.incr(redis_names.KEYS_VERSION)
            pipe.set(redis_names.KEYS_LOADED, 1)
            pipe.publish(redis_names.KEYS_CHANNEL, "*")
            results = await pipe.execute()
        await self._redis.set(redis_names.KEYS_PERSISTED_VERSION, results[-3])
        self._known_stat = stat
        log.info("loaded %d keys from %s", len(records), self.path)

    def _read(self) -> list[KeyRecord]:
        return KeyFile.model_validate(orjson.loads(self.path.read_bytes())).to_records()

    async def persist(self) -> None:
        """Write a consistent snapshot of the set and report the version it holds."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(redis_names.KEYS_VERSION)
            pipe.hgetall(redis_names.KEYS_HASH)
            version, raw = await pipe.execute()
        records = [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]
        write_atomically(self.path, KeyFile.render(records))
        self._known_stat = self._stat()
        await self._redis.set(redis_names.KEYS_PERSISTED_VERSION, version)


def write_atomically(path: Path, content: bytes) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
