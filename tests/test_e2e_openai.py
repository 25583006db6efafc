"""End to end through real processes: two proxies, a logger, Redis, the fake upstream, and the
official openai SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fake_upstream import REPLY_TEXT, USAGE
from tests.processes import ADMIN_TOKEN, free_port
from tests.system import System, running_system


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("e2e-openai")
    with running_system(redis_url, fake_upstream_url, root, 2) as system:
        yield system


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_sdk_non_streaming_and_streaming_through_both_replicas(system: System, fake_upstream):
    before = len(system.events())
    assert system.upsert("bsk-alice-000001", "alice").status_code == 200
    for url in system.proxy_urls:
        client = sdk(url, "bsk-alice-000001")
        reply = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "Hi"}]
        )
        assert reply.choices[0].message.content == REPLY_TEXT
        assert reply.usage.total_tokens == USAGE["total_tokens"]
        stream = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY_TEXT
        assert all(c.choices for c in chunks), "usage-only chunk leaked to a client not asking"
    events = system.wait_events(before + 4)[before:]
    assert {e["user_id"] for e in events} == {"alice"}
    assert all(e["usage"]["total_tokens"] == USAGE["total_tokens"] for e in events)
    assert all(e["status_code"] == 200 and e["error"] is None for e in events)
    upstream_bodies = [r["body"] for r in fake_upstream.received()]
    streamed = [b for b in upstream_bodies if b.get("stream")]
    assert all(b["stream_options"] == {"include_usage": True} for b in streamed)


def test_stream_usage_chunk_kept_when_client_asks(system: System):
    system.upsert("bsk-bob-00000001", "bob")
    stream = sdk(system.url, "bsk-bob-00000001").chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == USAGE["total_tokens"]


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_key_upserted_on_a_works_on_b_and_deactivated_on_b_refused_on_a_within_1s(
    system: System,
):
    a, b = system.proxy_urls
    assert system.upsert("bsk-carol-0000001", "carol", url=a).status_code == 200
    sdk(b, "bsk-carol-0000001").chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert system.upsert("bsk-carol-0000001", "carol", url=b, active=False).status_code == 200
    started = time.monotonic()
    headers = {"authorization": "Bearer bsk-carol-0000001"}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    while httpx.post(a + "/v1/chat/completions", json=body, headers=headers).status_code != 401:
        assert time.monotonic() - started < 1.0, "deactivation not in force on A within 1 s"
        time.sleep(0.01)


def chat(
    url: str, key: str | None, *, stream: bool = False, headers: dict | None = None, **body
) -> httpx.Response:
    sent = {"authorization": f"Bearer {key}"} if key else {}
    payload = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
        **body,
    }
    return httpx.post(
        url + "/v1/chat/completions", json=payload, headers={**sent, **(headers or {})}, timeout=20
    )


def test_n_requests_survive_a_logger_sigkill_exactly_once(system: System):
    """Logger killed mid-run and restarted: still exactly N lines, no duplicate request_id,
    including events published while it was down."""
    system.upsert("bsk-dave-00000001", "dave")
    before = len(system.events())
    total = 60
    for i in range(total):
        if i == 20:
            system.logger.kill()
        if i == 40:
            system.start_logger()
        url = system.proxy_urls[i % 2]
        assert chat(url, "bsk-dave-00000001", stream=i % 3 == 0).status_code == 200
    events = system.wait_events(before + total, timeout=20)[before:]
    ids = [e["request_id"] for e in events]
    assert len(set(ids)) == total
    assert all(e["usage"] == {**USAGE, "cached_tokens": 0} for e in events)


def test_hand_edit_of_keys_json_takes_effect(system: System):
    import orjson

    keys = orjson.loads(system.keys_path.read_bytes())
    keys["keys"].append({"api_key": "bsk-by-hand-000001", "user_id": "erin", "active": True})
    system.keys_path.write_bytes(orjson.dumps(keys))
    started = time.monotonic()
    while chat(system.proxy_urls[1], "bsk-by-hand-000001").status_code != 200:
        assert time.monotonic() - started < 5, "hand-added key not in force within 5 s"
        time.sleep(0.05)
    keys["keys"] = [k for k in keys["keys"] if k.get("user_id") != "erin"]
    system.keys_path.write_bytes(orjson.dumps(keys))
    while chat(system.proxy_urls[0], "bsk-by-hand-000001").status_code != 401:
        assert time.monotonic() - started < 10, "hand-removed key still accepted"
        time.sleep(0.05)


def test_keys_json_holds_hashes_not_keys(system: System):
    system.upsert("bsk-frank-0000001", "frank", team="blue")
    text = system.keys_path.read_text()
    assert "bsk-frank-0000001" not in text
    entry = next(k for k in __import__("json").loads(text)["keys"] if k["user_id"] == "frank")
    assert entry["team"] == "blue" and len(entry["api_key_sha256"]) == 64


def test_auth_failures_are_openai_shaped_401_and_not_metered(system: System):
    before = len(system.events())
    system.upsert("bsk-gina-00000001", "gina", active=False)
    for key in (None, "bsk-nobody-000000", "bsk-gina-00000001"):
        reply = chat(system.url, key)
        assert reply.status_code == 401
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "code"} and error["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(system.url, "bsk-nobody-000000").chat.completions.create(model="m", messages=[])
    time.sleep(0.3)
    assert len(system.events()) == before


def test_x_api_key_header_and_client_app(system: System):
    system.upsert("bsk-hank-00000001", "hank")
    before = len(system.events())
    assert (
        chat(
            system.url, None, headers={"x-api-key": "bsk-hank-00000001", "x-client-app": "my-tool"}
        ).status_code
        == 200
    )
    assert (
        chat(
            system.url,
            "bsk-hank-00000001",
            headers={
                "user-agent": "claude-cli/2.1.0 (external, cli)",
                "x-claude-code-session-id": "0b9c1c1e-6d1f-4c52-9a55-3c0f6f1f2a10",
            },
        ).status_code
        == 200
    )
    sdk(system.url, "bsk-hank-00000001").chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    events = system.wait_events(before + 3)[before:]
    assert [e["client_app"] for e in events] == ["my-tool", "claude-code", "openai-python-sdk"]


def test_upstream_error_status_and_body_come_back_unchanged(system: System, fake_upstream):
    system.upsert("bsk-ivy-000000001", "ivy")
    before = len(system.events())
    error = {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limit"}}
    fake_upstream.script({"status": 429, "json": error}, {"status": 429, "json": error})
    for stream in (False, True):
        reply = chat(system.url, "bsk-ivy-000000001", stream=stream)
        assert reply.status_code == 429 and reply.json() == error
    events = system.wait_events(before + 2)[before:]
    assert all(e["status_code"] == 429 and e["error"] == "slow down" for e in events)


def test_invalid_json_body_is_a_400_and_still_metered(system: System):
    system.upsert("bsk-jack-00000001", "jack")
    before = len(system.events())
    reply = httpx.post(
        system.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"authorization": "Bearer bsk-jack-00000001"},
    )
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    [event] = system.wait_events(before + 1)[before:]
    assert event["status_code"] == 400 and event["prompt"] == "{not json"


def test_mid_stream_upstream_drop_ends_with_an_error_event(system: System, fake_upstream):
    from tests.fake_upstream import chunk

    system.upsert("bsk-kate-00000001", "kate")
    before = len(system.events())
    parts = [chunk("m", {"content": f"part{i} "}) for i in range(5)]
    fake_upstream.script({"sse": parts, "abort_after": 2})
    client = sdk(system.url, "bsk-kate-00000001")
    received = []
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(model="m", messages=[], stream=True):
            received.append(c.choices[0].delta.content)
    assert received == ["part0 ", "part1 "]
    [event] = system.wait_events(before + 1)[before:]
    assert "mid-stream" in event["error"]
    assert event["response"]["assembled"]["choices"][0]["message"]["content"] == "part0 part1 "


def test_unreachable_and_silent_upstream_give_502_and_504(system: System, fake_upstream):
    dead = system.start_proxy(UPSTREAM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    system.upsert("bsk-leo-000000001", "leo")
    reply = chat(dead, "bsk-leo-000000001")
    assert reply.status_code == 502 and reply.json()["error"]["type"] == "api_error"
    slow = system.start_proxy(UPSTREAM_READ_TIMEOUT="0.3")
    before = len(system.events())
    fake_upstream.script({"json": {}, "respond_after": 2}, {"sse": [], "respond_after": 2})
    for stream in (False, True):
        reply = chat(slow, "bsk-leo-000000001", stream=stream)
        assert reply.status_code == 504 and "timed out" in reply.json()["error"]["message"]
    fake_upstream.script({"sse": [{"choices": []}], "initial_delay": 2})
    reply = chat(slow, "bsk-leo-000000001", stream=True)
    assert reply.status_code == 200 and '"upstream timed out mid-stream"' in reply.text
    events = system.wait_events(before + 3)[before:]
    assert [e["status_code"] for e in events] == [504, 504, 200]
    assert all("timed out" in e["error"] for e in events)


def test_admin_auth_and_bad_bodies(system: System):
    url = system.url + "/admin/keys/upsert"
    body = {"api_key": "bsk-mona-00000001", "user_id": "mona"}
    assert httpx.post(url, json=body).status_code == 403
    assert httpx.post(url, json=body, headers={"x-admin-token": "wrong"}).status_code == 403
    headers = {"x-admin-token": ADMIN_TOKEN}
    reply = httpx.post(url, json={"user_id": "mona"}, headers=headers)
    assert reply.status_code == 400 and "api_key" in reply.json()["error"]["message"]
    reply = httpx.post(url, content=b"nope", headers=headers)
    assert reply.status_code == 400


def test_no_client_key_or_admin_token_in_events_or_logs(system: System):
    secret = "bsk-secret-key-do-not-log-0001"
    system.upsert(secret, "nina")
    chat(system.url, secret)
    chat(system.url, secret, stream=True)
    time.sleep(0.5)
    everything = system.events_path.read_text() + system.keys_path.read_text() + system.logs()
    assert secret not in everything and ADMIN_TOKEN not in everything


def test_overhead_header_and_metrics(system: System):
    system.upsert("bsk-olive-0000001", "olive")
    for stream in (False, True):
        reply = chat(system.url, "bsk-olive-0000001", stream=stream)
        assert 0 < float(reply.headers["x-b23-overhead-ms"]) < 1000
        assert reply.headers["x-request-id"].startswith("req_")
    metrics = httpx.get(system.url + "/metrics").text
    count = next(
        line
        for line in metrics.splitlines()
        if line.startswith('b23_proxy_overhead_seconds_count{protocol="openai_chat"}')
    )
    assert float(count.split()[-1]) >= 2
    assert "b23_usage_events_dropped_total 0.0" in metrics
