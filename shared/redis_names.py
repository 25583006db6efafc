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

USERS_HASH = "b23:users"
"""Hash of user_id -> user settings JSON (shared/users.py); changed and persisted with KEYS_HASH
(KEYS_VERSION, keys.json's `users`)."""

USERS_CHANNEL = "b23:users:changed"
"""Pub/sub channel: a user_id whose settings changed (a '*' on KEYS_CHANNEL reloads them all)."""

LOGGER_HEARTBEAT = "b23:logger:heartbeat"
"""Key with a short TTL refreshed by a live logger (health check)."""

KEYS_FILE_DIGEST = "b23:keys:file-digest"
"""SHA-256 of keys.json as the logger last wrote or loaded it: a different file is a hand edit."""

REDIS_EPOCH = "b23:epoch"
"""A random value set once per Redis dataset: when it changes, Redis restarted empty (or was
flushed) and whatever it had not yet handed to the logger may be gone."""

LIMITS_PREFIX = "b23:limit:"
"""Per-key limit state: `{prefix}{key_id}:rpm`, `:tpm`, `:d:YYYYMMDD`, `:m:YYYYMM`."""

SPEND_PREFIX = "b23:spend:"
"""Money budget counters, nano-USD per UTC period: `{prefix}d:YYYYMMDD:key:{key_id}`,
`{prefix}m:YYYYMM:user:{user_id}` (the id last, so any user_id names one counter)."""

USAGE_PREFIX = "b23:usage:"
"""Prefix of every usage aggregate key (layout in shared/usage_layout.py); a rebuild deletes all
keys under it."""

USAGE_GROUPS = "b23:usage:groups"
"""Hash of usage group id -> JSON [user_id, key_id, model, client_app]."""

USAGE_WATERMARK = "b23:usage:watermark"
"""JSON {"file": digest of a file's first line, "offset": bytes}: every line of the event files
before this point is counted in the usage aggregates, none after it. Absent: rebuild."""

RECENT_REQUESTS = "b23:usage:recent"
"""Stream of the last RECENT_REQUESTS_MAX counted record lines, metadata only, in file order
(shared/recent_requests.py): written with the aggregates, so rebuilt with them."""

LOGGER_STATUS = "b23:logger:status"
"""Hash of logger consumer name -> its status report JSON (shared/logger_status.py): keys.json
and disk errors, for /readyz and `python -m logger_service --check`."""

UI_SESSION_PREFIX = "b23:ui:session:"
"""Dashboard and /me sessions: `{prefix}{sha256(session id)}` -> session JSON, with the idle
expiry as TTL (proxy_service/ui/sessions.py); the id itself is only in the browser's cookie."""

UI_LOGIN_FAILURES_PREFIX = "b23:ui:login-failures:"
"""Failed dashboard and /me logins per client address in the current minute (a TTL'd counter)."""
