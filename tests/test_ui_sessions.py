"""The dashboard's session store and login throttle on a real Redis: what a session id opens,
when it stops opening it, and what Redis holds (never the id, nor the secret it was opened
with)."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest
from redis.asyncio import Redis

from proxy_service.ui.sessions import SessionStore, token_fingerprint
from proxy_service.ui.throttle import LoginThrottle
from shared.redis_names import UI_LOGIN_FAILURES_PREFIX, UI_SESSION_PREFIX


@pytest.fixture
async def redis(redis_client, redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_session_opens_for_its_role_only_until_closed(redis):
    store = SessionStore(redis)
    session_id = await store.open("admin", "binding", idle=60, max_age=600)
    session = await store.get(session_id, "admin")
    assert session is not None and session.binding == "binding" and len(session.csrf) >= 40
    assert await store.get(session_id, "me") is None
    assert await store.get(session_id + "x", "admin") is None
    await store.close(session_id)
    assert await store.get(session_id, "admin") is None


@pytest.mark.parametrize("given", [None, "", "a" * 65, "not-a-session", "../../etc"])
async def test_anything_but_a_live_id_opens_nothing(redis, given):
    await SessionStore(redis).open("admin", "b", idle=60, max_age=600)
    assert await SessionStore(redis).get(given, "admin") is None


async def test_redis_holds_a_hash_of_the_id_never_the_id(redis):
    session_id = await SessionStore(redis).open("me", "key-hash", idle=60, max_age=600, key_id="k")
    keys = await redis.keys(UI_SESSION_PREFIX + "*")
    assert len(keys) == 1 and session_id.encode() not in keys[0]
    assert session_id.encode() not in await redis.get(keys[0])


async def test_use_renews_the_idle_expiry_and_disuse_ends_it(redis):
    store = SessionStore(redis)
    session_id = await store.open("admin", "b", idle=2, max_age=600)
    (key,) = await redis.keys(UI_SESSION_PREFIX + "*")
    await asyncio.sleep(1.2)
    assert await store.get(session_id, "admin") is not None
    assert await redis.ttl(key) == 2, "renewed by the use"
    await asyncio.sleep(2.2)
    assert await store.get(session_id, "admin") is None


async def test_the_absolute_expiry_ends_a_session_however_much_it_is_used(redis):
    store = SessionStore(redis)
    session_id = await store.open("admin", "b", idle=60, max_age=1.5)
    for _ in range(3):
        assert await store.get(session_id, "admin") is not None
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.0)
    assert await store.get(session_id, "admin") is None
    assert await redis.keys(UI_SESSION_PREFIX + "*") == []


def test_the_admin_binding_is_neither_the_token_nor_its_bare_hash():
    token = "the-admin-token-of-this-gateway"
    fingerprint = token_fingerprint(token)
    assert token not in fingerprint
    assert fingerprint != hashlib.sha256(token.encode()).hexdigest()
    assert fingerprint != token_fingerprint(token + "x")


async def test_the_throttle_counts_failures_per_address_for_a_minute(redis, caplog):
    throttle = LoginThrottle(redis, allowed=3)
    for _ in range(2):
        await throttle.failed("10.0.0.1", "/ui/login")
    assert await throttle.retry_after("10.0.0.1") is None
    with caplog.at_level(logging.WARNING):
        await throttle.failed("10.0.0.1", "/ui/login")
    wait = await throttle.retry_after("10.0.0.1")
    assert wait is not None and 1 <= wait <= 60
    assert await throttle.retry_after("10.0.0.2") is None
    assert "10.0.0.1" in caplog.text and "3 of 3" in caplog.text
    ttl = await redis.ttl(UI_LOGIN_FAILURES_PREFIX + "10.0.0.1")
    assert 0 < ttl <= 60, "the window is not extended by later failures"
    await throttle.failed("10.0.0.1", "/ui/login")
    assert await redis.ttl(UI_LOGIN_FAILURES_PREFIX + "10.0.0.1") <= ttl
