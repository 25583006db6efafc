"""keys.json, the durable record of the key set and the user settings, kept in step with Redis
by the logger (both hashes are loaded and written together, in one transaction each way).

- Redis lost the set (KEYS_LOADED absent: first start, or Redis restarted empty): load the file.
- The node holding the set is not the one that answered before (its run_id changed: a
  restart, or a replica promoted by a failover, which may have lost acknowledged changes
  while keeping the loaded marker, so a revoked key could be active again there): load the
  file, which admin calls answered 200 are in. A change answered 202 (not yet in the file)
  can be lost here, as it can when Redis restarts empty.
- The file's content differs from what the logger last wrote or loaded (a hand edit, also one
  made while the logger was down): load it into Redis.
- Otherwise, an admin change bumped KEYS_VERSION: write the set to the file (temp file, fsync,
  rename).
Each load replaces the set in one transaction and announces '*' so every replica reloads. A hand
edit made while an admin change was still unpersisted wins over that change (logged).

A file that does not parse (bad JSON, the wrong shape, an invalid entry) changes nothing: it is
copied aside once (`keys.json.invalid-<UTC time>`), reported in one log line and in `file_error`,
and never written over while it is at the path (admin changes then answer 202). If Redis has no
loaded set, none is marked loaded, so the proxies stay not ready rather than serve an empty set.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydantic import ValidationError

from logger_service.durable import write_atomically
from logger_service.health import DiskError
from shared import redis_names
from shared.keys import KeyFile, KeyRecord
from shared.redis_client import NODE_IDENTITY, RedisClient, announce, atomic
from shared.users import UserSettings

log = logging.getLogger(__name__)

FileStat = tuple[int, int, int]
MARK_LOADED = "return redis.call('SET', KEYS[1], redis.call('GET', KEYS[2]))"
"""KEYS_LOADED := the KEYS_VERSION of this load, in its transaction: an admin change of an
earlier version still waiting to be persisted was replaced by the file (proxy_service/
keywriter.py then does not confirm it)."""
SETTLE_NS = 1_000_000_000
"""A file changed this recently that does not parse may be half written (an editor or a test
writing in place, `cat > keys.json`): it is read again on the next tick instead of being
reported and copied aside, until it has been still this long."""


class KeyFileKeeper:
    def __init__(self, redis: RedisClient, path: Path) -> None:
        self._redis = redis
        self.path = path
        self._seen_stat: FileStat | None = None
        self._known_digest: str | None = None
        self._node: bytes | None = None
        """run_id of the node that held the set at the last tick."""
        self._rejected: str | None = None
        """Digest of the content that failed to parse, while it is the file at the path."""
        self.file_error: str | None = None
        """Why the file at the path is not loaded; None when it is fine."""

    async def tick(self) -> None:
        """One pass of the checks above; called every fraction of a second."""
        async with atomic(self._redis) as pipe:
            pipe.exists(redis_names.KEYS_LOADED)
            pipe.get(redis_names.KEYS_VERSION)
            pipe.get(redis_names.KEYS_PERSISTED_VERSION)
            pipe.get(redis_names.KEYS_FILE_DIGEST)
            pipe.eval(NODE_IDENTITY.source, 1, redis_names.KEYS_LOADED)
            loaded, version, persisted, digest, node = await pipe.execute()
        if self._known_digest is None and digest is not None:
            self._known_digest = digest.decode()
        unpersisted = int(version or 0) > int(persisted or 0)
        moved, self._node = self._node not in (None, node), node
        self._forget_rejected_if_gone()
        content = self._changed_content()
        if not loaded:
            await self.load(self._read_bytes())
        elif moved and (content := content or self._read_bytes()) is not None:
            log.warning(
                "the Redis node holding the key set changed (a restart or a failover)%s: "
                "loading %s again",
                ", losing an admin change answered 202" if unpersisted else "",
                self.path,
            )
            await self.load(content)
        elif content is not None:
            if unpersisted:
                log.warning("keys.json edited by hand while an admin change was unpersisted")
            await self.load(content)
        elif unpersisted and self._rejected is None:
            await self.persist()

    def _forget_rejected_if_gone(self) -> None:
        """The bad content no longer at the path (fixed, replaced or removed): the file may be
        loaded or written again."""
        if self._rejected is None:
            return
        content = self._read_bytes()
        if content is None or _digest(content) != self._rejected:
            self._rejected = self.file_error = None

    def _stat(self) -> FileStat | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _still_being_written(self) -> bool:
        stat = self._stat()
        return stat is not None and time.time_ns() - stat[2] < SETTLE_NS

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
        """Replace the key set and user settings in Redis by the file's (empty when there is no
        file yet); a file that does not parse changes nothing (see `_reject`)."""
        digest, mapping, users = None, {}, {}
        if content is not None:
            digest = _digest(content)
            if digest == self._rejected:
                return
            try:
                mapping, users = _parse(content)
            except (ValueError, TypeError, RecursionError) as error:
                if self._still_being_written():
                    self._seen_stat = None  # look again on the next tick
                    return
                self._reject(content, digest, error)
                return
        async with atomic(self._redis) as pipe:
            pipe.incr(redis_names.KEYS_VERSION)
            pipe.delete(redis_names.KEYS_HASH, redis_names.USERS_HASH)
            if mapping:
                pipe.hset(redis_names.KEYS_HASH, mapping=mapping)
            if users:
                pipe.hset(redis_names.USERS_HASH, mapping=users)
            pipe.eval(MARK_LOADED, 2, redis_names.KEYS_LOADED, redis_names.KEYS_VERSION)
            if digest is not None:
                pipe.set(redis_names.KEYS_FILE_DIGEST, digest)
            announce(pipe, redis_names.KEYS_CHANNEL, "*")
            version, *_ = await pipe.execute()
        await self._redis.set(redis_names.KEYS_PERSISTED_VERSION, version)
        self._known_digest = digest
        log.info("loaded %d keys and %d user settings from %s", len(mapping), len(users), self.path)

    def _reject(self, content: bytes, digest: str, error: Exception) -> None:
        """Keep the set Redis has (or none), refuse to write over the file while it holds this
        content, keep a copy of it aside, and say so once, without quoting it (it may hold keys
        in clear)."""
        reason = _reason(error)
        self._rejected = digest
        self.file_error = f"{self.path.name} does not parse: {reason}"
        kept = "no copy kept"
        try:
            kept = f"copy kept as {self._set_aside(content).name}"
        except OSError as copy_error:
            raise DiskError("keep a copy of", self.path, copy_error) from copy_error
        finally:
            log.error(
                "%s does not parse: %s; not loaded, nor written over until fixed (%s)",
                self.path,
                reason,
                kept,
            )

    def _set_aside(self, content: bytes) -> Path:
        """A copy of the bad content next to the file (mode 0600), one per distinct content."""
        prefix = f"{self.path.name}.invalid-"
        for copy in sorted(self.path.parent.glob(prefix + "*")):
            with contextlib.suppress(OSError):
                if copy.read_bytes() == content:
                    return copy
        copy = self.path.with_name(prefix + datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"))
        write_atomically(copy, content)
        return copy

    async def persist(self) -> None:
        """Write a consistent snapshot of the set and report the version it holds."""
        async with atomic(self._redis) as pipe:
            pipe.get(redis_names.KEYS_VERSION)
            pipe.hgetall(redis_names.KEYS_HASH)
            pipe.hgetall(redis_names.USERS_HASH)
            version, raw, raw_users = await pipe.execute()
        records = [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]
        users = [UserSettings.from_redis(u.decode(), value) for u, value in raw_users.items()]
        content = KeyFile.render(records, users)
        try:
            write_atomically(self.path, content)
        except OSError as error:
            raise DiskError("write", self.path, error) from error
        self._known_digest = _digest(content)
        self._seen_stat = self._stat()
        async with atomic(self._redis) as pipe:
            pipe.set(redis_names.KEYS_FILE_DIGEST, self._known_digest)
            pipe.set(redis_names.KEYS_PERSISTED_VERSION, version)
            await pipe.execute()


def _parse(content: bytes) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The file's key records and user settings as KEYS_HASH and USERS_HASH hold them; raises
    on anything that does not fit."""
    parsed = KeyFile.model_validate(orjson.loads(content))
    keys = {record.key_hash: record.to_redis() for record in parsed.to_records()}
    return keys, {user.user_id: user.to_redis() for user in parsed.users}


def _reason(error: Exception) -> str:
    """What is wrong with the file, short and naming no value found in it."""
    if not isinstance(error, ValidationError):
        return f"{type(error).__name__}: {error}"
    issues = error.errors(include_url=False, include_context=False, include_input=False)
    where = ".".join(map(str, issues[0]["loc"])) or "top level"
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return f"{where}: {issues[0]['msg']}{more}"


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
