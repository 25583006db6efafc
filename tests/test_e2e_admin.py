"""Key lifecycle API and per-key limits, across two proxy replicas."""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.processes import ADMIN_TOKEN
from tests.system import System, running_system

ADMIN = {"x-admin-token": ADMIN_TOKEN}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("e2e-admin")
    with running_system(redis_url, fake_upstream_url, root, 2) as system:
        yield system


def admin(system: System, method: str, path: str, url: str | None = None, **kwargs):
    return httpx.request(method, (url or system.url) + path, headers=ADMIN, timeout=10, **kwargs)


def call(url: str, key: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=BODY,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def refused_within(url: str, key: str, seconds: float) -> float:
    started = time.monotonic()
    while call(url, key).status_code != 401:
        assert time.monotonic() - started < seconds, f"key still accepted after {seconds}s"
        time.sleep(0.01)
    return time.monotonic() - started


def create(system: System, **fields) -> dict:
    reply = admin(system, "POST", "/admin/keys", json={"user_id": "quinn", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_create_answers_the_key_once_and_never_again(system: System):
    created = create(system, metadata={"team": "red"}, rpm_limit=1000)
    api_key, key_id = created["api_key"], created["key_id"]
    assert api_key.startswith("bsk-") and len(api_key) >= 36 and created["persisted"] is True
    assert call(system.proxy_urls[1], api_key).status_code == 200
    listed = admin(system, "GET", "/admin/keys").json()["keys"]
    view = next(k for k in listed if k["key_id"] == key_id)
    assert view["user_id"] == "quinn" and view["metadata"] == {"team": "red"}
    assert view["rpm_limit"] == 1000 and view["created_at"] and view["expires_at"] is None
    assert view["key_hint"] == f"{api_key[:7]}…{api_key[-4:]}"
    one = admin(system, "GET", f"/admin/keys/{key_id}").json()
    assert one["key_id"] == key_id
    everything = str(listed) + str(one) + system.keys_path.read_text()
    assert api_key not in everything and api_key[8:-4] not in everything
    entry = next(
        e for e in orjson.loads(system.keys_path.read_bytes())["keys"] if e.get("key_id") == key_id
    )
    assert "api_key" not in entry and len(entry["api_key_sha256"]) == 64


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_patch_deactivate_and_reactivate_in_force_on_the_other_replica(system: System):
    created = create(system)
    a, b = system.proxy_urls
    reply = admin(
        system, "PATCH", f"/admin/keys/{created['key_id']}", url=a, json={"active": False}
    )
    assert reply.status_code == 200 and reply.json()["key"]["active"] is False
    assert refused_within(b, created["api_key"], 1.0) < 1.0
    admin(system, "PATCH", f"/admin/keys/{created['key_id']}", url=b, json={"active": True})
    assert call(a, created["api_key"]).status_code == 200


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_expired_key_is_refused(system: System):
    created = create(system, expires_at="2001-01-01T00:00:00Z")
    assert call(system.url, created["api_key"]).status_code == 401
    future = create(system, expires_at=int(time.time()) + 3600)
    assert call(system.url, future["api_key"]).status_code == 200
    admin(system, "PATCH", f"/admin/keys/{future['key_id']}", json={"expires_at": 1})
    assert refused_within(system.proxy_urls[1], future["api_key"], 1.0) < 1.0


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_rotate_with_grace_then_old_key_refused(system: System):
    created = create(system)
    a, b = system.proxy_urls
    reply = admin(
        system, "POST", f"/admin/keys/{created['key_id']}/rotate", url=a, json={"grace_seconds": 2}
    )
    assert reply.status_code == 200
    rotated = reply.json()
    assert rotated["key_id"] == created["key_id"] and rotated["api_key"] != created["api_key"]
    # Every time in a key view in one format: pydantic's UTC `Z` form, as created_at is.
    times = [rotated["previous_key_valid_until"], rotated["created_at"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t) for t in times), times
    assert call(b, rotated["api_key"]).status_code == 200
    assert call(b, created["api_key"]).status_code == 200
    time.sleep(2.0)
    assert refused_within(b, created["api_key"], 1.0) < 1.0
    assert call(b, rotated["api_key"]).status_code == 200


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_rotate_without_grace_and_delete_in_force_everywhere(system: System):
    created = create(system)
    a, b = system.proxy_urls
    rotated = admin(
        system, "POST", f"/admin/keys/{created['key_id']}/rotate", url=a, json={"grace_seconds": 0}
    ).json()
    assert refused_within(b, created["api_key"], 1.0) < 1.0
    assert call(b, rotated["api_key"]).status_code == 200
    assert admin(system, "DELETE", f"/admin/keys/{created['key_id']}", url=b).status_code == 200
    assert refused_within(a, rotated["api_key"], 1.0) < 1.0
    assert admin(system, "GET", f"/admin/keys/{created['key_id']}").status_code == 404
    assert admin(system, "DELETE", f"/admin/keys/{created['key_id']}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/key_x"),
        ("PATCH", "/admin/keys/key_x"),
        ("DELETE", "/admin/keys/key_x"),
        ("POST", "/admin/keys/key_x/rotate"),
        ("POST", "/admin/keys/upsert"),
    ],
)
def test_every_admin_route_needs_the_token(system: System, method: str, path: str):
    for headers in ({}, {"x-admin-token": "not-the-token-at-all"}):
        reply = httpx.request(method, system.url + path, headers=headers, json={})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/admin/keys", {}, "user_id"),
        ("POST", "/admin/keys", {"user_id": "x", "rpm_limit": 0}, "rpm_limit"),
        ("POST", "/admin/keys", {"user_id": "x", "expires_at": "soon"}, "expires_at"),
        ("PATCH", "/admin/keys/KEY", {"colour": "red"}, "colour"),
        ("POST", "/admin/keys", {"user_id": "x", "key_id": "k"}, "key_id: set by the proxy"),
        (
            "POST",
            "/admin/keys/upsert",
            {"api_key": "bsk-0000000000", "user_id": "x", "key_hash": "0"},
            "key_hash: set by the proxy",
        ),
        (
            "POST",
            "/admin/keys/upsert",
            {"api_key": "bsk-0000000000", "user_id": "x", "api_key_sha256": "f" * 64},
            "api_key_sha256: set by the proxy",
        ),
        ("POST", "/admin/keys/KEY/rotate", {"grace_seconds": -1}, "grace_seconds"),
    ],
)
def test_bad_admin_bodies_are_400_with_a_clear_message(system, method, path, body, expected):
    key_id = create(system)["key_id"]
    reply = admin(system, method, path.replace("KEY", key_id), json=body)
    assert reply.status_code == 400 and expected in reply.json()["error"]["message"]


def concurrent_calls(urls: list[str], key: str, count: int) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: call(urls[i % len(urls)], key), range(count)))


def test_rpm_limit_holds_exactly_across_two_replicas_under_concurrency(system, fake_upstream):
    created = create(system, rpm_limit=5)
    replies = concurrent_calls(system.proxy_urls, created["api_key"], 16)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 5 + [429] * 11
    limited = next(r for r in replies if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"
    assert len(fake_upstream.received()) == 5, "a limited request reached the upstream"


def sequential_until_limited(url: str, key: str, tries: int = 6) -> list[int]:
    statuses = []
    for _ in range(tries):
        statuses.append(call(url, key).status_code)
        time.sleep(0.15)  # the charge of real usage lands in the background
    return statuses


def test_tpm_limit_charges_real_usage(system: System):
    created = create(system, tpm_limit=30)  # each reply of the fake upstream uses 18 tokens
    assert sequential_until_limited(system.url, created["api_key"])[:3] == [200, 200, 429]


def test_daily_quota_with_retry_after_until_midnight(system: System):
    created = create(system, daily_token_quota=20)
    statuses = sequential_until_limited(system.proxy_urls[1], created["api_key"], 3)
    assert statuses == [200, 200, 429]
    reply = call(system.url, created["api_key"])
    assert reply.status_code == 429 and "daily_token_quota" in reply.json()["error"]["message"]
    assert 1 <= int(reply.headers["retry-after"]) <= 86400


def test_limited_requests_are_metered(system: System):
    created = create(system, rpm_limit=1)
    before = len(system.events())
    assert [call(system.url, created["api_key"]).status_code for _ in range(2)] == [200, 429]
    events = system.wait_events(before + 2)[before:]
    assert sorted(e["status_code"] for e in events) == [200, 429]
