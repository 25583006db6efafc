"""Bad input, generated: schemathesis against the proxy's OpenAPI, hypothesis for raw bytes.

Every answer must be a clear 4xx (or a 2xx) in the route's protocol shape, never a 5xx or a
traceback, the processes must survive, and every authenticated request must leave one record.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.processes import ADMIN_TOKEN
from tests.system import System, running_system

KEY = "bsk-bad-input-000001"
CASES: Counter[str] = Counter()
"""Generated cases per generator, printed at the end of the module (pytest -s shows it)."""
METERED_ROUTES = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
)


def sent(method: str, path: str, generator: str = "") -> None:
    """Count a request; POSTs to a metered route with our key must leave one record each."""
    if generator:
        CASES[generator] += 1
    if method == "POST" and path in METERED_ROUTES:
        CASES["metered"] += 1


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("bad-input")
    with running_system(
        redis_url,
        fake_upstream_url,
        root,
        1,
        MAX_REQUEST_BYTES="65536",
        PERSIST_CONFIRM_TIMEOUT="0.5",
    ) as system:
        assert system.upsert(KEY, "mallory").status_code == 200
        yield system


def assert_protocol_shape(path: str, reply: httpx.Response) -> None:
    assert reply.status_code < 500, f"{reply.status_code} on {path}: {reply.text[:300]}"
    assert "Traceback" not in reply.text
    if reply.status_code >= 400:
        body = orjson.loads(reply.content)
        if path.startswith("/v1/messages"):
            assert body["type"] == "error" and body["error"]["message"], body
        else:
            assert body["error"]["message"] and "type" in body["error"], body


def test_schemathesis_cases_get_clear_answers(system: System):
    """Every operation of the proxy's OpenAPI, fuzzed with schemathesis' generators (run by
    hypothesis directly: its pytest plugin does not support pytest 9's nodes)."""
    api = schemathesis.openapi.from_url(system.url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            case.headers = {**(case.headers or {}), "x-api-key": KEY, "x-admin-token": ADMIN_TOKEN}
            reply = case.call(base_url=system.url, timeout=20)
            sent(case.method.upper(), case.path, "schemathesis")
            assert_protocol_shape(
                case.path, httpx.Response(reply.status_code, content=reply.content)
            )

        fuzz()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(string.printable, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ROUTES = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
)


@given(
    route=st.sampled_from(ROUTES),
    body=st.binary(max_size=300) | JSONISH.map(lambda value: json.dumps(value).encode()),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_bodies_get_clear_answers(system: System, route: str, body: bytes):
    reply = httpx.post(
        system.url + route,
        content=body,
        timeout=20,
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )
    sent("POST", route, "hypothesis")
    assert_protocol_shape(route, reply)


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("/v1/chat/completions", b"\xff\xfe not utf-8", 400),
        ("/v1/messages", b"\xff\xfe not utf-8", 400),
        ("/v1/chat/completions", b"[" * 5000 + b"]" * 5000, 400),
        ("/v1/messages", b'{"a":' * 3000 + b"1" + b"}" * 3000, 400),
        ("/v1/chat/completions", b"x" * 70_000, 413),
        ("/v1/messages", b"x" * 70_000, 413),
        ("/v1/chat/completions", b'{"model": 5, "messages": "no"}', 200),
        ("/v1/messages", b'{"model": 5, "max_tokens": 1, "messages": []}', 400),
    ],
)
def test_hand_picked_bad_bodies(system: System, route: str, body: bytes, status: int):
    reply = httpx.post(system.url + route, content=body, headers={"x-api-key": KEY}, timeout=20)
    sent("POST", route)
    if route == "/v1/chat/completions" and status == 200:
        assert reply.status_code == 200  # passthrough: the upstream decides (our fake accepts)
        return
    assert reply.status_code == status
    assert_protocol_shape(route, reply)


def test_chunked_body_over_the_limit_is_413(system: System):
    def parts():
        for _ in range(20):
            yield b"y" * 8192

    reply = httpx.post(system.url + "/v1/messages", content=parts(), headers={"x-api-key": KEY})
    sent("POST", "/v1/messages")
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/chat/completions", 405),
        ("GET", "/v1/messages", 405),
        ("POST", "/v2/nothing", 404),
        ("DELETE", "/v1/messages/x", 404),
        ("PUT", "/healthz", 405),
    ],
)
def test_unknown_routes_and_methods(system: System, method: str, path: str, status: int):
    reply = httpx.request(method, system.url + path, headers={"x-api-key": KEY})
    sent(method, path)
    assert reply.status_code == status
    assert_protocol_shape(path, reply)


def test_process_survived_and_every_authenticated_request_left_one_record(system: System):
    """Runs last in this module: the proxy is alive and the record count matches."""
    assert httpx.get(system.url + "/healthz").status_code == 200
    events = system.wait_events(CASES["metered"], timeout=20)
    assert all(n == 1 for n in Counter(e["request_id"] for e in events).values())
    print(f"\ngenerated cases: {dict(CASES)}; records: {len(events)}")
