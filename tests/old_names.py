"""A deployment's Redis as b23 0.3 left it, under the names before hash tags: what the logger's
upgrade (logger_service/upgrade.py) must carry over or clear."""

from __future__ import annotations

from datetime import datetime

import orjson
import redis

from tests.poison import proxy_event

OLD_STREAM = "b23:events"
OLD_EVENTS = [f"old-{index}" for index in range(5)]
OLD_COUNTERS = {
    "b23:limit:key_a:d:{day}": 100,
    "b23:limit:key_a:m:{month}": 500,
    "b23:spend:d:{day}:key:key_a": 7_000,
    "b23:spend:m:{month}:user:uma": 9_000,
}
"""The current periods' counters of key `key_a` of user `uma` (the names' {day}, {month})."""
OLD_LEFTOVERS = (
    "b23:keys",
    "b23:users",
    "b23:keys:version",
    "b23:keys:persisted",
    "b23:keys:loaded",
    "b23:keys:file-digest",
    "b23:epoch",
    "b23:limit:key_a:rpm",
    "b23:spend:d:20200101:user:uma",
    "b23:usage:watermark",
    "b23:usage:groups",
    "b23:usage:recent",
    "b23:usage:hour:2024-05-01T13:0123456789abcdef",
)


def event(request_id: str) -> bytes:
    return orjson.dumps(proxy_event(request_id, user_id="uma", key_id="key_a"))


def counter_names(now: datetime) -> dict[str, int]:
    """OLD_COUNTERS named for `now`'s day and month."""
    stamps = {"day": now.strftime("%Y%m%d"), "month": now.strftime("%Y%m")}
    return {name.format(**stamps): value for name, value in OLD_COUNTERS.items()}


def seed_old_deployment(client: redis.Redis, now: datetime, consumer: str = "logger-1") -> None:
    """The old stream with its group (two entries read but not yet written by the old logger of
    the same consumer name, three never read), the old key set, counters and aggregates."""
    for request_id in OLD_EVENTS:
        client.xadd(OLD_STREAM, {"e": event(request_id)})
    client.xgroup_create(OLD_STREAM, "b23-logger", id="0")
    client.xreadgroup("b23-logger", consumer, {OLD_STREAM: ">"}, count=2)
    for name, value in counter_names(now).items():
        client.set(name, value, ex=86400)
    for name in OLD_LEFTOVERS:
        if name.endswith("recent"):
            client.xadd(name, {"e": "x"})
        elif name.endswith("groups"):
            client.hset(name, "g", 1)
        else:
            client.set(name, 1)
