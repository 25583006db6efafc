"""A deployment upgraded from the Redis names before hash tags, carried over by the logger's
start (logger_service/upgrade.py), on a real Redis: the old stream's events reach events.jsonl
once each (those an old proxy publishes after the drain too), the key set comes from keys.json,
this period's quota and budget counters keep counting, the aggregates are rebuilt, and no old
name is left."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from logger_service import worker
from logger_service.records import record_line
from proxy_service.routes.usage import usage_report
from shared import redis_names
from shared.keys import KeyFile, KeyRecord, hash_api_key
from shared.redis_names import limit_keys, spend_key
from shared.settings import Settings
from shared.usage_query import build_query
from shared.users import UserSettings
from tests.logger.test_worker import eventually, running_logger
from tests.old_names import OLD_EVENTS, OLD_STREAM, event, seed_old_deployment
from tests.poison import START_MS
from tests.processes import ADMIN_TOKEN

KEY = KeyRecord(key_hash=hash_api_key("bsk-upgraded-0001"), key_id="key_a", user_id="uma")


async def test_an_old_deployment_is_carried_over_when_the_logger_starts(
    redis_url, redis_client, tmp_path, monkeypatch
):
    monkeypatch.setattr(worker, "CLAIM_EVERY_SECONDS", 0.1)
    now = datetime.now(UTC)
    seed_old_deployment(redis_client, now)
    names = limit_keys("key_a", "uma", now)
    redis_client.set(names[2], 5)  # a new proxy's charge before the logger started
    (tmp_path / "keys.json").write_bytes(KeyFile.render([KEY], [UserSettings(user_id="uma")]))
    settings = Settings(_env_file=None, admin_token=ADMIN_TOKEN, data_dir=tmp_path)
    _, written_before = record_line("1-0", {b"e": event(OLD_EVENTS[0])}, settings, None)
    settings.events_path.write_bytes(written_before)  # the old logger's last line, unacknowledged
    hour = {"since": str(START_MS // 1000), "until": str(START_MS // 1000 + 3600)}
    query = build_query(**hour, group_by="key", filters={}, now_ms=int(now.timestamp() * 1000))
    async with running_logger(redis_url, tmp_path, 5, events_retention_days=3650) as (_, redis):
        await eventually(lambda: gone(redis, OLD_STREAM, "b23:keys:loaded"), "the upgrade")
        await redis.xadd(OLD_STREAM, {"e": event("late")})  # an old proxy's shutdown drain
        await eventually(lambda: gone(redis, OLD_STREAM), "the late event's drain")
        counted = lambda: all_counted(redis, query, len(OLD_EVENTS) + 1)  # noqa: E731
        await eventually(counted, "the aggregates rebuilt")

    lines = [orjson.loads(line) for line in settings.events_path.read_bytes().splitlines()]
    assert sorted(line["request_id"] for line in lines) == sorted([*OLD_EVENTS, "late"])
    assert redis_client.hkeys(redis_names.KEYS_HASH) == [KEY.key_hash.encode()]
    moved = {
        names[2]: 100 + 5,
        names[3]: 500,
        names[4]: 7_000,
        spend_key("monthly", "uma", None, now): 9_000,
    }
    assert {name: int(redis_client.get(name)) for name in moved} == moved
    assert all(0 < redis_client.ttl(name) <= 86400 for name in moved)
    left = [name.decode() for name in redis_client.scan_iter("b23:*")]
    assert left and all(name.startswith("b23:{") for name in left), left


async def gone(redis, *names: str) -> bool:
    return not await redis.exists(*names)


async def all_counted(redis, query, lines: int) -> bool:
    return (await usage_report(redis, query))["totals"]["requests"] == lines
