"""REDIS_MODE=sentinel with real processes: a proxy and a logger on a master, a replica and three
sentinels (tests/redis_sentinel.py, one group per test), the master killed and the replica
promoted by the sentinels while a client sends a request every 20 ms through the proxy.

The guarantee checked after every failover: each request answered 200 is in events.jsonl
exactly once; any other answer is a clear error in the OpenAI shape; the proxy and the logger
recover without a restart (/readyz 200, the logger's health check passes, no traceback in any
log). The lossy failovers cut the replica off first (scale-out.md 2.2): the promoted node then
lacks writes the old master acknowledged (usage events, a key's revocation), and only the
proxy's replay and the logger's reload of keys.json bring them back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from shared.keys import KeyRecord, hash_api_key
from shared.redis_names import EVENTS_STREAM, KEYS_HASH
from tests.load import Outcome, send
from tests.processes import wait_http, wait_until
from tests.redis_sentinel import SentinelGroup
from tests.system import System

KEY = "bsk-sentinel-load-0001"
PACE_SECONDS = 0.02
TRAFFIC = 25
"""Answers the client must have had in each phase (before the fault, while the replica is cut
off, after the recovery): about half a second of traffic each."""
REVOKE_WITHIN = 1.0
"""Probes go on this long (and 2 s more) after the new master answers; none may be accepted:
the proxy keeps its own set until the logger has loaded keys.json into the new node."""


@pytest.fixture
def system(
    sentinel_group: SentinelGroup, fake_upstream_url: str, tmp_path: Path
) -> Iterator[System]:
    """A logger and a proxy in sentinel mode, the load's key created through /admin."""
    system = System(sentinel_group.url, fake_upstream_url, tmp_path / "system")
    try:
        system.start_logger()
        system.start_proxy()
        assert system.upsert(KEY, "sentry").status_code == 200
        yield system
    finally:
        if system.logger is not None and system.logger.alive():
            system.logger.signal(signal.SIGCONT)  # if a test left it stopped
        system.stop()


class PacedClient:
    """One request through the proxy every PACE_SECONDS (the next at once if one took longer),
    streaming and not in turn, from its own thread until `stop()`; every answer kept."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PacedClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            stream = len(self.outcomes) % 2 == 1
            self.outcomes.append(send(self.url, self.key, "openai", stream))
            next_at += PACE_SECONDS
            self._stop.wait(max(next_at - time.monotonic(), 0))

    def wait_for(self, more: int, timeout: float = 30) -> None:
        """`more` answers after those it has now."""
        target = len(self.outcomes) + more
        wait_until(lambda: len(self.outcomes) >= target, timeout, what=f"{more} more answers")

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the client's last request did not end"
        return self.outcomes


@dataclass(frozen=True)
class Tally:
    sent: int
    ok: int
    """Answered 200 with a complete answer."""
    recorded: int
    """Of those, the ones in events.jsonl."""
    lost: int
    duplicated: int
    """request ids in events.jsonl more than once (any request's)."""
    errors: int
    """Clear errors: another status, with an OpenAI-shaped error body."""
    unclear: int
    """Anything else: no answer, a body not in the OpenAI error shape, a 200 cut short."""
    statuses: dict[int, int]

    def line(self, scenario: str, extra: str = "") -> str:
        return (
            f"\nSENTINEL-REPORT {scenario} | {self.sent} sent | {self.ok} answered 200 | "
            f"{self.recorded} recorded | {self.lost} lost | {self.duplicated} duplicated | "
            f"{self.errors} client-visible errors {self.statuses} | {self.unclear} unclear{extra}"
        )


def tally(outcomes: list[Outcome], events: list[dict]) -> Tally:
    written = Counter(event["request_id"] for event in events)
    ok = [o.request_id for o in outcomes if o.status == 200 and o.complete]
    assert None not in ok, "a 200 without x-request-id"
    errors = [o for o in outcomes if o.status not in (0, 200) and o.well_formed]
    return Tally(
        sent=len(outcomes),
        ok=len(ok),
        recorded=sum(rid in written for rid in ok),
        lost=sum(rid not in written for rid in ok),
        duplicated=sum(n > 1 for n in written.values()),
        errors=len(errors),
        unclear=len(outcomes) - len(ok) - len(errors),
        statuses=dict(Counter(o.status for o in outcomes if o.status != 200)),
    )


def master_client(group: SentinelGroup):
    return group.client(group.current_master())


def wait_settled(system: System, group: SentinelGroup, timeout: float = 30) -> None:
    """Nothing more is coming to events.jsonl: the proxy's buffer is empty and the master's
    stream too (the logger deletes an entry only once it is written)."""

    def settled() -> bool:
        if system.readyz().json()["events_pending"]:
            return False
        with master_client(group) as master:
            return master.xlen(EVENTS_STREAM) == 0

    wait_until(settled, timeout, interval=0.05, what="the proxy and the stream drained")


def assert_recovered(system: System) -> None:
    """The same proxy and logger processes serve again: /readyz 200 (Redis, the key set,
    publishing, every background task), the logger's own health check, no traceback."""
    wait_http(system.url + "/readyz", system.proxies[0], timeout=30)
    assert all(p.alive() for p in [*system.proxies, *system.loggers]) and len(system.loggers) == 1
    wait_until(lambda: system.logger_check() == 0, 30, interval=0.5, what="logger --check")
    logs = system.logs()
    assert "Traceback" not in logs, logs[max(logs.index("Traceback") - 2000, 0) :][:6000]


def entries_added(client) -> int:
    """XADDs the stream ever took on that node (XINFO STREAM's entries-added, Redis 7)."""
    return client.xinfo_stream(EVENTS_STREAM)["entries-added"]


def chat(url: str, key: str) -> httpx.Response:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_keys_and_metering_work_through_the_sentinels(
    system: System, sentinel_group: SentinelGroup
):
    """A key created through /admin lands on the master the sentinels name; a completion with it
    is answered and recorded once in events.jsonl."""
    secret = "bsk-sentinel-basic-0001"
    assert system.upsert(secret, "basil", team="green").status_code == 200
    with master_client(sentinel_group) as master:
        raw = master.hget(KEYS_HASH, hash_api_key(secret))
    assert raw is not None and KeyRecord.from_redis(hash_api_key(secret), raw).team == "green"
    entry = next(
        k for k in orjson.loads(system.keys_path.read_bytes())["keys"] if k["user_id"] == "basil"
    )
    assert entry["api_key_sha256"] == hash_api_key(secret)

    reply = chat(system.url, secret)
    assert reply.status_code == 200 and reply.json()["choices"]
    request_id = reply.headers["x-request-id"]

    def recorded() -> dict | None:
        return next((e for e in system.events() if e["request_id"] == request_id), None)

    event = wait_until(recorded, 10, what="the completion in events.jsonl")
    assert event["user_id"] == "basil" and event["status_code"] == 200
    assert [e["request_id"] for e in system.events()].count(request_id) == 1
    assert system.readyz().status_code == 200


def test_master_killed_under_load_every_answered_request_recorded_once(
    system: System, sentinel_group: SentinelGroup
):
    """SIGKILL of the master while the client sends every 20 ms; the sentinels promote the
    replica (down after 1 s, vote, promotion). Events buffered in the proxy meanwhile are
    published to the new master; the proxy's requests never wait on Redis."""
    client = PacedClient(system.url, KEY).start()
    try:
        client.wait_for(TRAFFIC)
        killed = time.monotonic()
        old = sentinel_group.kill_master()
        new = sentinel_group.wait_for_failover(old)
        promoted = time.monotonic() - killed
        assert_recovered(system)
        ready = time.monotonic() - killed
        client.wait_for(TRAFFIC)
    finally:
        outcomes = client.stop()
    wait_settled(system, sentinel_group)
    figures = tally(outcomes, system.events())
    print(
        figures.line(
            "master killed", f" | promoted after {promoted:.1f} s, /readyz 200 after {ready:.1f} s"
        )
    )
    assert sentinel_group.role(new) == "master" and new != old
    assert figures.unclear == 0, [o for o in outcomes if o.status != 200 and not o.well_formed][:3]
    assert set(figures.statuses) <= {503}, figures.statuses
    assert figures.lost == 0 and figures.duplicated == 0, figures


def test_lossy_failover_every_answered_request_recorded_once(
    system: System, sentinel_group: SentinelGroup
):
    """The replica cut off, the logger paused (behind: what the master takes now is in no
    file yet), about half a second of requests, the master killed, the replica promoted
    without them. Its epoch marker predates the cut and survives, the run_id does not: the
    proxy must publish again every event the logger has not confirmed, and the logger must
    drop those it already wrote."""
    client = PacedClient(system.url, KEY).start()
    try:
        client.wait_for(TRAFFIC)
        system.logger.signal(signal.SIGSTOP)
        sentinel_group.cut_off_replica()
        client.wait_for(TRAFFIC)
        wait_until(lambda: system.readyz().json()["events_pending"] == 0, 10, what="published")
        with master_client(sentinel_group) as master:
            acknowledged = entries_added(master)
        cut = sentinel_group.kill_master_and_resume_replica()
        with sentinel_group.client(cut.replica) as replica:
            kept = entries_added(replica)
        killed = time.monotonic()
        new = sentinel_group.fail_over(cut)
        promoted = time.monotonic() - killed
        system.logger.signal(signal.SIGCONT)
        assert_recovered(system)
        client.wait_for(TRAFFIC)
    finally:
        system.logger.signal(signal.SIGCONT)
        outcomes = client.stop()
    wait_settled(system, sentinel_group)
    figures = tally(outcomes, system.events())
    print(
        figures.line(
            "lossy failover",
            f" | the promoted replica lacks {acknowledged - kept} of {acknowledged} acknowledged "
            f"XADDs ({cut.lost_bytes} replication bytes) | promoted after {promoted:.1f} s",
        )
    )
    assert acknowledged - kept > 0, "the trick lost no acknowledged event: it proves nothing"
    assert sentinel_group.role(new) == "master"
    assert figures.unclear == 0, [o for o in outcomes if o.status != 200 and not o.well_formed][:3]
    assert set(figures.statuses) <= {503}, figures.statuses
    assert figures.lost == 0 and figures.duplicated == 0, figures


def test_a_revocation_lost_by_the_failover_stays_in_force(
    system: System, sentinel_group: SentinelGroup
):
    """A key deactivated through /admin (200: keys.json holds it) while the replica is cut off;
    the promoted replica still holds it active. Within 1 s of the new master answering the proxy
    refuses it, and keeps refusing; keys.json and the new master hold it deactivated."""
    secret, user = "bsk-sentinel-revoked-01", "rhea"
    key_hash = hash_api_key(secret)
    assert system.upsert(secret, user).status_code == 200
    assert chat(system.url, secret).status_code == 200
    with sentinel_group.client(sentinel_group.replica_port) as replica:
        wait_until(lambda: replica.hget(KEYS_HASH, key_hash), 10, what="the key on the replica")

    sentinel_group.cut_off_replica()
    assert system.upsert(secret, user, active=False).status_code == 200
    assert chat(system.url, secret).status_code == 401
    cut = sentinel_group.kill_master_and_resume_replica()
    with sentinel_group.client(cut.replica) as replica:
        stale = KeyRecord.from_redis(key_hash, replica.hget(KEYS_HASH, key_hash))
    assert stale.active, "the replica got the revocation: the trick proves nothing"

    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                status = chat(system.url, secret).status_code
            except httpx.HTTPError:
                status = 0
            answers.append((time.monotonic(), status))
            stop.wait(PACE_SECONDS)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        sentinel_group.fail_over(cut)
        answering = time.monotonic()
        wait_until(
            lambda: answers and answers[-1][0] > answering + REVOKE_WITHIN + 2,
            30,
            what="probes past the deadline",
        )
    finally:
        stop.set()
        prober.join(15)
    accepted = [at - answering for at, status in answers if status == 200]
    print(
        f"\nSENTINEL-REPORT revoked key | {len(answers)} probes | {len(accepted)} accepted "
        f"(s after the new master answered: {[round(at, 2) for at in accepted][:20]}) | "
        f"statuses {dict(Counter(status for _, status in answers))}"
    )
    assert not accepted, f"the revoked key accepted {accepted} s after the new master answered"
    assert answers[-1][1] == 401
    entry = next(
        k for k in orjson.loads(system.keys_path.read_bytes())["keys"] if k["user_id"] == user
    )
    assert entry["api_key_sha256"] == key_hash and entry["active"] is False
    with master_client(sentinel_group) as master:
        assert not KeyRecord.from_redis(key_hash, master.hget(KEYS_HASH, key_hash)).active
    assert_recovered(system)
