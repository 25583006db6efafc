"""Every Redis key, channel, stream and group name the services share, in one place.

Naming scheme, so the same names work on one Redis and on a Redis Cluster: `b23:{<tag>}:<rest>`.
Redis Cluster hashes only the part between the first `{` and the next `}` (the hash tag) to pick
a key's slot, and refuses a Lua script, a MULTI/EXEC or a multi-key command whose keys lie in
more than one slot (CROSSSLOT). So every group of keys that one script or transaction touches
shares a tag (tests/test_redis_slots.py fails on any group the code sends that spans two):

- `{keys}`: the key set and user settings, their versions, the loaded marker, the file digest,
  and both change channels (SPUBLISH rides in the key set's MULTI on a cluster).
- `{events}`: the event stream and the epoch the proxies read in the same round trip.
- `{usage}`: the usage aggregates: the rollup's MULTI moves the watermark with every cell it
  counts, the group registry and the recent-requests window, so all of them share one tag and
  therefore one slot (they are small and written by one logger).
- With EVENT_SHARDS > 1, shard k > 0 has its own `{events:k}` and `{usage:k}`: its stream,
  epoch, aggregates and window, written by the logger that owns it, on whichever node holds
  that slot. Shard 0 keeps the names above, so a single stream's data stays where it was.
- `{logger}`: the loggers' heartbeat and status reports, written in one pipeline.
- `{u:<user_id>}`: one user's limit state and budget counters, and those of each of the user's
  keys: the ADMIT and CHARGE scripts of a key touch the key's own counters and its user's
  budget counters together. (So a key whose user_id changes starts its counters afresh.)
Ids inside names are percent-escaped (`name_part`): a `:`, `{` or `}` in a user_id or key_id can
neither end the tag early nor make two counters share a name.

Names only ever used by a command of their own (the dashboard's sessions and login throttle)
keep plain names: they form no group.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from shared.budgets import Period


def shard_tag(tag: str, shard: int) -> str:
    """`b23:{<tag>}:` for shard 0, `b23:{<tag>:<shard>}:` for the others."""
    return f"b23:{{{tag}}}:" if shard == 0 else f"b23:{{{tag}:{shard}}}:"


def events_stream(shard: int) -> str:
    """Stream of a shard's usage events: proxies XADD, its logger reads through LOGGER_GROUP."""
    return shard_tag("events", shard) + "stream"


def redis_epoch(shard: int) -> str:
    """A random value set once per dataset on the node holding the shard's stream: when it
    changes, that node restarted empty (or was flushed) and whatever it had not yet handed to
    the logger may be gone. Read in the same script as the stream's state."""
    return shard_tag("events", shard) + "epoch"


def usage_prefix(shard: int) -> str:
    """Prefix of every usage aggregate key of a shard (layout in shared/usage_layout.py); a
    rebuild of the shard deletes all keys under it."""
    return shard_tag("usage", shard)


def usage_groups(shard: int) -> str:
    """Hash of usage group id -> JSON [user_id, key_id, model, client_app]."""
    return usage_prefix(shard) + "groups"


def usage_watermark(shard: int) -> str:
    """JSON {"file": digest of a file's first line, "offset": bytes}: every line of the
    shard's event files before this point is counted in its aggregates, none after it. Absent:
    rebuild."""
    return usage_prefix(shard) + "watermark"


def recent_requests(shard: int) -> str:
    """Stream of the last RECENT_REQUESTS_MAX counted record lines of a shard, metadata only, in
    file order (shared/recent_requests.py): written with its aggregates, so rebuilt with them."""
    return usage_prefix(shard) + "recent"


EVENTS_STREAM = events_stream(0)
REDIS_EPOCH = redis_epoch(0)
USAGE_PREFIX = usage_prefix(0)
USAGE_GROUPS = usage_groups(0)
USAGE_WATERMARK = usage_watermark(0)
RECENT_REQUESTS = recent_requests(0)
"""Shard 0's names: all there is with EVENT_SHARDS=1."""

LOGGER_GROUP = "b23-logger"


KEYS_HASH = "b23:{keys}:records"
"""Hash of SHA-256(api key) -> key record JSON; the clear key is never stored."""

KEYS_VERSION = "b23:{keys}:version"
"""Counter bumped by every change of KEYS_HASH, so writers know what has been persisted."""

KEYS_PERSISTED_VERSION = "b23:{keys}:persisted"
"""Highest KEYS_VERSION the logger has written to keys.json."""

KEYS_LOADED = "b23:{keys}:loaded"
"""Set by the logger once keys.json is in Redis, to the KEYS_VERSION of that load; its absence
means Redis lost the key set."""

KEYS_FILE_DIGEST = "b23:{keys}:file-digest"
"""SHA-256 of keys.json as the logger last wrote or loaded it: a different file is a hand edit."""

KEYS_CHANNEL = "b23:{keys}:changed"
"""Pub/sub channel: a key hash whose record changed, or '*' when the whole set was replaced."""

USERS_HASH = "b23:{keys}:users"
"""Hash of user_id -> user settings JSON (shared/users.py); changed and persisted with KEYS_HASH
(KEYS_VERSION, keys.json's `users`)."""

USERS_CHANNEL = "b23:{keys}:users-changed"
"""Pub/sub channel: a user_id whose settings changed (a '*' on KEYS_CHANNEL reloads them all)."""

LOGGER_HEARTBEAT = "b23:{logger}:heartbeat"
"""Key with a short TTL refreshed by a live logger (health check)."""

LOGGER_STATUS = "b23:{logger}:status"
"""Hash of logger consumer name -> its status report JSON (shared/logger_status.py): keys.json
and disk errors, for /readyz and `python -m logger_service --check`."""

UI_SESSION_PREFIX = "b23:ui:session:"
"""Dashboard and /me sessions: `{prefix}{sha256(session id)}` -> session JSON, with the idle
expiry as TTL (proxy_service/ui/sessions.py); the id itself is only in the browser's cookie."""

UI_LOGIN_FAILURES_PREFIX = "b23:ui:login-failures:"
"""Failed dashboard and /me logins per client address in the current minute (a TTL'd counter)."""


def name_part(ident: str) -> str:
    """An id as it appears in a name: percent-escaped but for letters, digits and `_.-~@`, so
    readable for ordinary ids and one-to-one for any."""
    return quote(ident, safe="@")


def user_tag(user_id: str) -> str:
    """`b23:{u:<user_id>}:`, the prefix of every limit and budget counter of a user and of the
    user's keys (proxy_service/limits.py)."""
    return f"b23:{{u:{name_part(user_id)}}}:"


def limit_keys(key_id: str, user_id: str, now: datetime) -> list[str]:
    """The KEYS of proxy_service/limits.py's ADMIT: the key's rpm and tpm state, its token
    quota counters and its and its user's budget counters for `now`'s day and month, all under
    the user's tag: `b23:{u:<user>}:limit:<key>:rpm`, `:tpm`, `:d:YYYYMMDD`, `:m:YYYYMM`, then
    four `spend_key`s."""
    base = f"{user_tag(user_id)}limit:{name_part(key_id)}:"
    return [
        base + "rpm",
        base + "tpm",
        base + now.strftime("d:%Y%m%d"),
        base + now.strftime("m:%Y%m"),
        spend_key("daily", user_id, key_id, now),
        spend_key("monthly", user_id, key_id, now),
        spend_key("daily", user_id, None, now),
        spend_key("monthly", user_id, None, now),
    ]


def spend_key(period: Period, user_id: str, key_id: str | None, now: datetime) -> str:
    """The nano-USD counter of a key's spend (`key_id`) or of its user's (None) in `now`'s day
    or month (UTC): `b23:{u:<user>}:spend:d:YYYYMMDD:key:<key>`, `...:spend:m:YYYYMM:user`."""
    stamp = now.strftime("d:%Y%m%d" if period == "daily" else "m:%Y%m")
    owner = "user" if key_id is None else f"key:{name_part(key_id)}"
    return f"{user_tag(user_id)}spend:{stamp}:{owner}"
