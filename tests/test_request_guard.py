"""The guard every metered request runs in, driven by faults no input is known to cause: a
converter or stream translator that raises. The proxy app runs in-process (with its lifespan:
key sync and publisher) on a real Redis against the fake upstream; records are read from the
stream the logger would consume."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from proxy_service.app import create_app
from proxy_service.convert.anthropic import stream as anthropic_stream
from proxy_service.convert.openai import stream_tap as openai_stream
from proxy_service.hot_routes import HotRoutes
from proxy_service.routes import anthropic
from shared import redis_names
from shared.keys import KeyRecord, hash_api_key
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN

KEY = "bsk-request-guard-0001"
LIMITED_KEY = "bsk-request-guard-rpm2"
MAX_VALUES = 1000
BODIES = {
    "/v1/messages": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "x"}]},
}


@pytest.fixture
async def client(redis_url, redis_client, fake_upstream_url) -> AsyncIterator[httpx.AsyncClient]:
    for record in (
        KeyRecord(key_hash=hash_api_key(KEY), user_id="guard"),
        KeyRecord(key_hash=hash_api_key(LIMITED_KEY), user_id="limited", rpm_limit=2),
    ):
        redis_client.hset(redis_names.KEYS_HASH, record.key_hash, record.to_redis())
    redis_client.set(redis_names.KEYS_LOADED, 1)
    settings = Settings(
        _env_file=None,
        admin_token=ADMIN_TOKEN,
        redis_url=redis_url,
        upstream_base_url=fake_upstream_url,
        max_json_values=MAX_VALUES,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=HotRoutes(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            client.headers["x-api-key"] = KEY
            yield client


async def records(redis_url: str) -> list[dict]:
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange(redis_names.EVENTS_STREAM)
    finally:
        await redis.aclose()
    return [orjson.loads(fields[b"e"]) for _, fields in entries]


async def one_record(redis_url: str) -> dict:
    (record,) = await wait_records(redis_url, 1)
    return record


async def wait_records(redis_url: str, count: int) -> list[dict]:
    found: list[dict] = []
    for _ in range(200):
        found = await records(redis_url)
        if len(found) >= count:
            break
        await asyncio.sleep(0.02)
    assert len(found) == count, found
    return found


def broken(*args, **kwargs):
    raise TypeError("unsupported operand " + "x" * 5000)


@pytest.mark.parametrize("fault", [TypeError, RecursionError, KeyError])
async def test_a_converter_that_raises_gives_a_400_a_record_and_one_short_line(
    client, redis_url, monkeypatch, caplog, fault
):
    def failing(*args, **kwargs):
        raise fault("converter bug " + "x" * 5000)

    monkeypatch.setattr(anthropic, "anthropic_to_openai_request", failing)
    with caplog.at_level(logging.ERROR):
        reply = await client.post("/v1/messages", json=BODIES["/v1/messages"])
    assert reply.status_code == 400 and reply.json()["type"] == "error"
    record = await one_record(redis_url)
    assert record["status_code"] == 400 and fault.__name__ in record["error"]
    assert record["request_id"] == reply.headers["request-id"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and len(lines[0]) < 500 and "Traceback" not in caplog.text


async def test_any_other_failure_is_a_500_with_a_record(client, redis_url, monkeypatch, caplog):
    monkeypatch.setattr(anthropic, "openai_to_anthropic_message", broken)
    monkeypatch.setattr(anthropic, "random_hex", broken)  # before the upstream is called
    reply = await client.post("/v1/messages", json=BODIES["/v1/messages"])
    assert reply.status_code == 500 and reply.json()["error"]["type"] == "api_error"
    record = await one_record(redis_url)
    assert record["status_code"] == 500 and "TypeError" in record["error"]
    assert len(caplog.text) < 2000


async def test_a_translator_failing_mid_stream_ends_with_an_error_event(
    client, redis_url, monkeypatch
):
    def fails(self, chunk):
        raise TypeError("translator bug")

    monkeypatch.setattr(anthropic_stream.AnthropicStreamTranslator, "feed", fails)
    body = {**BODIES["/v1/messages"], "stream": True}
    reply = await client.post("/v1/messages", json=body)
    assert reply.status_code == 200
    names = [frame.split("\n")[0] for frame in reply.text.split("\n\n") if frame]
    assert names == ["event: message_start", "event: ping", "event: error"]
    record = await one_record(redis_url)
    assert record["status_code"] == 500 and "TypeError: translator bug" in record["error"]
    assert record["response_stream"] == reply.text


async def test_a_stream_tap_failing_mid_stream_ends_with_an_error_event(
    client, redis_url, monkeypatch
):
    monkeypatch.setattr(openai_stream.OpenAIStreamTap, "feed", broken)
    body = {**BODIES["/v1/chat/completions"], "stream": True}
    reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    error = orjson.loads(reply.text.removeprefix("data: ").strip())["error"]
    assert error["code"] == "internal_error" and "x" * 100 not in error["message"]
    record = await one_record(redis_url)
    assert record["status_code"] == 500 and "TypeError" in record["error"]
    assert len(record["error"]) < 500


async def test_metering_itself_failing_still_leaves_a_record(client, redis_url, monkeypatch):
    from proxy_service.routes import openai

    monkeypatch.setattr(openai, "_described_reply", broken)
    reply = await client.post("/v1/chat/completions", json=BODIES["/v1/chat/completions"])
    assert reply.status_code == 200
    record = await one_record(redis_url)
    assert record["status_code"] == 200 and "metering failed: TypeError" in record["error"]


# --- body bounds and count_tokens, through the same guard ------------------------------------

BOUNDED_ROUTES = {
    "/v1/messages": ("anthropic_messages", "anthropic"),
    "/v1/messages/count_tokens": ("anthropic_count_tokens", "anthropic"),
    "/v1/chat/completions": ("openai_chat", "openai"),
    "/v1/embeddings": ("openai_embeddings", "openai"),
    "/v1/responses": ("openai_responses", "openai"),
}


@pytest.mark.parametrize("route", BOUNDED_ROUTES)
@pytest.mark.parametrize("extra", [[0] * MAX_VALUES, [{}] * MAX_VALUES, [[{"a": [None]}]] * 400])
async def test_bodies_with_too_many_values_get_a_400_in_the_route_shape_and_a_record(
    client, redis_url, fake_upstream, route: str, extra: list
):
    protocol, shape = BOUNDED_ROUTES[route]
    body = {**BODIES["/v1/messages"], "input": "x", "extra": extra}
    reply = await client.post(route, content=orjson.dumps(body))
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert f"more than {MAX_VALUES} JSON values" in error["message"]
    if shape == "anthropic":
        assert reply.json()["type"] == "error" and error["type"] == "invalid_request_error"
    else:
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    record = await one_record(redis_url)
    assert record["protocol"] == protocol and record["status_code"] == 400
    assert fake_upstream.received() == []


async def test_a_body_just_within_the_value_bound_is_served(client, redis_url):
    body = {**BODIES["/v1/messages"], "metadata": {"x": [0] * (MAX_VALUES - 12)}}
    reply = await client.post("/v1/messages/count_tokens", content=orjson.dumps(body))
    assert reply.status_code == 200


async def test_count_tokens_leaves_one_record_with_no_usage(client, redis_url, fake_upstream):
    body = {**BODIES["/v1/messages"], "model": "claude-haiku-4-6"}
    body.pop("max_tokens")  # count_tokens takes none
    reply = await client.post("/v1/messages/count_tokens", json=body)
    assert reply.status_code == 200
    record = await one_record(redis_url)
    assert record["protocol"] == "anthropic_count_tokens" and record["status_code"] == 200
    assert record["request_id"] == reply.headers["request-id"]
    assert record["usage"] is None and record["model"] == "claude-haiku-4-6"
    assert record["response"] == reply.json() and reply.json()["input_tokens"] > 0
    assert record["prompt"] == body
    assert fake_upstream.received() == []


async def test_count_tokens_is_admitted_by_the_key_limits(client, redis_url):
    body = BODIES["/v1/messages"]
    headers = {"x-api-key": LIMITED_KEY}
    replies = [
        await client.post("/v1/messages/count_tokens", json=body, headers=headers) for _ in range(3)
    ]
    assert [reply.status_code for reply in replies] == [200, 200, 429]
    assert replies[2].json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in replies[2].headers
    found = await wait_records(redis_url, 3)
    assert sorted(r["status_code"] for r in found) == [200, 200, 429]
    assert {r["user_id"] for r in found} == {"limited"}


async def test_count_tokens_refuses_what_messages_refuses(client, redis_url):
    reply = await client.post("/v1/messages/count_tokens", json={"model": "m", "messages": "no"})
    assert reply.status_code == 400 and reply.json()["type"] == "error"
    assert (await one_record(redis_url))["status_code"] == 400
