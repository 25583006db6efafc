"""Security properties: no SSRF, no credential leaks, owner-only data files, no secrets written."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from tests.processes import ADMIN_TOKEN
from tests.system import System, running_system

KEY = "bsk-security-test-0001"
UPSTREAM_SECRET = "sk-upstream-secret-do-not-leak-42"


class Canary:
    """A loopback HTTP server that records every hit: nothing should ever reach it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                canary.hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("security")
    with running_system(
        redis_url, fake_upstream_url, root, 1, UPSTREAM_API_KEY=UPSTREAM_SECRET
    ) as system:
        assert system.upsert(KEY, "sam").status_code == 200
        yield system


def test_client_cannot_choose_where_the_proxy_connects(system: System, fake_upstream):
    canary = Canary()
    hostile = {
        "x-forwarded-host": canary.url[7:],
        "x-upstream-url": canary.url,
        "forwarded": "host=x",
        "x-api-base": canary.url,
        "x-custom-secret": "client-only",
        "x-api-key": KEY,
    }
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "api_base": canary.url,
        "base_url": canary.url,
        "upstream": canary.url,
    }
    assert (
        httpx.post(system.url + "/v1/chat/completions", json=body, headers=hostile).status_code
        == 200
    )
    anthropic_body = {**body, "max_tokens": 5}
    assert (
        httpx.post(system.url + "/v1/messages", json=anthropic_body, headers=hostile).status_code
        == 200
    )
    assert canary.hits == []
    received = fake_upstream.received()
    assert len(received) == 2
    for request in received:
        forwarded = {name.lower() for name in request["headers"]}
        assert not forwarded & {
            "x-forwarded-host",
            "x-upstream-url",
            "x-api-base",
            "x-custom-secret",
            "x-api-key",
            "forwarded",
        }
        assert request["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    canary.server.shutdown()


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rejecting_our_key_never_leaks_it(system: System, fake_upstream, route, stream):
    leak = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_SECRET}"}}
    fake_upstream.script({"status": 401, "json": leak})
    body = {
        "model": "m",
        "max_tokens": 5,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = httpx.post(system.url + route, json=body, headers={"x-api-key": KEY})
    assert reply.status_code == 502
    assert UPSTREAM_SECRET not in reply.text and UPSTREAM_SECRET[:12] not in reply.text
    assert "credentials" in reply.text


def test_data_files_are_owner_only_and_hold_no_secrets(system: System):
    httpx.post(
        system.url + "/v1/chat/completions",
        headers={"x-api-key": KEY},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    system.wait_events(len(system.events()) or 1)
    for path in (system.keys_path, system.events_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    written = system.keys_path.read_text() + system.events_path.read_text() + system.logs()
    for secret in (KEY, ADMIN_TOKEN, UPSTREAM_SECRET):
        assert secret not in written


def test_upstream_cookies_never_follow_one_request_into_the_next(
    redis_url: str, fake_upstream_url: str, fake_upstream, tmp_path
):
    """A shared upstream client must not keep a cookie jar: an upstream's Set-Cookie for one
    user would otherwise ride along on every later user's request. (By a host name: cookie
    jars ignore cookies from bare IP addresses.)"""
    by_name = fake_upstream_url.replace("127.0.0.1", "localhost")
    with running_system(redis_url, by_name, tmp_path, 1) as system:
        assert system.upsert(KEY, "sam").status_code == 200
        ok = {"id": "c1", "choices": [], "usage": {}}
        fake_upstream.script({"json": ok, "headers": {"set-cookie": "session=alice; Path=/"}})
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(2):
            headers = {"x-api-key": KEY}
            reply = httpx.post(system.url + "/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200
    cookies = [request["headers"].get("cookie") for request in fake_upstream.received()]
    assert cookies == [None, None]
