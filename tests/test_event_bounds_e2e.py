"""The usage pipeline's byte bounds with real processes (Redis, a logger, a proxy, the fake
upstream) and request bodies of 100-400 KB: compaction with usage kept, counted drops past the
bound, the stream alarm and the stop-publishing policy, and exactly one record per request
once Redis or the logger is back. Bounds are set small so few requests fill them.

Events carry the whole prompt only with FULL_TRACE_LOGGING=true (else the proxy cuts it to about
MAX_LOG_FIELD_SIZE before publishing), so that is how these systems run, except the last test,
which shows the cut keeps a Redis outage's events small."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from shared import redis_names
from tests.processes import RedisServer, wait_until
from tests.system import System

KEY = "bsk-event-bounds-0001"
SIZES = (100_000, 250_000, 400_000, 180_000)
TOKENS = 18
"""total_tokens of every fake upstream reply."""


@pytest.fixture
def make_system(private_redis, fake_upstream_url, tmp_path) -> Iterator[Callable[..., System]]:
    systems: list[System] = []

    def make(**settings: str) -> System:
        settings = {"FULL_TRACE_LOGGING": "true", **settings}
        system = System(private_redis.url, fake_upstream_url, tmp_path / "system", **settings)
        systems.append(system)
        system.start_logger()
        system.start_proxy()
        assert system.upsert(KEY, "bounds-tester").status_code == 200
        return system

    yield make
    for system in systems:
        system.stop()


def call(url: str, index: int, body_bytes: int) -> str:
    """One request, alternating OpenAI non-stream and Anthropic stream; its request id."""
    text = "word " * (body_bytes // 5)
    headers = {"authorization": f"Bearer {KEY}"}
    if index % 2 == 0:
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        reply = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    else:
        messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        body = {"model": "m", "max_tokens": 64, "stream": True, "messages": messages}
        reply = httpx.post(url + "/v1/messages", json=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return reply.headers.get("x-request-id") or reply.headers["request-id"]


def send(system: System, count: int, sizes: tuple[int, ...] = SIZES, start: int = 0) -> list[str]:
    return [call(system.url, i, sizes[i % len(sizes)]) for i in range(start, start + count)]


def ready(system: System) -> dict:
    return system.readyz().json()


def records_by_id(system: System, count: int) -> dict[str, dict]:
    events = system.wait_events(count, timeout=30)
    by_id = {event["request_id"]: event for event in events}
    assert len(by_id) == count, "a request_id twice"
    return by_id


def settled_stream_state(system: System) -> str | None:
    """The stream's state once the proxy has published what it could; None before."""
    state = ready(system)
    settled = state["events_pending"] == 0 or state["stream"]["state"] == "full"
    return state["stream"]["state"] if settled else None


def assert_compacted(record: dict, why: str) -> None:
    assert record["compacted"] is True
    assert re.fullmatch(rf"\d{{6}} bytes: {why}", record["prompt"]["omitted"])
    assert record["usage"]["total_tokens"] == TOKENS and record["status_code"] == 200


def test_redis_down_past_the_buffer_bound_compacts_and_loses_nothing(
    make_system, private_redis: RedisServer
):
    system = make_system(EVENT_BUFFER_BYTES=str(1 << 20))
    private_redis.stop()
    ids = send(system, 16)
    state = ready(system)
    assert state["redis"] is False and state["events_pending"] == 16
    assert state["events_dropped"] == 0 and state["events_compacted"]["buffer"] >= 8
    assert state["events_pending_bytes"] <= 1 << 20
    private_redis.start()  # empty: the logger reloads keys.json, the proxy publishes
    records = records_by_id(system, 16)
    assert set(records) == set(ids)
    compacted = [records[i].get("compacted", False) for i in ids]
    assert compacted.count(True) == state["events_compacted"]["buffer"]
    assert compacted == sorted(compacted, reverse=True), "the oldest are the compacted ones"
    for request_id in ids[: compacted.count(True)]:
        assert_compacted(records[request_id], "proxy buffer past EVENT_BUFFER_BYTES")
    newest = records[ids[-1]]
    assert "compacted" not in newest and len(str(newest["prompt"])) > SIZES[0]  # full trace
    metrics = httpx.get(system.url + "/metrics").text
    assert (
        f'b23_usage_events_compacted_total{{where="buffer"}} {compacted.count(True)}.0' in metrics
    )
    assert "b23_usage_events_dropped_total 0.0" in metrics


def test_redis_down_past_the_bound_with_all_compacted_drops_the_oldest_counted(
    make_system, private_redis: RedisServer
):
    system = make_system(EVENT_BUFFER_BYTES=str(1 << 16))
    private_redis.stop()
    ids = send(system, 4) + send(system, 110, sizes=(2_000,), start=4)
    state = ready(system)
    dropped = state["events_dropped"]
    assert dropped > 0 and state["events_pending"] == len(ids) - dropped
    assert state["events_pending_bytes"] <= 1 << 16
    log = system.logs()
    for lost in ids[:dropped]:
        assert f"dropped event {lost}" in log
    private_redis.start()
    records = records_by_id(system, len(ids) - dropped)
    assert set(records) == set(ids[dropped:]), "the oldest were dropped, the rest recorded"
    assert all(r["usage"]["total_tokens"] == TOKENS for r in records.values())
    metrics = httpx.get(system.url + "/metrics").text
    assert f"b23_usage_events_dropped_total {dropped}.0" in metrics


def test_logger_down_the_stream_compacts_then_stops_and_recovers_exactly_once(
    make_system, private_redis: RedisServer
):
    max_entries = 24
    system = make_system(STREAM_COMPACT_BYTES=str(1 << 20), STREAM_MAX_ENTRIES=str(max_entries))
    stream = redis.Redis.from_url(private_redis.url)
    system.logger.kill()
    ids: list[str] = []
    states = []
    while ready(system)["stream"]["state"] != "full":
        assert len(ids) < 3 * max_entries, "the stream never reached STREAM_MAX_ENTRIES"
        ids += send(system, 1, start=len(ids))
        states.append(wait_until(lambda: settled_stream_state(system), 10))
    assert "compacting" in states, "compacting before full"
    length = stream.xlen(redis_names.EVENTS_STREAM)
    assert max_entries <= length <= max_entries + 1
    held = send(system, 6, start=len(ids))
    wait_until(lambda: ready(system)["events_pending"] == len(held), 10)
    assert stream.xlen(redis_names.EVENTS_STREAM) == length, "nothing published while full"
    assert ready(system)["ready"] is True, "a logger behind does not take the proxies out"
    log = system.proxies[0].log()
    assert log.count("publishing usage events compacted") == 1
    assert log.count("keeping usage events in this proxy's buffer") == 1
    system.start_logger()
    records = records_by_id(system, len(ids) + len(held))
    compacted = [records[i].get("compacted", False) for i in ids]
    first = compacted.index(True)
    assert 2 <= first <= 8 and all(compacted[first:]), "full until ~1 MiB, then compacted"
    for request_id in ids[first:]:
        assert_compacted(records[request_id], "Redis stream past STREAM_COMPACT_BYTES")
    for request_id in held:  # waited in the buffer; published in full once the logger read all
        assert "compacted" not in records[request_id]
        assert records[request_id]["usage"]["total_tokens"] == TOKENS
    wait_until(lambda: ready(system)["stream"]["state"] == "ok", 10)
    assert "stream b23:{events}:stream back under its bounds" in system.proxies[0].log()
    stream.close()


def test_without_full_trace_events_carry_a_cut_prompt_and_an_outage_compacts_nothing(
    make_system, private_redis: RedisServer
):
    system = make_system(FULL_TRACE_LOGGING="false", EVENT_BUFFER_BYTES=str(1 << 20))
    private_redis.stop()
    ids = send(system, 16)  # 3.7 MB of bodies: with whole prompts, far past the 1 MiB bound
    state = ready(system)
    assert state["events_pending"] == 16 and state["events_compacted"]["buffer"] == 0
    assert state["events_pending_bytes"] < 16 * 16_000
    private_redis.start()
    records = records_by_id(system, 16)
    assert set(records) == set(ids)
    for record in records.values():
        assert "compacted" not in record and record["usage"]["total_tokens"] == TOKENS
        assert len(str(record["prompt"])) < 4000 and "truncated" in str(record["prompt"])
