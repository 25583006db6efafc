"""A running b23 system for end-to-end tests: proxies and a logger as real processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import redis

from tests.processes import (
    ADMIN_TOKEN,
    ROOT,
    ManagedProcess,
    free_port,
    logger_process,
    proxy_process,
    service_env,
    wait_http,
    wait_until,
)


class System:
    def __init__(self, redis_url: str, upstream_url: str, root: Path, **settings: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = service_env(redis_url, upstream_url, self.data_dir, **settings)
        self.proxies: list[ManagedProcess] = []
        self.proxy_urls: list[str] = []
        self.logger: ManagedProcess | None = None
        """The logger started last; `loggers` holds every one started, so all get stopped."""
        self.loggers: list[ManagedProcess] = []
        self._names = 0

    @property
    def url(self) -> str:
        return self.proxy_urls[0]

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.jsonl"

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.json"

    def _name(self, kind: str) -> str:
        self._names += 1
        return f"{kind}-{self._names}"

    def start_logger(
        self, preexec: Callable[[], None] | None = None, **extra: str
    ) -> ManagedProcess:
        env = {**self.env, **extra}
        self.logger = logger_process(self._name("logger"), env, self.root, preexec).start()
        self.loggers.append(self.logger)
        return self.logger

    def start_proxy(self, ready_status: int = 200, **extra: str) -> str:
        """A proxy, once its /readyz answers `ready_status` (503: started, but not ready)."""
        port = free_port()
        process = proxy_process(self._name("proxy"), port, {**self.env, **extra}, self.root)
        process.start()
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", process, status=ready_status)
        self.proxies.append(process)
        self.proxy_urls.append(url)
        return url

    def stop(self) -> None:
        for process in [*self.proxies, *self.loggers]:
            process.stop()

    def logger_check(self) -> int:
        """Exit status of `python -m logger_service --check`, the logger's health check."""
        argv = [sys.executable, "-m", "logger_service", "--check"]
        return subprocess.run(argv, env=self.env, cwd=ROOT, timeout=15).returncode

    def readyz(self, url: str | None = None) -> httpx.Response:
        return httpx.get((url or self.url) + "/readyz", timeout=5)

    def upsert(
        self, api_key: str, user_id: str, url: str | None = None, **fields
    ) -> httpx.Response:
        return httpx.post(
            (url or self.url) + "/admin/keys/upsert",
            headers={"x-admin-token": ADMIN_TOKEN},
            json={"api_key": api_key, "user_id": user_id, **fields},
            timeout=10,
        )

    def events(self) -> list[dict]:
        if not self.events_path.exists():
            return []
        return [orjson.loads(line) for line in self.events_path.read_bytes().splitlines()]

    def wait_events(self, count: int, timeout: float = 10) -> list[dict]:
        """Wait until events.jsonl holds exactly `count` lines (fail fast on more)."""

        def enough() -> list[dict] | None:
            events = self.events()
            assert len(events) <= count, f"{len(events)} events, expected {count}"
            return events if len(events) == count else None

        return wait_until(enough, timeout, what=f"{count} events in events.jsonl")

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            return "\n".join(p.log() for p in [*self.proxies, *self.loggers])
        return ""


def replace_file(path: Path, content: bytes | str) -> None:
    """`content` at `path` in one step (written aside, then renamed over it), as an operator's
    tool that replaces a file does: a service polling the file can never read it half written,
    as it can an in-place write (truncated, then written) on a busy machine. Tests of in-place
    edits write in place on purpose."""
    aside = path.with_name(f".{path.name}.replacing")
    aside.write_bytes(content.encode() if isinstance(content, str) else content)
    os.replace(aside, path)


@contextlib.contextmanager
def running_system(
    redis_url: str, upstream_url: str, root: Path, proxies: int = 1, **settings: str
) -> Iterator[System]:
    """A flushed Redis, one logger and `proxies` proxies, all stopped afterwards."""
    redis.Redis.from_url(redis_url).flushdb()
    system = System(redis_url, upstream_url, root, **settings)
    try:
        system.start_logger()
        for _ in range(proxies):
            system.start_proxy()
        yield system
    finally:
        system.stop()
