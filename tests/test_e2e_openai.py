"""End to end through real processes: two proxies, a logger, Redis, the fake upstream, and the
official openai SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fake_upstream import REPLY_TEXT, USAGE
from tests.system import System


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    system = System(redis_url, fake_upstream_url, tmp_path_factory.mktemp("e2e-openai"))
    system.start_logger()
    system.start_proxy()
    system.start_proxy()
    yield system
    system.stop()


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
        model="gpt-test", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == USAGE["total_tokens"]


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
