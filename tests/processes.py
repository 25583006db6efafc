"""Real processes for end-to-end tests: redis-server, proxies, loggers, the fake upstream.

Each is started with the very command the containers run (`uvicorn proxy_service.main:app`,
`python -m logger_service`), with its output in a log file the test can read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-0123456789"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the test process dies, so no service outlives a
    crashed or interrupted test run (a leftover logger on a reused Redis port would take that
    Redis's events)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def file_size_limit(max_bytes: int) -> Callable[[], None]:
    """A preexec hook: the child can write no file past `max_bytes` (RLIMIT_FSIZE), a full disk
    without privileges. SIGXFSZ ignored, so such a write fails with EFBIG instead of killing the
    process, and one that crosses the limit is short."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """A child process with its own log file; stopped (SIGTERM, then SIGKILL) by `stop()`.
    `preexec` runs in the child before exec, after the die-with-parent set-up."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._preexec = preexec

    def _prepare_child(self) -> None:
        _die_with_parent()
        if self._preexec is not None:
            self._preexec()

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._prepare_child,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            result = predicate()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_http(url: str, process: ManagedProcess, timeout: float = 15, status: int = 200) -> None:
    def ready() -> bool:
        if not process.alive():
            raise AssertionError(f"{process.name} exited:\n{process.log()[-3000:]}")
        return httpx.get(url, timeout=1).status_code == status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{process.name} not ready at {url}:\n{process.log()[-3000:]}")


class RedisServer:
    """A private redis-server on a free port; `kill()`/`start()` simulate an outage."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = ManagedProcess(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work_dir),
            ],
            dict(os.environ),
            work_dir,
        )

    def start(self) -> RedisServer:
        self.process.start()
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(client.ping, 10, what="redis-server")
        client.close()
        return self

    def stop(self) -> None:
        self.process.stop()


def service_env(redis_url: str, upstream_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("UPSTREAM_API_KEY",)}
    env.update(
        REDIS_URL=redis_url,
        UPSTREAM_BASE_URL=upstream_url,
        DATA_DIR=str(data_dir),
        ADMIN_TOKEN=ADMIN_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def proxy_process(name: str, port: int, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """`python -m proxy_service`, the container's command, on 127.0.0.1:port."""
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    return ManagedProcess(name, [sys.executable, "-m", "proxy_service"], env, log_dir)


def logger_process(
    name: str, env: dict[str, str], log_dir: Path, preexec: Callable[[], None] | None = None
) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-m", "logger_service"], env, log_dir, preexec)


def fake_upstream_process(port: int, log_dir: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "tests.fake_upstream", "--port", str(port)]
    return ManagedProcess("fake-upstream", argv, dict(os.environ), log_dir)
