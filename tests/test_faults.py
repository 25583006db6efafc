"""Fault injection with real processes: Redis, a logger, two proxies, the fake upstream.

Each scenario sends a fixed number of requests while a fault is injected, then checks that every
request got a well-formed answer or error, that events.jsonl holds exactly one line per
authenticated request, and that no request_id appears twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_upstream import chunk
from tests.load import Background, run_load
from tests.processes import RedisServer, free_port, proxy_process, wait_http, wait_until
from tests.system import System

KEY = "bsk-fault-injection-0001"
BOTH = ("openai", "anthropic")


def call(url: str, key: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


@pytest.fixture
def system(private_redis, fake_upstream_url, tmp_path) -> Iterator[System]:
    system = System(private_redis.url, fake_upstream_url, tmp_path / "system")
    system.start_logger()
    system.start_proxy()
    system.start_proxy()
    assert system.upsert(KEY, "fault-tester").status_code == 200
    yield system
    system.stop()


def assert_exactly_once(system: System, outcomes, timeout: float = 20) -> list[dict]:
    bad = [o for o in outcomes if not o.well_formed]
    assert not bad, f"{len(bad)} malformed answers, e.g. {bad[:3]}"
    events = system.wait_events(len(outcomes), timeout=timeout)
    duplicates = [rid for rid, n in Counter(e["request_id"] for e in events).items() if n > 1]
    client_errors = sum(not o.complete for o in outcomes)
    print(
        f"\nFAULT-REPORT | {len(outcomes)} sent | {len(events)} recorded | "
        f"{len(duplicates)} duplicates | {client_errors} client-visible errors"
    )
    assert not duplicates
    return events


def test_redis_down_10s_under_load(system: System, private_redis: RedisServer):
    """Known keys keep being served from memory; events are buffered and published when Redis
    returns empty; the key set is restored from keys.json without manual steps."""
    load = Background(system.proxy_urls, KEY, 80, 5.0, BOTH)
    time.sleep(2)
    private_redis.stop()
    time.sleep(0.5)
    ready = httpx.get(system.url + "/readyz").json()
    assert ready["ready"] is False and ready["redis"] is False
    assert call(system.url, "bsk-never-seen-0000").status_code == 401
    reply = system.upsert("bsk-during-outage-01", "nobody")
    assert reply.status_code == 503 and "Redis" in reply.json()["error"]["message"]
    time.sleep(9.5)
    private_redis.start()
    outcomes = load.join()
    assert all(o.complete for o in outcomes), [o for o in outcomes if not o.complete][:3]
    assert_exactly_once(system, outcomes)
    wait_http(system.url + "/readyz", system.proxies[0])


def test_redis_restart_empty_while_the_logger_is_down_loses_nothing(
    system: System, private_redis: RedisServer
):
    """Events Redis took but lost before any logger wrote them are published again by the
    proxies that sent them (they keep each event until the logger has deleted its entry)."""
    system.logger.kill()
    outcomes = run_load(system.proxy_urls, KEY, 40, 10.0, BOTH)
    private_redis.stop()
    private_redis.start()
    system.start_logger()
    wait_http(system.url + "/readyz", system.proxies[0])
    outcomes += run_load(system.proxy_urls, KEY, 4, 2.0, BOTH)  # each replica flushes again
    assert all(o.complete for o in outcomes)
    assert_exactly_once(system, outcomes)


def test_logger_sigkill_twice_under_load(system: System):
    load = Background(system.proxy_urls, KEY, 90, 10.0, BOTH)
    for _ in range(2):
        time.sleep(2.5)
        system.logger.kill()
        time.sleep(1.0)
        system.start_logger()
    outcomes = load.join()
    assert all(o.complete for o in outcomes)
    assert_exactly_once(system, outcomes)


def test_two_logger_replicas_write_each_event_once(system: System):
    system.start_logger(LOGGER_CONSUMER="logger-2")
    outcomes = run_load(system.proxy_urls, KEY, 60, 30.0, BOTH)
    events = assert_exactly_once(system, outcomes)
    assert all(e["request_id"].startswith("req_") for e in events)


def paced_stream(parts: int, delay: float) -> dict:
    return {"sse": [chunk("m", {"content": f"t{i} "}) for i in range(parts)], "delay": delay}


def sigterm_during_streams(system: System, fake_upstream, grace: str, streams: list[dict]):
    """A proxy of its own with SHUTDOWN_GRACE_SECONDS=grace gets SIGTERM once all `streams`
    are in flight; returns its exit status and the clients' outcomes."""
    port = free_port()
    env = {**system.env, "SHUTDOWN_GRACE_SECONDS": grace}
    proxy = proxy_process(f"proxy-grace-{grace}", port, env, system.root).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz", proxy)
    fake_upstream.script(*streams)
    load = Background([url], KEY, len(streams), 20.0, model="paced", streams=(True,))
    wait_until(lambda: fake_upstream.open_streams() == len(streams), 5, what="streams in flight")
    proxy.signal(signal.SIGTERM)
    outcomes = load.join()
    return proxy.wait(15), outcomes


def test_sigterm_lets_inflight_streams_finish_then_exits_0(system: System, fake_upstream):
    status, outcomes = sigterm_during_streams(
        system, fake_upstream, "10", [paced_stream(10, 0.15) for _ in range(4)]
    )
    assert status == 0
    assert [o.complete for o in outcomes] == [True] * 4
    events = assert_exactly_once(system, outcomes)
    assert all(e["error"] is None for e in events)


def test_sigterm_grace_period_over_cuts_streams_and_records_it(system: System, fake_upstream):
    status, outcomes = sigterm_during_streams(
        system, fake_upstream, "1", [paced_stream(40, 0.1) for _ in range(2)]
    )
    assert status == 0
    assert not any(o.complete for o in outcomes)
    events = system.wait_events(2)
    assert all(e["status_code"] == 503 and "shutdown" in e["error"] for e in events)


def test_client_disconnect_cancels_the_upstream_and_is_recorded(system: System, fake_upstream):
    fake_upstream.script({**paced_stream(100, 0.1)})
    body = {"model": "m", "messages": [], "stream": True}
    with httpx.stream(
        "POST",
        system.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}"},
    ) as reply:
        next(reply.iter_raw())
    wait_until(lambda: fake_upstream.open_streams() == 0, 3, what="upstream stream cancelled")
    [event] = system.wait_events(1)
    assert event["status_code"] == 499 and "disconnected" in event["error"]
    assert "Traceback" not in system.logs()  # a client leaving is not a server error
