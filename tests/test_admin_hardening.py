"""Admin hardening against real proxy and logger processes: hints that reveal no key, keys no
header can carry refused, failed admin tokens throttled and logged without the token, usage
ranges refused at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from shared.redis_names import KEYS_HASH
from tests.processes import ADMIN_TOKEN, cpu_seconds, wait_until
from tests.system import System, running_system

ADMIN = {"x-admin-token": ADMIN_TOKEN}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SHORT_KEY = "Zq!xW_pR-mT~"
"""12 characters: the old hint (8 + 4) held all of it. None of them is a hex digit."""


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("admin-hardening")
    with running_system(redis_url, fake_upstream_url, root, 1) as system:
        yield system


def pieces(secret: str, size: int = 5) -> list[str]:
    """Every run of `size` characters of a secret: none may be written anywhere."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def test_a_short_upserted_key_is_not_revealed_by_its_hint(system: System, redis_url: str):
    reply = system.upsert(SHORT_KEY, "hana")
    assert reply.status_code == 200, reply.text
    key_id = reply.json()["key"]["key_id"]
    listed = httpx.get(system.url + "/admin/keys", headers=ADMIN).json()["keys"]
    view = next(k for k in listed if k["key_id"] == key_id)
    assert view["key_hint"] == "Zq!…~"
    client = redis.Redis.from_url(redis_url)
    stored = wait_until(lambda: client.hgetall(KEYS_HASH), 5, what="keys in Redis")
    client.close()
    wait_until(lambda: key_id in system.keys_path.read_text(), 5, what="the key in keys.json")
    written = str(listed) + reply.text + system.keys_path.read_text() + str(stored)
    assert not [piece for piece in pieces(SHORT_KEY) if piece in written]


@pytest.mark.parametrize(
    "api_key",
    [
        "bsk-clé-secrète-01",
        " bsk-leading-space",
        "bsk-trailing-space ",
        "bsk-inner space-01",
        "bsk-control-\x01-char",
        "bsk-with\ttab-0001",
    ],
)
def test_upserting_a_key_no_header_can_carry_is_400_without_echoing_it(system, api_key):
    reply = system.upsert(api_key, "ivan")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("api_key: ") and "printable ASCII" in error["message"]
    assert api_key.strip() not in reply.text and "bsk-" not in reply.text


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"since": "0", "until": "99999999999"}, 400),
        ({"since": "99999999999999999999d"}, 400),
        ({"since": "2d", "until": "3d"}, 400),
        ({"since": "401d"}, 400),
        ({"since": "2025-01-01", "until": "2026-02-05T00:00:01Z"}, 400),
        ({"since": "9" * 5000}, 400),
        ({"until": "garbage"}, 400),
        ({}, 200),
        ({"since": "400d", "group_by": "user"}, 200),
        ({"since": "2000-01-01", "until": "2001-01-01"}, 200),
        ({"since": "now", "until": str(int(time.time()) + 3600)}, 200),
    ],
)
def test_usage_ranges_are_checked_at_once(system: System, params: dict, status: int):
    """Under 0.5 s of the proxy's CPU (about 0.04 s on an idle machine), which the other tests
    of a parallel run do not change, as they do its wall time; and a wall time under the
    client's 5 s timeout, so the answer waits on nothing."""
    pid = system.proxies[0].pid
    before = cpu_seconds(pid)
    reply = httpx.get(system.url + "/admin/usage", params=params, headers=ADMIN, timeout=5)
    used = cpu_seconds(pid) - before
    assert reply.status_code == status, reply.text
    if status == 400:
        assert reply.json()["error"]["type"] == "invalid_request_error"
    assert used < 0.5, f"{used:.2f}s of CPU"


def test_wrong_admin_tokens_are_throttled_and_logged_without_the_token(system: System):
    """On a replica of its own (the throttle is per process): ten wrong tokens are 403, then
    every admin request from the address is 429, even with the right token, and proxied
    requests are untouched."""
    url = system.start_proxy()
    proxy = system.proxies[-1]
    guesses = [f"guess-{index:02d}-QkV7pLw9" for index in range(11)]
    statuses = [
        httpx.get(url + "/admin/keys", headers={"x-admin-token": guess}).status_code
        for guess in guesses
    ]
    assert statuses == [403] * 10 + [429]
    throttled = httpx.get(url + "/admin/usage", headers=ADMIN)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["error"]["type"] == "rate_limit_exceeded"
    assert httpx.get(system.url + "/admin/keys", headers=ADMIN).status_code == 200
    assert system.upsert("bsk-throttle-test-01", "jo").status_code == 200
    headers = {"authorization": "Bearer bsk-throttle-test-01"}
    assert httpx.post(url + "/v1/chat/completions", json=BODY, headers=headers).status_code == 200
    wait_until(lambda: "throttled" in proxy.log(), 5, what="the throttle's log line")
    log = proxy.log()
    assert log.count("admin authentication failed from 127.0.0.1 on /admin/keys") == 10
    assert log.count("127.0.0.1 throttled") == 1
    assert ADMIN_TOKEN not in log
    assert not [piece for guess in guesses for piece in pieces(guess, 6) if piece in log]
