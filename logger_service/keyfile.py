"""keys.json, the durable record of the key set, kept in step with Redis by the logger.

- Redis lost the set (KEYS_LOADED absent: first start, or Redis restarted empty): load the file.
- The file's content differs from what the logger last wrote or loaded (a hand edit, also one
  made while the logger was down): load it into Redis.
- Otherwise, an admin change bumped KEYS_VERSION: write the set to the file (temp file, fsync,
  rename).
Each load replaces the set in one transaction and announces '*' so every replica reloads. A hand
edit made while an admin change was still unpersisted wins over that change (logged).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from shared import redis_names
from shared.keys import KeyFile, KeyRecord

log = logging.getLogger(__name__)

FileStat = tuple[int, int, int]


class KeyFileKeeper:
    def __init__(self, redis: Redis, path: Path) -> None:
        self._redis = redis
        self.path = path
        self._seen_stat: FileStat | None = None
        self._known_digest: str | None = None

    async def tick(self) -> None:
        """One pass of the checks above; called every fraction of a second."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(redis_names.KEYS_LOADED)
            pipe.get(redis_names.KEYS_VERSION)
            pipe.get(redis_names.KEYS_PERSISTED_VERSION)
            pipe.get(redis_names.KEYS_FILE_DIGEST)
            loaded, version, persisted, digest = await pipe.execute()
        if self._known_digest is None and digest is not None:
            self._known_digest = digest.decode()
        unpersisted = int(version or 0) > int(persisted or 0)
        content = self._changed_content()
        if not loaded:
            await self.load(self._read_bytes())
        elif content is not None:
            if unpersisted:
                log.warning("keys.json edited by hand while an admin change was unpersisted")
            await self.load(content)
        elif unpersisted:
            await self.persist()

    def _stat(self) -> FileStat | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _changed_content(self) -> bytes | None:
        """The file's bytes if they differ from what we last wrote or loaded (cheap stat first)."""
        stat = self._stat()
        if stat is None or stat == self._seen_stat:
            return None
        self._seen_stat = stat
        content = self._read_bytes()
        if content is None or _digest(content) == self._known_digest:
            return None
        return content

    async def load(self, content: bytes | None) -> None:
        """Replace the key set in Redis by the file's (empty when there is no file yet)."""
        try:
            records = _parse(content) if content is not None else []
        except (ValueError, ValidationError) as error:
            log.error("keys.json not loaded, keeping the current key set: %s", error)
            self._known_digest = _digest(content or b"")
            await self._redis.set(redis_names.KEYS_LOADED, 1)
            return
        digest = _digest(content) if content is not None else None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(redis_names.KEYS_HASH)
            if records:
                mapping = {record.key_hash: record.to_redis() for record in records}
                pipe.hset(redis_names.KEYS_HASH, mapping=mapping)
            pipe.incr(redis_names.KEYS_VERSION)
            pipe.set(redis_names.KEYS_LOADED, 1)
            if digest is not None:
                pipe.set(redis_names.KEYS_FILE_DIGEST, digest)
            pipe.publish(redis_names.KEYS_CHANNEL, "*")
            results = await pipe.execute()
        version = results[2 if records else 1]
        await self._redis.set(redis_names.KEYS_PERSISTED_VERSION, version)
        self._known_digest = digest
        log.info("loaded %d keys from %s", len(records), self.path)

    async def persist(self) -> None:
        """Write a consistent snapshot of the set and report the version it holds."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(redis_names.KEYS_VERSION)
            pipe.hgetall(redis_names.KEYS_HASH)
            version, raw = await pipe.execute()
        records = [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]
        content = KeyFile.render(records)
        write_atomically(self.path, content)
        self._known_digest = _digest(content)
        self._seen_stat = self._stat()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(redis_names.KEYS_FILE_DIGEST, self._known_digest)
            pipe.set(redis_names.KEYS_PERSISTED_VERSION, version)
            await pipe.execute()


def _parse(content: bytes) -> list[KeyRecord]:
    return KeyFile.model_validate(orjson.loads(content)).to_records()


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


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
