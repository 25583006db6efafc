"""One running system (two proxies and a logger, real processes, REDIS_MODE=cluster) on a Redis
Cluster of 3 masters and 3 replicas (tests/cluster_six/conftest.py): limits and key changes
across proxies, and what failovers and slot moves do to key sync, key changes and metering.
The key set (and its sharded pub/sub channels) lives on the master of the `{keys}` slot, the
event stream on that of `{events}`, a user's limit counters on that of `{u:<user>}`
(shared/redis_names.py).

A failover test kills a master and leaves it so: the `cluster` fixture restarts it before the
next test (it rejoins as a replica of the node that took its slots), and the `system` fixture
replaces a proxy whose key sync an earlier failover left stuck (see
test_key_sync_recovers_when_the_key_sets_master_fails_over), so each test starts whole.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
import redis

from shared.keys import hash_api_key
from shared.redis_names import EVENTS_STREAM, KEYS_CHANNEL, KEYS_HASH, KEYS_LOADED
from tests.load import Background, Outcome
from tests.processes import ADMIN_TOKEN, ManagedProcess, wait_until
from tests.redis_cluster import SixNodeCluster
from tests.system import System

ADMIN = {"x-admin-token": ADMIN_TOKEN}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CRASHED = (
    "Traceback",
    "failed, restarting it",
    "failed, stopping the process",
    "Task exception was never retrieved",
    "unhandled error",
    "Exception in ASGI application",
)
"""What a log shows when a background task or a request handler died of an exception."""


@pytest.fixture(scope="module")
def running(
    six_cluster: SixNodeCluster, cluster_mode: None, fake_upstream_url: str, tmp_path_factory
) -> Iterator[System]:
    system = System(six_cluster.url, fake_upstream_url, tmp_path_factory.mktemp("six-nodes"))
    try:
        system.start_logger()
        system.start_proxy()
        system.start_proxy()
        yield system
    finally:
        system.stop()


@pytest.fixture
def system(running: System, cluster: SixNodeCluster) -> System:
    """The module's system on the healed cluster: its logger running (one that exited is
    started again) and each proxy following key changes: a key created through one proxy
    works on the other within 2 s, or that other proxy is replaced by a new one (which reads
    the whole set as it starts)."""
    if running.logger is None or not running.logger.alive():
        print(f"\nstarting a logger again: {running.logger and running.logger.name} exited")
        running.start_logger()
    for index in (1, 0):
        source, target = running.proxy_urls[1 - index], running.proxy_urls[index]
        if not follows(running, source, target):
            print(f"\nreplacing {running.proxies[index].name}: its key sync does not follow")
            replace_proxy(running, index)
    return running


def follows(system: System, source: str, target: str) -> bool:
    """A key created through proxy `source` works on proxy `target` within 2 s."""
    api_key = create(system, source)["api_key"]
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if call(target, api_key).status_code == 200:
            return True
        time.sleep(0.02)
    return False


def replace_proxy(system: System, index: int) -> None:
    """Proxy `index` stopped and a new one started in its place (same index, new port)."""
    system.proxies.pop(index).stop()
    system.proxy_urls.pop(index)
    system.start_proxy()
    system.proxies.insert(index, system.proxies.pop())
    system.proxy_urls.insert(index, system.proxy_urls.pop())


def admin(system: System, method: str, path: str, url: str | None = None, **kwargs):
    """An admin call, sent again while it answers 503 (Redis unavailable: the proxy's client
    has not found a promoted master yet), as a client would, for up to 20 s."""
    deadline = time.monotonic() + 20
    while True:
        reply = httpx.request(
            method, (url or system.url) + path, headers=ADMIN, timeout=15, **kwargs
        )
        if reply.status_code != 503 or time.monotonic() > deadline:
            return reply
        time.sleep(0.2)


def create(system: System, url: str | None = None, **fields) -> dict:
    """A new key through POST /admin/keys (201: keys.json holds it)."""
    reply = admin(system, "POST", "/admin/keys", url, json={"user_id": "sixer", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()


def set_active(system: System, key_id: str, active: bool, url: str) -> None:
    """PATCH the key through proxy `url`; 200 means keys.json holds the change."""
    reply = admin(system, "PATCH", f"/admin/keys/{key_id}", url=url, json={"active": active})
    assert reply.status_code == 200, reply.text


def call(url: str, key: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=BODY,
        headers={"authorization": f"Bearer {key}"},
        timeout=15,
    )


def in_force_within(url: str, key: str, status: int, seconds: float) -> float:
    """Seconds until proxy `url` answers `status` for `key`: fails past `seconds`."""
    started = time.monotonic()
    while (answer := call(url, key).status_code) != status:
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"{url} answers {answer}, not {status}, after {elapsed:.2f}s"
        time.sleep(0.01)
    return time.monotonic() - started


def stamp() -> str:
    """The wall-clock time as the services' logs show it, to read a test's steps beside them."""
    return time.strftime("%H:%M:%S") + f",{int(time.time() * 1000) % 1000:03d}"


def key_in_file(system: System, key_id: str) -> dict | None:
    entries = orjson.loads(system.keys_path.read_bytes())["keys"]
    return next((entry for entry in entries if entry.get("key_id") == key_id), None)


def changes_follow(system: System, created: dict, refused_within: float) -> str:
    """The key deactivated through proxy A, refused by B within `refused_within` s, then
    reactivated through A and accepted by B within 1 s; the two delays, said."""
    a, b = system.proxy_urls
    set_active(system, created["key_id"], False, a)
    refused = in_force_within(b, created["api_key"], 401, refused_within)
    set_active(system, created["key_id"], True, a)
    accepted = in_force_within(b, created["api_key"], 200, 1.0)
    return f"{refused * 1000:.0f} and {accepted * 1000:.0f} ms"


def key_on_node(cluster: SixNodeCluster, port: int, api_key: str) -> dict | None:
    """The key's record in the key set as node `port` holds it: what every proxy reads when it
    loads the set (at start, after a reconnect, every 30 s). A replica's too (READONLY: else
    it answers MOVED)."""
    with cluster.nodes[port].client() as node:
        node.execute_command("READONLY")
        raw = node.hget(KEYS_HASH, hash_api_key(api_key))
    return orjson.loads(raw) if raw is not None else None


class CrashWatch:
    """Reads what the proxies and the logger logged since it was made, and whether any of
    their background tasks or handlers died of an exception (the Supervisor's one-line
    reports, asyncio's and uvicorn's tracebacks)."""

    def __init__(self, system: System) -> None:
        self._system = system
        self._offsets = {process.name: len(process.log()) for process in self._processes()}
        self._failures = {url: self._task_failures(url) for url in system.proxy_urls}

    def _processes(self) -> list[ManagedProcess]:
        return [*self._system.proxies, *self._system.loggers]

    def _task_failures(self, url: str) -> dict[str, int]:
        tasks = self._system.readyz(url).json()["tasks"]
        return {name: task["failures"] for name, task in tasks.items()}

    def new_lines(self) -> list[str]:
        return [
            f"{process.name}: {line}"
            for process in self._processes()
            for line in process.log()[self._offsets.get(process.name, 0) :].splitlines()
        ]

    def assert_nothing_crashed(self) -> None:
        """No crash in the logs since, and no proxy's supervised task failed since (/readyz
        counts their failures)."""
        crashes = [line for line in self.new_lines() if any(sign in line for sign in CRASHED)]
        assert not crashes, "\n".join(crashes[:20])
        for url, before in self._failures.items():
            assert self._task_failures(url) == before, url


@dataclass(frozen=True)
class Figures:
    sent: int
    """Requests answered 200."""
    recorded: int
    """Lines in events.jsonl with their request_ids."""
    lost: int
    duplicated: int
    """Lines past the first for one request_id."""

    def __str__(self) -> str:
        return (
            f"{self.sent} sent | {self.recorded} recorded | {self.lost} lost | "
            f"{self.duplicated} duplicated"
        )


def figures(sent: set[str], events: list[dict]) -> Figures:
    counts = Counter(event["request_id"] for event in events if event["request_id"] in sent)
    duplicated = sum(n - 1 for n in counts.values())
    return Figures(len(sent), sum(counts.values()), len(sent - counts.keys()), duplicated)


def answered(outcomes: list[Outcome]) -> set[str]:
    """The request ids of the requests answered 200 (each once)."""
    ids = [o.request_id for o in outcomes if o.status == 200 and o.request_id]
    assert len(set(ids)) == len(ids)
    return set(ids)


def settled_events(
    system: System, cluster: SixNodeCluster, quiet: float = 1.5, timeout: float = 60.0
) -> list[dict]:
    """events.jsonl once metering has come to rest: no proxy holds an unpublished event, the
    stream is empty (the logger has written all Redis holds) and the file has not grown for
    `quiet` s. A replay that is coming would be in the file by then; a lost event never will
    be. Fails at once if the logger exited, and says what still moved if it timed out."""
    deadline = time.monotonic() + timeout
    size, since, moving = -1, time.monotonic(), "events.jsonl growing"
    while True:
        logger = system.logger
        assert logger is not None
        assert logger.alive(), f"the logger exited:\n{logger.log()[-3000:]}"
        now = time.monotonic()
        assert now < deadline, f"metering not at rest after {timeout}s: {moving}"
        grown = system.events_path.stat().st_size if system.events_path.exists() else 0
        if grown != size:
            size, since, moving = grown, now, "events.jsonl growing"
        elif now - since >= quiet:
            moving = _still_moving(system, cluster)
            if moving is None:
                return system.events()
        time.sleep(0.1)


def _still_moving(system: System, cluster: SixNodeCluster) -> str | None:
    """What metering still has on its way, or None: events a proxy holds, entries in the
    stream (read through a cluster client, which finds the slot wherever it is now)."""
    try:
        held = [system.readyz(url).json()["events_pending"] for url in system.proxy_urls]
        if any(held):
            return f"the proxies hold {held} events"
        with cluster.client() as client:
            entries = client.xlen(EVENTS_STREAM)
        return f"{entries} entries in the stream" if entries else None
    except (httpx.HTTPError, redis.RedisError, AssertionError) as error:
        return f"no answer ({error!r})"  # a node or proxy not answering yet: not at rest


def send(system: System, key: str, count: int) -> set[str]:
    """`count` requests alternating between the proxies, each answered 200; their request ids."""
    ids = set()
    for index in range(count):
        reply = call(system.proxy_urls[index % 2], key)
        assert reply.status_code == 200, reply.text
        ids.add(reply.headers["x-request-id"])
    return ids


def test_the_rpm_limit_is_exact_across_two_proxies(system: System, fake_upstream):
    """rpm_limit N, 2N+2 requests alternating between the proxies: the first N go through, every
    other one is refused with 429 in the OpenAI error shape (the GCRA bucket lives on the master
    of the user's `{u:...}` slot; it refills one request per 60/N s, so the test's requests must
    all fall within that)."""
    limit = 5
    api_key = create(system, rpm_limit=limit)["api_key"]
    started = time.monotonic()
    replies = [call(system.proxy_urls[i % 2], api_key) for i in range(2 * limit + 2)]
    elapsed = time.monotonic() - started
    assert elapsed < 60 / limit, f"{elapsed:.1f}s: the bucket refilled meanwhile"
    assert [r.status_code for r in replies] == [200] * limit + [429] * (limit + 2)
    for reply in replies[limit:]:
        error = reply.json()["error"]
        assert error["type"] == error["code"] == "rate_limit_exceeded", error
        assert "rpm" in error["message"] and int(reply.headers["retry-after"]) >= 1
    assert len(fake_upstream.received()) == limit, "a refused request reached the upstream"


@pytest.mark.alone  # a change in force within 1 s (tests/alone.py)
def test_a_key_deactivated_on_one_proxy_is_refused_on_the_other_within_1s(system: System):
    """The PATCH on A answers 200 (keys.json holds it); B follows through its SSUBSCRIBE on the
    `{keys}` master."""
    created = create(system)
    a, b = system.proxy_urls
    assert call(b, created["api_key"]).status_code == 200
    set_active(system, created["key_id"], False, a)
    delay = in_force_within(b, created["api_key"], 401, 1.0)
    print(f"\nrefused on the other proxy after {delay * 1000:.0f} ms")


@pytest.mark.alone  # in force within 1 s (tests/alone.py)
def test_key_sync_recovers_when_the_key_sets_master_fails_over(
    system: System, cluster: SixNodeCluster
):
    """SIGKILL the master of the `{keys}` slot, the node every proxy's sharded subscription is
    on, and wait until its replica is promoted and the logger has loaded keys.json into it
    (KEYS_LOADED moves on: a change made before that is the next test's subject). Then a
    deactivation made on A is refused on B within 5 s (the periodic full reload is 30 s
    away), and a reactivation after that is in force on B within 1 s, which only a working
    subscription brings. No background task crashed."""
    watch = CrashWatch(system)
    created = create(system)
    assert call(system.proxy_urls[1], created["api_key"]).status_code == 200
    master = cluster.master_of(KEYS_HASH)
    assert cluster.master_of(KEYS_CHANNEL) == master
    replica = cluster.replica_of(master)
    with cluster.nodes[master].client() as node:
        loaded = node.get(KEYS_LOADED)
    started = time.monotonic()
    cluster.kill(master)
    cluster.wait_failover(master, replica)
    failover = time.monotonic() - started
    with cluster.nodes[replica].client() as node:
        wait_until(lambda: node.get(KEYS_LOADED) != loaded, 15, what="keys.json loaded again")
    reloaded = time.monotonic() - started
    print(f"\nfailover {failover:.1f}s, keys.json loaded into the new node at {reloaded:.1f}s")
    print(
        f"deactivation and reactivation in force on B after {changes_follow(system, created, 5.0)}"
    )
    watch.assert_nothing_crashed()


def test_a_key_change_made_right_after_a_failover_of_the_key_sets_master_is_never_lost_silently(
    system: System, cluster: SixNodeCluster
):
    """SIGKILL the `{keys}` master and, once its replica is promoted, deactivate a key through
    A before the logger has looked at the new node (the logger is paused meanwhile, as one
    that is busy or restarting: deterministic). The logger then loads keys.json into the new
    node, over the change: the call must say so (409 change_replaced: not in force, make it
    again), never 200 or 202; and the node and keys.json then agree."""
    created = create(system)
    master = cluster.master_of(KEYS_HASH)
    replica = cluster.replica_of(master)
    # The key on the replica before its master dies (replication is asynchronous, and the
    # replica may be the node the previous test killed, just synced again): else the promoted
    # node may lack it, the PATCH answers 404 and the change this test is about is never made.
    wait_until(
        lambda: key_on_node(cluster, replica, created["api_key"]) is not None,
        10,
        what="the new key on the replica",
    )
    logger = system.logger
    assert logger is not None
    logger.signal(signal.SIGSTOP)
    try:
        cluster.kill(master)
        cluster.wait_failover(master, replica)
        replies: list[httpx.Response] = []
        path = f"/admin/keys/{created['key_id']}"
        patching = threading.Thread(
            target=lambda: replies.append(admin(system, "PATCH", path, json={"active": False}))
        )
        patching.start()
        wait_until(
            lambda: key_on_node(cluster, replica, created["api_key"])["active"] is False,
            25,
            what="the change on the promoted node",
        )
    finally:
        logger.signal(signal.SIGCONT)
    patching.join(20)
    reply = replies[0]
    print(f"\ndeactivation answered {reply.status_code}: {reply.json().get('message')}")
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "change_replaced"

    def agree() -> bool:
        entry = key_in_file(system, created["key_id"])
        return entry["active"] == key_on_node(cluster, replica, created["api_key"])["active"]

    try:
        wait_until(agree, 5, what="keys.json and the promoted node to agree")
        again = admin(system, "PATCH", path, json={"active": False})
        assert again.status_code == 200, again.text
        wait_until(
            lambda: (
                key_in_file(system, created["key_id"])["active"] is False
                and key_on_node(cluster, replica, created["api_key"])["active"] is False
            ),
            5,
            what="the change made again in keys.json and Redis",
        )
    finally:
        record = key_on_node(cluster, replica, created["api_key"]) or {}
        entry = key_in_file(system, created["key_id"]) or {}
        print(
            f"after it: the promoted node has active={record.get('active')}, "
            f"keys.json active={entry.get('active')}"
        )


def test_metering_through_a_failover_of_the_events_master_loses_nothing(
    system: System, cluster: SixNodeCluster
):
    """A paced load on both proxies; the master of the `{events}` slot is SIGKILLed during it
    and its replica promoted by the cluster (automatic failover). Every request answered 200
    is in events.jsonl exactly once."""
    watch = CrashWatch(system)
    api_key = create(system)["api_key"]
    master = cluster.master_of(EVENTS_STREAM)
    replica = cluster.replica_of(master)
    load = Background(system.proxy_urls, api_key, 96, 12.0)
    time.sleep(1.5)
    started = time.monotonic()
    cluster.kill(master)
    cluster.wait_failover(master, replica)
    failover = time.monotonic() - started
    outcomes = load.join(timeout=120)
    sent = answered(outcomes)
    result = figures(sent, settled_events(system, cluster))
    print(
        f"\nFAILOVER | {result} | {len(outcomes) - len(sent)} not answered 200 | "
        f"promoted after {failover:.1f}s"
    )
    assert result.lost == result.duplicated == 0
    assert len(sent) == len(outcomes), [o for o in outcomes if o.status != 200][:3]
    watch.assert_nothing_crashed()


@pytest.mark.alone  # in force within 1 s (tests/alone.py)
def test_key_sync_follows_a_migration_of_the_key_sets_slot(system: System, cluster: SixNodeCluster):
    """The `{keys}` slot, with the key set and its sharded channels, moved to another master.
    Redis ends the proxies' SSUBSCRIBE on the source when the slot leaves it; once the logger
    has loaded keys.json into the new node (its run_id is another), a deactivation made on A is
    refused on B within 1 s and a reactivation accepted within 1 s: only a subscription on the
    new owner brings that (the periodic full reload is 30 s away)."""
    watch = CrashWatch(system)
    created = create(system)
    assert call(system.proxy_urls[1], created["api_key"]).status_code == 200
    source = cluster.master_of(KEYS_HASH)
    target = cluster.other_master(source)
    with cluster.nodes[source].client() as node:
        loaded = node.get(KEYS_LOADED)
    cluster.move_slot(cluster.slot(KEYS_HASH), target, dwell=0.5)
    assert cluster.master_of(KEYS_CHANNEL) == target
    with cluster.nodes[target].client() as node:
        wait_until(lambda: node.get(KEYS_LOADED) != loaded, 15, what="keys.json loaded again")
    delays = changes_follow(system, created, 1.0)
    print(f"\nafter the move: deactivation and reactivation in force on B after {delays}")
    watch.assert_nothing_crashed()


def test_a_lossy_failover_of_the_events_master_loses_nothing(
    system: System, cluster: SixNodeCluster
):
    """The deterministic lossy failover on the `{events}` master: its replica cut off, the
    logger paused (SIGSTOP: as a logger that is behind, so the events wait in the stream), a
    burst on both proxies that the master's XLEN shows, then the master SIGKILLed and the
    replica promoted without those entries (CLUSTER FAILOVER TAKEOVER); the logger resumed and
    a few more requests. Requests answered 200 == their lines in events.jsonl, 0 duplicates."""
    watch = CrashWatch(system)
    api_key = create(system)["api_key"]
    sent = send(system, api_key, 4)
    settled_events(system, cluster, quiet=0.5)
    master = cluster.master_of(EVENTS_STREAM)
    cut = cluster.cut_off(master)
    logger = system.logger
    assert logger is not None
    burst = 30
    with cluster.nodes[master].client() as node:
        before = node.xlen(EVENTS_STREAM)
        logger.signal(signal.SIGSTOP)
        try:
            sent |= send(system, api_key, burst)
            wait_until(
                lambda: node.xlen(EVENTS_STREAM) >= before + burst,
                10,
                what="the burst in the master's stream",
            )
            grown = node.xlen(EVENTS_STREAM) - before
            cluster.take_over(cut)
        finally:
            logger.signal(signal.SIGCONT)
    with cluster.nodes[cut.replica].client() as node:
        kept = node.xlen(EVENTS_STREAM)
    assert kept < burst, f"the promoted replica has {kept} entries: the failover lost nothing"
    sent |= send(system, api_key, 10)
    result = figures(sent, settled_events(system, cluster))
    print(
        f"\nLOSSY FAILOVER | {result} | master XLEN +{grown} while cut off, "
        f"{kept} entries on the promoted replica"
    )
    assert result.lost == result.duplicated == 0, str(result)
    watch.assert_nothing_crashed()


@pytest.mark.alone  # in force within 1 s (tests/alone.py)
def test_a_revocation_lost_in_a_failover_of_the_key_sets_master_stays_in_force(
    system: System, cluster: SixNodeCluster
):
    """The deterministic lossy failover on the `{keys}` master: a key that works and is in
    keys.json; the replica cut off, the key deactivated through /admin (200: keys.json holds
    it), the master SIGKILLed and the replica, which never got the change, promoted. From 1 s
    after the takeover on, both proxies refuse the key and the promoted node's key set (what
    every proxy loads) has it deactivated; keys.json still has it deactivated."""
    watch = CrashWatch(system)
    created = create(system)
    key_id, api_key = created["key_id"], created["api_key"]
    entry = key_in_file(system, key_id)
    assert entry is not None and entry["active"] is True
    assert [call(url, api_key).status_code for url in system.proxy_urls] == [200, 200]
    cut = cluster.cut_off(cluster.master_of(KEYS_HASH))
    set_active(system, key_id, False, system.proxy_urls[0])
    cluster.take_over(cut)
    promoted = time.monotonic()
    lost = key_on_node(cluster, cut.replica, api_key) or {}
    last_accepted = dict.fromkeys(system.proxy_urls, -1.0)
    last_active_in_redis = -1.0
    while time.monotonic() - promoted < 3.0:
        for url in system.proxy_urls:
            if call(url, api_key).status_code == 200:
                last_accepted[url] = time.monotonic() - promoted
        if (key_on_node(cluster, cut.replica, api_key) or {}).get("active"):
            last_active_in_redis = time.monotonic() - promoted
        time.sleep(0.01)
    entry = key_in_file(system, key_id)
    print(
        f"\nLOST REVOCATION | the promoted node had the key active={lost.get('active')} at "
        f"the takeover, last seen active {last_active_in_redis:.2f}s after it; last accepted "
        f"by the proxies {[round(t, 2) for t in last_accepted.values()]}s after it (-1: "
        f"never); keys.json active={entry and entry['active']}"
    )
    assert entry is not None and entry["active"] is False, entry
    assert max(last_accepted.values()) < 1.0, last_accepted
    assert last_active_in_redis < 1.0, "the promoted node kept the revoked key active"
    watch.assert_nothing_crashed()
