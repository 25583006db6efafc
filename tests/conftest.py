"""Shared fixtures: a real Redis and a real fake upstream for the whole session."""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.alone import MARK, is_alone, turns_for
from tests.processes import RedisServer, fake_upstream_process, free_port, wait_http

_TURNS = pytest.StashKey()

settings.register_profile("b23", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("b23")
"""Hypothesis's two wall-clock checks off for every test (most said deadline=None already):
a 200 ms deadline per example and the too_slow health check measure the machine as much as
the code, with workers sharing the cores (one example took 293 ms, its replay 0.4 ms). What a
test asserts is unchanged; a runaway example still meets pytest-timeout."""

SLOWEST_FIRST = (
    "test_faults.py",
    "sentinel/test_sentinel_failover.py",
    "cluster_six/test_six_nodes.py",
    "test_shard_loggers.py",
    "test_logger_hardening.py",
    "test_event_bounds_e2e.py",
    "ui/test_dashboard_browser.py",
    "test_upstream_bounds.py",
    "test_bad_input.py",
    "test_metering_hardening.py",
    "test_models_embeddings.py",
    "test_claude_code.py",  # and its first npm install
    "test_codex_cli.py",  # and its first npm install
    "test_admin_rotation.py",
    "logger/test_record_bound.py",
    "test_e2e_openai.py",
)
"""Test files (under tests/) that take longest, slowest first, as measured on a parallel run:
xdist hands each worker whole files (`--dist loadfile`) in collection order, and one of these
started last would keep one worker busy long after the others are done. Only the order of
the files changes; a name missing here costs time, not correctness."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the usable cores (much of the suite waits on its
    services and on sleeps), at most 16 (a Redis database each on a given REDIS_URL);
    PYTEST_XDIST_AUTO_NUM_WORKERS overrides it as for xdist's own count."""
    if given := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min((cores or 1) + 1, 16)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, the files of SLOWEST_FIRST first (every worker sorts alike, as xdist
    requires); a run without workers keeps the collection order."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    rank = {name: index for index, name in enumerate(SLOWEST_FIRST)}
    tests = Path(__file__).parent

    def place(pair: tuple[int, pytest.Item]) -> tuple[int, int]:
        index, item = pair
        name = item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        return rank.get(name, len(rank)), index

    items[:] = [item for _, item in sorted(enumerate(items), key=place)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}: runs while no other test of the run does (tests/alone.py): its assertion is a "
        "wall-clock latency or a process's memory, which other tests' load would change",
    )
    config.stash[_TURNS] = turns_for(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (turns := config.stash.get(_TURNS, None)) is not None:
        turns.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """On an xdist worker: the test's turn (tests/alone.py), outside pytest-timeout's clock."""
    turns = item.config.stash.get(_TURNS, None)
    if turns is None:
        return (yield)
    turns.enter(is_alone(item))
    try:
        return (yield)
    finally:
        if not (is_alone(item) and is_alone(nextitem)):
            turns.leave()


def _testcontainers_redis_url(stack: contextlib.ExitStack) -> str | None:
    """A Redis container when a Docker engine answers; None otherwise."""
    try:
        from testcontainers.redis import RedisContainer

        container = stack.enter_context(RedisContainer("redis:7"))
    except Exception:
        return None
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL if set, else our own redis-server, else testcontainers; fail loudly if none.
    Each xdist worker has a redis-server or a container of its own; on a given REDIS_URL each
    worker takes a database of its own (tests flush theirs), see `worker_database`."""
    if os.environ.get("REDIS_URL"):
        yield worker_database(os.environ["REDIS_URL"])
        return
    with contextlib.ExitStack() as stack:
        if shutil.which("redis-server"):
            server = RedisServer(tmp_path_factory.mktemp("redis")).start()
            stack.callback(server.stop)
            yield server.url
            return
        url = _testcontainers_redis_url(stack)
        if url is None:
            pytest.fail(
                "no Redis for the tests: set REDIS_URL, install redis-server "
                "(apt-get install redis-server), or run a Docker engine for testcontainers"
            )
        yield url


def worker_database(url: str) -> str:
    """`url` with a database of this xdist worker's own: the URL's database (0 if none) plus
    the worker's number (gw0 +0, gw1 +1, ...); `url` itself in a run without workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return url
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    unix = parts.scheme == "unix"  # unix:///path/redis.sock?db=N
    given = query.get("db", 0) if unix else parts.path.strip("/") or 0
    database = int(given) + int(worker.removeprefix("gw"))
    if database >= 16:
        pytest.fail(f"REDIS_URL: worker {worker} needs database {database}; Redis has 0-15")
    if unix:
        query["db"] = str(database)
        return f"unix://{parts.netloc}{parts.path}?{urllib.parse.urlencode(query)}"
    return parts._replace(path=f"/{database}").geturl()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def fake_upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake OpenAI server in its own process; base URL ends in /v1 like a real one."""
    port = free_port()
    process = fake_upstream_process(port, tmp_path_factory.mktemp("fake-upstream")).start()
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_requests", process)
    yield base + "/v1"
    process.stop()


@pytest.fixture
def fake_upstream(fake_upstream_url: str) -> Iterator[FakeUpstreamControl]:
    control = FakeUpstreamControl(fake_upstream_url.removesuffix("/v1"))
    control.reset()
    yield control


class FakeUpstreamControl:
    """Script the fake upstream and read what it received."""

    def __init__(self, base: str) -> None:
        self.base = base

    def reset(self) -> None:
        httpx.delete(self.base + "/_requests")

    def script(self, *steps: dict) -> None:
        httpx.post(self.base + "/_script", json=list(steps)).raise_for_status()

    def received(self) -> list[dict]:
        return httpx.get(self.base + "/_requests").json()["requests"]

    def open_streams(self) -> int:
        return httpx.get(self.base + "/_requests").json()["open_streams"]


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    """A Redis of this test's own, so it can be killed without hurting other tests."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


# --- A one-node Redis Cluster (tests/redis_cluster.py), for the REDIS_MODE=cluster tests ---


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server in cluster mode holding every slot, one per session (xdist worker)."""
    from tests.redis_cluster import OneNodeCluster

    cluster = OneNodeCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster.url
    cluster.stop()
