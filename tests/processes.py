"""Real processes for end-to-end tests: redis-server, proxies, loggers, the fake upstream.

Each is started with the very command the containers run (`uvicorn proxy_service.main:app`,
`python -m logger_service`), with its output in a log file the test can read.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


PORTS_FLOOR = 10000
PORTS_STATE = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / "b23-test-ports"
"""The next port to hand out, shared (under flock) by every test process on the machine: each
xdist worker, a second pytest run in the same or another checkout or by another user, bench/
and scripts/ (/tmp whatever TMPDIR says, so that all find the same file)."""


def _ports() -> range:
    """Ports below (or above) the kernel's ephemeral range, so that no outgoing connection and
    no bind to port 0 is given one of them while the service it was picked for is starting."""
    low, high = 32768, 60999
    with contextlib.suppress(OSError, ValueError):
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    best = max(range(PORTS_FLOOR, low), range(high + 1, 65536), key=len)
    return best if len(best) >= 1000 else range(PORTS_FLOOR, 65536)


def _bindable(port: int) -> bool:
    """Nothing listens on, nor is connected from, 127.0.0.1:port (no SO_REUSEADDR: a port still
    in TIME_WAIT is skipped too)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port that no other test process (another xdist worker, another run) was given:
    binding port 0 and closing lets two processes get the same port before either server binds
    it. Ports are handed out in turn from one counter under an exclusive flock, each checked
    free; the counter persists, so a port comes back only after the whole range went round
    (about 22,000 ports), never while the server it went to may still be starting, and a port
    a test stops and starts again (RedisServer's outage) is not handed to anyone meanwhile."""
    ports = _ports()
    try:
        fd = os.open(PORTS_STATE, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's file that we may not write: one of our own
        fd = os.open(f"{PORTS_STATE}-{os.getuid()}", os.O_RDWR | os.O_CREAT, 0o600)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, 0o666)  # past the umask: every user's test runs share the turn
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            turn = int(os.read(fd, 32) or b"0")
        except ValueError:
            turn = 0
        for _ in range(len(ports)):
            port = ports[turn % len(ports)]
            turn += 1
            if _bindable(port):
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, str(turn % len(ports)).encode())
                return port
        raise RuntimeError(f"no free port in {ports}")
    finally:
        os.close(fd)  # releases the flock


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, all threads) a process has used, from /proc/PID/stat: unlike
    wall time, not stretched by other processes sharing the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


START_TIMEOUT = 60
"""Seconds a started service has to answer: it needs about 1 s of CPU to import and start, which
takes many times that on a machine busy with the suite's parallel workers (and other people's
work); a service that exits is reported at once, so only a hang waits this long."""


def wait_http(
    url: str, process: ManagedProcess, timeout: float = START_TIMEOUT, status: int = 200
) -> None:
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


def redis_server_argv(port: int, work_dir: Path, *extra: str) -> list[str]:
    """A private, memory-only redis-server on 127.0.0.1:port (and `extra` options, which may
    override these: `--appendonly yes`)."""
    return [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(work_dir),
        *extra,
    ]


class RedisServer:
    """A private redis-server on a free port; `kill()`/`start()` simulate an outage."""

    def __init__(self, work_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = ManagedProcess(
            "redis", redis_server_argv(self.port, work_dir, *extra), dict(os.environ), work_dir
        )

    def start(self) -> RedisServer:
        self.process.start()
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if not self.process.alive():
                    raise AssertionError(f"redis-server exited:\n{self.process.log()[-3000:]}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return self
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server not ready on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

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
        # An admin change answers 200 once the logger has written keys.json, 202 past this wait
        # (3 s by default): a logger on a machine busy with the parallel suite can take longer,
        # so 8 s, under the tests' 10 s client timeouts. Tests of the 202 set their own.
        PERSIST_CONFIRM_TIMEOUT="8",
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
