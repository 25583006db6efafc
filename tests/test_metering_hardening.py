"""One exact record per authenticated request, whatever a hostile client or a misbehaving
upstream does: real Redis, a logger, two proxies and our scripted fake upstream.

Each test sends a class of bad input (depths, fields, routes, request or reply) and checks the
client's answer (a clear error in its protocol's shape), the record (one per request, status
and why), and that metering goes on afterwards.
"""

from __future__ import annotations

import datetime
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from proxy_service.convert.openai.usage import MAX_TOKEN_COUNT
from shared.redis_names import limit_keys
from tests.fake_upstream import USAGE, chunk, completion
from tests.processes import free_port, proxy_process, wait_http, wait_until
from tests.system import System, running_system

KEY = "bsk-metering-hardening-01"
UNLIMITED_KEY = "bsk-metering-unlimited-01"
QUOTA = 10**12
ROUTES = ("/v1/chat/completions", "/v1/messages")
REQUEST_ID_HEADER = {"/v1/chat/completions": "x-request-id", "/v1/messages": "request-id"}
UPSTREAM_SECRET = "sk-upstream-credential-never-leaves-7731"


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("metering-hardening")
    with running_system(redis_url, fake_upstream_url, root, 2) as system:
        assert system.upsert(KEY, "mallory", daily_token_quota=QUOTA).status_code == 200
        assert system.upsert(UNLIMITED_KEY, "mallory").status_code == 200
        yield system


@pytest.fixture(scope="module")
def secret_url(system: System) -> str:
    """A third proxy of the system, one that sends UPSTREAM_API_KEY upstream."""
    return system.start_proxy(UPSTREAM_API_KEY=UPSTREAM_SECRET)


def body_for(route: str, stream: bool = False, text: str = "hi", **extra: Any) -> dict:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if route == "/v1/messages":
        body["max_tokens"] = 50
    if stream:
        body["stream"] = True
    return {**body, **extra}


def post(url: str, route: str, body: Any, key: str = KEY) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"x-api-key": key, "content-type": "application/json"}
    return httpx.post(url + route, content=content, headers=headers, timeout=20)


def record_of(system: System, request_id: str, timeout: float = 10) -> dict:
    def found() -> dict | None:
        return next((e for e in system.events() if e["request_id"] == request_id), None)

    return wait_until(found, timeout, what=f"the record of {request_id}")


def assert_error_shape(route: str, reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text[:300]
    body = reply.json()
    if route == "/v1/messages":
        assert body["type"] == "error" and body["error"]["message"]
    else:
        assert body["error"]["message"] and body["error"]["type"]
    return body


def nest(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def deep_body(route: str, depth: int, where: str) -> bytes:
    """A body whose deepest point is `depth` levels down (the body itself is level 1), in a
    field that matters (the message content, a tool schema) or one nobody reads."""
    body = body_for(route)
    if where == "content":  # body > messages > message > content
        body["messages"][0]["content"] = nest(depth - 3)
    elif where == "tool_schema":  # body > tools > tool (> function) > schema > properties
        levels = depth - 5 if route == "/v1/messages" else depth - 6
        schema = {"type": "object", "properties": {"x": nest(levels)}}
        tool = {"name": "t", "input_schema": schema}
        if route != "/v1/messages":
            tool = {"type": "function", "function": {"name": "t", "parameters": schema}}
        body["tools"] = [tool]
    else:  # an extra top-level field
        body["extra"] = nest(depth - 1)
    if depth >= 255:
        return _deep_text(body, where, depth)
    assert depth_of(body) == depth
    return orjson.dumps(body)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def _deep_text(body: dict, where: str, depth: int) -> bytes:
    """orjson writes only 254 levels: deeper bodies are spliced as text."""
    marker = "DEEP-MARKER"
    levels = depth - 1
    if where == "content":
        body["messages"][0]["content"] = marker
        levels = depth - 3
    else:
        body.pop("tools", None)
        body["extra"] = marker
    return orjson.dumps(body).replace(b'"DEEP-MARKER"', b"[" * levels + b"1" + b"]" * levels)


DEEP_CASES = [
    (depth, where)
    for depth in (129, 200, 254, 255, 600, 1024, 1030)
    for where in ("content", "tool_schema", "extra")
    if depth < 255 or where != "tool_schema"  # spliced as text: only content and extra
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("depth", "where"), DEEP_CASES)
def test_bodies_nested_past_the_limit_get_a_400_and_a_record(system, route, depth, where):
    """orjson reads 1,024 levels but writes 254: the proxy refuses what it could not record."""
    reply = post(system.proxy_urls[depth % 2], route, deep_body(route, depth, where))
    assert_error_shape(route, reply, 400)
    record = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])
    assert record["status_code"] == 400
    expected = "nested deeper than 128" if depth <= 1024 else "not valid JSON"
    assert expected in record["error"] and expected in reply.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("where", ["content", "tool_schema", "extra"])
def test_bodies_within_the_limit_pass(system, fake_upstream, route, where):
    reply = post(system.url, route, deep_body(route, 120, where))
    assert reply.status_code == 200, reply.text[:300]
    assert record_of(system, reply.headers[REQUEST_ID_HEADER[route]])["status_code"] == 200


def deep_json_text(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("levels", [200, 300, 1000])
def test_deep_upstream_replies_leave_records_and_metering_goes_on(system, fake_upstream, levels):
    """One deep upstream reply per route and kind (the OpenAI route passes it through; the
    Anthropic route cannot convert deep tool arguments: a 502 that keeps the usage)."""
    arguments = deep_json_text(levels)
    call = {"id": "call_1", "type": "function", "function": {"name": "t", "arguments": arguments}}
    answer = completion("m")
    answer["choices"][0].update(
        message={"role": "assistant", "content": None, "tool_calls": [call]},
        finish_reason="tool_calls",
    )
    deep_reply = '{"id":"x","model":"m","usage":{"prompt_tokens":3},"deep":' + arguments + "}"
    streamed_call = {"index": 0, **call}
    fake_upstream.script(
        {"body": deep_reply, "content_type": "application/json"},
        {"json": answer},
        {
            "sse": [
                chunk("m", {"role": "assistant", "tool_calls": [streamed_call]}),
                chunk("m", {}, "tool_calls"),
                {**chunk("m", {}), "choices": [], "usage": USAGE},
            ]
        },
    )
    openai = post(system.url, ROUTES[0], body_for(ROUTES[0]))
    buffered = post(system.url, ROUTES[1], body_for(ROUTES[1]))
    streamed = post(system.url, ROUTES[1], body_for(ROUTES[1], stream=True))
    assert openai.status_code == 200 and openai.content == deep_reply.encode()
    if levels >= 255:  # orjson cannot write the tool input object: the reply cannot be given
        assert_error_shape(ROUTES[1], buffered, 502)
    else:
        assert buffered.status_code == 200
    assert streamed.status_code == 200 and b"event: message_stop" in streamed.content
    for reply, route in ((openai, ROUTES[0]), (buffered, ROUTES[1]), (streamed, ROUTES[1])):
        record = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])
        assert record["status_code"] == reply.status_code
        assert record["usage"]["prompt_tokens"] in (3, USAGE["prompt_tokens"])
    after = post(system.url, ROUTES[0], body_for(ROUTES[0]))
    assert record_of(system, after.headers["x-request-id"])["usage"] == {
        **USAGE,
        "cached_tokens": 0,
    }


@pytest.mark.parametrize("model_depth", [1, 50, 100])
def test_a_model_that_is_not_a_string_is_never_recorded_as_one(system, fake_upstream, model_depth):
    """The OpenAI route records the client's model when the upstream refuses the request."""
    fake_upstream.script({"status": 400, "json": {"error": {"message": "bad model"}}})
    reply = post(system.url, ROUTES[0], body_for(ROUTES[0], model=nest(model_depth)))
    assert reply.status_code == 400
    record = record_of(system, reply.headers["x-request-id"])
    assert record["model"] is None and record["error"] == "bad model"
    ready = httpx.get(system.url + "/readyz").json()
    assert ready["ready"] and ready["tasks"]["publisher"]["failures"] == 0


HUGE_COUNTS = [
    '{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}',
    '{"prompt_tokens":99999999999999999999999,"completion_tokens":1,"total_tokens":1e30}',
]


@pytest.mark.parametrize("usage", HUGE_COUNTS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_usage_counts_past_64_bits_are_clamped(system, fake_upstream, usage, route, stream):
    reply_text = orjson.dumps(completion("m")).decode().replace(orjson.dumps(USAGE).decode(), usage)
    if stream:
        content = orjson.dumps(chunk("m", {"role": "assistant", "content": "ok"})).decode()
        last = orjson.dumps(chunk("m", {}, "stop")).decode()
        fake_upstream.script({"sse": [content, last, '{"choices":[],"usage":' + usage + "}"]})
    else:
        fake_upstream.script({"body": reply_text, "content_type": "application/json"})
    reply = post(system.proxy_urls[1], route, body_for(route, stream=stream), UNLIMITED_KEY)
    assert reply.status_code == 200
    if route == "/v1/messages" and not stream:
        assert reply.json()["usage"]["input_tokens"] <= MAX_TOKEN_COUNT
    record = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])
    assert record["usage"]["prompt_tokens"] == MAX_TOKEN_COUNT
    assert record["usage"]["total_tokens"] == MAX_TOKEN_COUNT
    after = post(system.proxy_urls[1], route, body_for(route), UNLIMITED_KEY)
    assert record_of(system, after.headers[REQUEST_ID_HEADER[route]])["status_code"] == 200
    assert httpx.get(system.proxy_urls[1] + "/readyz").json()["ready"]


def quota_used(system: System, key_id: str, user_id: str) -> int:
    daily = limit_keys(key_id, user_id, datetime.datetime.now(datetime.UTC))[2]
    client = redis.Redis.from_url(system.env["REDIS_URL"])
    try:
        return int(client.get(daily) or 0)
    finally:
        client.close()


def read_until(reply: httpx.Response, marker: bytes) -> bytes:
    seen = b""
    for part in reply.iter_raw():
        seen += part
        if marker in seen:
            return seen
    raise AssertionError(f"stream ended without {marker!r}: {seen[-300:]!r}")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("parts", "prompt_chars"), [(1, 10), (4, 7_000), (30, 70_000)])
def test_streams_cut_before_their_usage_are_estimated_and_charged(
    system, fake_upstream, route, parts, prompt_chars
):
    """The client closes right after the answer, before the usage chunk (the upstream then
    goes silent): the record carries an estimate, marked so, and the key is charged it."""
    words = [f"w{i:04d} " for i in range(parts)]
    chunks = [chunk("m", {"role": "assistant", "content": ""})]
    chunks += [chunk("m", {"content": word}) for word in words]
    chunks.append(chunk("m", {}, "stop"))
    fake_upstream.script({"sse": chunks, "hang": True})
    body = body_for(route, stream=True, text="p" * prompt_chars)
    headers = {"x-api-key": KEY}
    with httpx.stream("POST", system.url + route, json=body, headers=headers) as reply:
        request_id = reply.headers[REQUEST_ID_HEADER[route]]
        read_until(reply, words[-1].strip().encode())
    record = record_of(system, request_id)
    usage = record["usage"]
    assert record["status_code"] == 499 and usage["estimated"] is True
    assert usage["prompt_tokens"] >= prompt_chars / 3.5
    assert usage["completion_tokens"] >= len("".join(words)) / 3.5 > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    key_id, user = record["key_id"], record["user_id"]
    wait_until(lambda: quota_used(system, key_id, user) >= usage["total_tokens"], 5, what="charged")


@pytest.mark.parametrize("route", ROUTES)
def test_replies_without_usage_are_estimated(system, fake_upstream, route):
    answer = completion("m", "x" * 700)
    del answer["usage"]
    fake_upstream.script({"json": answer})
    reply = post(system.url, route, body_for(route, text="q" * 3500))
    assert reply.status_code == 200
    usage = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])["usage"]
    assert usage["estimated"] is True and usage["prompt_tokens"] >= 1000
    assert usage["completion_tokens"] >= 200


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", ["true", 1, 0, "false", [], {}, "yes"])
def test_a_stream_flag_that_is_not_a_boolean_is_refused(system, fake_upstream, route, value):
    reply = post(system.url, route, {**body_for(route), "stream": value})
    assert_error_shape(route, reply, 400)
    assert "stream" in reply.text
    assert record_of(system, reply.headers[REQUEST_ID_HEADER[route]])["status_code"] == 400
    assert fake_upstream.received() == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("sent_bytes", [0, 100, 4_000])
def test_a_client_gone_mid_body_leaves_a_record(system, route, sent_bytes):
    port = int(system.url.rsplit(":", 1)[1])
    before = len(system.events())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (
            f"POST {route} HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"{" + b" " * max(sent_bytes - 1, 0))
    events = system.wait_events(before + 1)
    record = events[-1]
    assert record["status_code"] == 499 and "body was complete" in record["error"]


@pytest.mark.parametrize("status", [400, 402, 429, 500, 503])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("stream", [False, True])
def test_the_upstream_credential_never_reaches_a_client_or_a_record(
    system, secret_url, fake_upstream, status, route, stream
):
    url = secret_url
    quoted = {"error": {"message": "Incorrect API key provided: {credential}", "code": "x"}}
    fake_upstream.script(
        {"status": status, "json": quoted, "headers": {"x-request-id": "{credential}"}},
        {"status": status, "body": "<p>key {credential}</p>", "content_type": "text/html"},
        {"sse": [chunk("m", {"content": "the key is {credential}."}), chunk("m", {}, "stop")]},
    )
    replies = [post(url, route, body_for(route, stream=stream)) for _ in range(2)]
    replies.append(post(url, route, body_for(route, stream=True)))
    for reply in replies:
        visible = reply.text + str(reply.headers)
        assert UPSTREAM_SECRET not in visible and "sk-upstream" not in visible
        record = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])
        assert UPSTREAM_SECRET not in orjson.dumps(record).decode()
    assert "redacted credential" in replies[2].text
    assert all(r.status_code >= 400 for r in replies[:2])


def test_a_forwarded_client_key_is_never_echoed(system, fake_upstream):
    """Without UPSTREAM_API_KEY the client's key goes upstream, and comes back quoted."""
    fake_upstream.script(
        {"status": 401, "json": {"error": {"message": "bad key {credential}"}}},
        {"status": 400, "body": "key={credential}", "content_type": "text/plain"},
    )
    for route in ROUTES:
        reply = post(system.url, route, body_for(route))
        assert KEY not in reply.text
        record = record_of(system, reply.headers[REQUEST_ID_HEADER[route]])
        assert KEY not in orjson.dumps(record).decode()


@pytest.mark.parametrize("route", ROUTES)
def test_requests_cut_by_a_shutdown_are_recorded(system, fake_upstream, route):
    """Non-stream requests still waiting on the upstream when the grace period ends."""
    port = free_port()
    env = {**system.env, "SHUTDOWN_GRACE_SECONDS": "1"}
    proxy = proxy_process(f"proxy-cut-{route.count('/')}", port, env, system.root).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz", proxy)
    fake_upstream.script({"respond_after": 6, "json": completion("m")})
    before = len(system.events())
    with httpx.Client() as client:
        pending = client.build_request(
            "POST", url + route, json=body_for(route), headers={"x-api-key": KEY}, timeout=20
        )
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(r=_send(client, pending)))
        thread.start()
        wait_until(lambda: len(fake_upstream.received()) == 1, 5, what="request upstream")
        proxy.signal(signal.SIGTERM)
        assert proxy.wait(15) == 0
        thread.join(20)
    record = system.wait_events(before + 1)[-1]
    assert record["status_code"] == 503 and "request cut" in record["error"]


def _send(client: httpx.Client, request: httpx.Request) -> Any:
    try:
        return client.send(request)
    except httpx.HTTPError as error:
        return error


def test_no_secret_in_any_record_or_log_and_no_record_twice(system):
    """Runs last: nothing the module did wrote a credential anywhere or a request twice."""
    ids = Counter(event["request_id"] for event in system.events())
    assert ids and ids.most_common(1)[0][1] == 1
    text = system.events_path.read_text() + system.logs()
    assert UPSTREAM_SECRET not in text and KEY not in text and UNLIMITED_KEY not in text
