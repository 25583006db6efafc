"""Every Redis key, channel, stream and group name the services share, in one place."""

EVENTS_STREAM = "b23:events"
"""Stream of usage events: proxies XADD, the logger reads through LOGGER_GROUP."""

LOGGER_GROUP = "b23-logger"

KEYS_HASH = "b23:keys"
"""Hash of SHA-256(api key) -> key record JSON; the clear key is never stored."""

KEYS_VERSION = "b23:keys:version"
"""Counter bumped by every change of KEYS_HASH, so writers know what has been persisted."""

KEYS_PERSISTED_VERSION = "b23:keys:persisted"
"""Highest KEYS_VERSION the logger has written to keys.json."""

KEYS_LOADED = "b23:keys:loaded"
"""Set by the logger once keys.json is in Redis; its absence means Redis lost the key set."""

KEYS_CHANNEL = "b23:keys:changed"
"""Pub/sub channel: a key hash whose record changed, or '*' when the whole set was replaced."""

LOGGER_HEARTBEAT = "b23:logger:heartbeat"
"""Key with a short TTL refreshed by a live logger (health check)."""

KEYS_FILE_DIGEST = "b23:keys:file-digest"
"""SHA-256 of keys.json as the logger last wrote or loaded it: a different file is a hand edit."""

LIMITS_PREFIX = "b23:limit:"
"""Per-key limit state: `{prefix}{key_id}:rpm`, `:tpm`, `:d:YYYYMMDD`, `:m:YYYYMM`."""
