"""Shared fixtures: a real Redis and a real fake upstream for the whole session."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.processes import RedisServer, fake_upstream_process, free_port, wait_http


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
    """REDIS_URL if set, else our own redis-server, else testcontainers; fail loudly if none."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
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
