"""keys.json with user settings, through the logger's KeyFileKeeper on a real Redis: loaded and
written together with the keys, budgets as decimal strings; a file from before `users` loads as
it is (and clears settings Redis had); a misspelt user setting refuses the file."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from logger_service.keyfile import KeyFileKeeper
from shared import redis_names
from shared.keys import KeyFile, KeyRecord, hash_api_key
from shared.users import UserSettings

OLD_FILE = {"keys": [{"api_key": "bsk-old-file-0001", "user_id": "olga", "rpm_limit": 5}]}
WITH_USERS = {
    "keys": [
        {"api_key": "bsk-with-users-01", "user_id": "uma", "budget_usd_daily": "2.50"},
        {"api_key": "bsk-with-users-02", "user_id": "uma", "budget_usd_monthly": 40},
    ],
    "users": [{"user_id": "uma", "budget_usd_daily": "5", "budget_usd_monthly": 0.5}],
}


@pytest.fixture
async def redis(redis_url, redis_client) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def users_in(redis: Redis) -> dict[str, dict]:
    raw = await redis.hgetall(redis_names.USERS_HASH)
    return {user.decode(): orjson.loads(value) for user, value in raw.items()}


async def test_users_load_and_persist_with_the_keys(redis, tmp_path):
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps(WITH_USERS))
    keeper = KeyFileKeeper(redis, path)
    await keeper.tick()
    assert await users_in(redis) == {"uma": {"budget_usd_daily": "5", "budget_usd_monthly": "0.5"}}
    stored = [orjson.loads(raw) for raw in (await redis.hgetall(redis_names.KEYS_HASH)).values()]
    budgets = sorted(
        entry.get("budget_usd_daily", entry.get("budget_usd_monthly")) for entry in stored
    )
    assert budgets == ["2.5", "40"]  # decimal strings, as written in a normal form

    changed = UserSettings(user_id="vic", budget_usd_monthly="0.000000001")
    await redis.hset(redis_names.USERS_HASH, "vic", changed.to_redis())
    await redis.incr(redis_names.KEYS_VERSION)
    await keeper.tick()
    written = orjson.loads(path.read_bytes())
    assert written["users"] == [
        {"user_id": "uma", "budget_usd_daily": "5", "budget_usd_monthly": "0.5"},
        {"user_id": "vic", "budget_usd_monthly": "0.000000001"},
    ]
    assert {entry["api_key_sha256"] for entry in written["keys"]} == {
        hash_api_key("bsk-with-users-01"),
        hash_api_key("bsk-with-users-02"),
    }
    kept = [e.get("budget_usd_daily", e.get("budget_usd_monthly")) for e in written["keys"]]
    assert sorted(kept) == budgets

    await redis.flushdb()  # Redis lost everything: both come back from the file
    await keeper.tick()
    assert set(await users_in(redis)) == {"uma", "vic"}
    assert await redis.hlen(redis_names.KEYS_HASH) == 2


async def test_a_file_without_users_loads_and_is_written_as_before(redis, tmp_path):
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps(OLD_FILE))
    await redis.hset(redis_names.USERS_HASH, "stale", b'{"budget_usd_daily":"1"}')
    keeper = KeyFileKeeper(redis, path)
    await keeper.tick()
    assert await users_in(redis) == {}  # the file is the whole set: no settings
    assert keeper.file_error is None and await redis.hlen(redis_names.KEYS_HASH) == 1
    await redis.incr(redis_names.KEYS_VERSION)
    await keeper.tick()
    assert set(orjson.loads(path.read_bytes())) == {"keys"}


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ([{"user_id": "uma", "budget_usd_dayly": "5"}], "users.0.budget_usd_dayly"),
        ([{"user_id": "uma", "budget_usd_daily": "0"}], "users.0.budget_usd_daily"),
        ([{"user_id": "uma", "budget_usd_daily": 1.5e-10}], "users.0.budget_usd_daily"),
        ([{"user_id": "u"}, {"user_id": "u"}], "listed twice"),
    ],
)
async def test_a_bad_user_setting_refuses_the_file(redis, tmp_path, users, expected):
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({**OLD_FILE, "users": users}))
    keeper = KeyFileKeeper(redis, path)
    keeper._still_being_written = lambda: False
    await keeper.tick()
    assert keeper.file_error is not None and expected in keeper.file_error
    assert not await redis.exists(redis_names.KEYS_LOADED)


def test_render_without_users_is_the_original_shape():
    record = KeyRecord(key_hash=hash_api_key("bsk-render-0001"), user_id="rae")
    assert set(orjson.loads(KeyFile.render([record]))) == {"keys"}
