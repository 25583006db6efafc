"""The move from the Redis names before hash tags (b23 0.3: `b23:events`, `b23:keys`,
`b23:limit:<key>:...`, `b23:spend:...`, `b23:usage:...`) to today's (shared/redis_names.py),
done by the logger, so an upgrade needs no step of its own:

- Events: the old stream is read to its end through the logger's usual path (its group, its own
  and dead consumers' pending entries, the sink's request_id dedupe), then deleted once empty
  (`drop_if_empty`). The events loop looks for it at start and every CLAIM_EVERY_SECONDS, so
  what old proxies publish while they stop (their shutdown drain) reaches events.jsonl too.
- Key set: nothing to move. Today's KEYS_LOADED is absent, so the logger loads keys.json (an
  admin change answered 202, not in keys.json yet at the upgrade, is lost: make it again).
- Usage aggregates: today's watermark is absent, so the rollup rebuilds them from the files.
- Limits and budgets (`retire_old_names`): the token quota and money budget counters of the
  current UTC day and month move to today's names (added to what new proxies have charged
  meanwhile), so no quota or budget starts again from 0 at the upgrade; the rpm and tpm state (a
  minute's worth) starts afresh. A charge an old proxy still makes after the move is lost.
- Then every other old name is deleted: the old key set and its markers, the old epoch, the old
  usage aggregates, past periods' counters. The old key set's marker goes last, so an upgrade
  cut short runs again at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from shared import redis_names
from shared.keys import KeyRecord
from shared.redis_client import RedisClient, Script, queue_unlink
from shared.redis_names import limit_keys, spend_key

log = logging.getLogger(__name__)

OLD_STREAM = "b23:events"
OLD_MARKER = "b23:keys:loaded"
"""The old KEYS_LOADED: present while a deployment still has data under the old names."""
OLD_NAMES = (
    "b23:keys",
    "b23:users",
    "b23:keys:version",
    "b23:keys:persisted",
    "b23:keys:file-digest",
    "b23:epoch",
)
OLD_PATTERNS = ("b23:usage:*", "b23:limit:*", "b23:spend:*")
"""Every old usage, limit and budget name (today's start `b23:{`, so none matches)."""
SCAN_COUNT = 1000

DROP_IF_EMPTY = Script(
    "if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end return 0"
)
"""A stream deleted only if it holds no entry, in one step: an entry added meanwhile keeps it."""
TAKE = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {value, ttl}
"""
"""A counter's value and remaining life, and the counter gone, in one step (EVAL: pipelined)."""


async def drop_if_empty(redis: RedisClient, stream: str) -> bool:
    """Delete `stream` if it is empty; True if it was deleted."""
    return bool(await DROP_IF_EMPTY(redis, keys=[stream]))


def old_counters(
    records: list[KeyRecord], user_ids: set[str], now: datetime
) -> list[tuple[str, str]]:
    """(old name, today's name) of the token quota and budget counters of `now`'s day and
    month, of each key and each user."""
    day, month = now.strftime("%Y%m%d"), now.strftime("%Y%m")
    pairs: list[tuple[str, str]] = []
    for record in records:
        kid = record.key_id
        names = limit_keys(kid, record.user_id, now)
        pairs += [
            (f"b23:limit:{kid}:d:{day}", names[2]),
            (f"b23:limit:{kid}:m:{month}", names[3]),
            (f"b23:spend:d:{day}:key:{kid}", names[4]),
            (f"b23:spend:m:{month}:key:{kid}", names[5]),
        ]
    for user_id in sorted(user_ids):
        pairs += [
            (f"b23:spend:d:{day}:user:{user_id}", spend_key("daily", user_id, None, now)),
            (f"b23:spend:m:{month}:user:{user_id}", spend_key("monthly", user_id, None, now)),
        ]
    return list(dict.fromkeys(pairs))  # a key in a rotation's grace has two records


async def retire_old_names(redis: RedisClient, now: datetime) -> bool:
    """Once the key set is loaded under today's names: move the old counters of the current
    periods, then delete the other old names (not the old stream: the events loop drains it).
    True when done, or nothing was there to do; False while today's key set is not loaded."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(redis_names.KEYS_LOADED)
        pipe.exists(OLD_MARKER)
        loaded, old = await pipe.execute()
    if not loaded:
        return False
    if not old:
        return True
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(redis_names.KEYS_HASH)
        pipe.hkeys(redis_names.USERS_HASH)
        raw, users = await pipe.execute()
    records = [KeyRecord.from_redis(h.decode(), value) for h, value in raw.items()]
    user_ids = {user.decode() for user in users} | {record.user_id for record in records}
    moved = await _move(redis, old_counters(records, user_ids, now))
    deleted = await _delete_old(redis) + await redis.delete(OLD_MARKER)
    log.warning(
        "Redis upgraded to the hash-tagged names: %d counters of this day and month moved, "
        "%d old names deleted (the key set comes from keys.json, the usage aggregates are "
        "rebuilt from the event files)",
        moved,
        deleted,
    )
    return True


async def _move(redis: RedisClient, pairs: list[tuple[str, str]]) -> int:
    """Add each old counter to its new one (keeping the old one's expiry); how many there were."""
    if not pairs:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for old, _ in pairs:
            pipe.eval(TAKE, 1, old)
        taken = await pipe.execute()
    found = [(new, value) for (_, new), value in zip(pairs, taken, strict=True) if value]
    async with redis.pipeline(transaction=False) as pipe:
        for new, (value, ttl) in found:
            pipe.incrby(new, int(value))
            if int(ttl) > 0:
                pipe.pexpire(new, int(ttl))
        await pipe.execute()
    return len(found)


async def _delete_old(redis: RedisClient) -> int:
    """UNLINK every old name but the stream and the marker, one per command (on a cluster they
    lie in many slots), SCAN_COUNT per round trip; how many there were."""
    deleted = await _unlink(redis, OLD_NAMES)
    for pattern in OLD_PATTERNS:
        batch = []
        async for name in redis.scan_iter(pattern, SCAN_COUNT):
            batch.append(name)
            if len(batch) == SCAN_COUNT:
                deleted += await _unlink(redis, batch)
                batch = []
        deleted += await _unlink(redis, batch)
    return deleted


async def _unlink(redis: RedisClient, names: Sequence[str | bytes]) -> int:
    if not names:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            queue_unlink(pipe, [name])
        return sum(map(int, await pipe.execute()))
