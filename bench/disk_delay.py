"""Delay from a response's end to its line in events.jsonl under a fixed proxy load (performance
target: p99 <= 1 s at 1,000 req/s).

    .venv/bin/python -m bench.disk_delay --rate 1000 --duration 20

Runs the real system as the shared rig does: bench/fake_upstream.py, and bench/project_target.sh
(a private Redis, the logger and the proxy). The proxy is pinned to CPU 0 (`--proxy-cpu`) and
everything else, this script included, to CPU 1 (`--side-cpu`); `--no-pin` pins nothing. The
load is bench/load.py's open-loop generator, one per mode at an equal share of `--rate` (by
default OpenAI and Anthropic, streamed and not). A separate process polls events.jsonl every
`--poll-ms` and records, for each new line, the time it saw the line minus the line's
`ended_at_ms` (the proxy's clock when the response ended; same machine, same clock). That is when
the line can be read from the file; the logger fsyncs it right after, before acknowledging it.

Printed: requests sent and answered, lines written, how many sent requests have no line, duplicate
request_ids, the delay's p50/p90/p99/max, the HTTP latency, and the CPU the proxy and the logger
used. `--json` prints the figures as JSON too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import orjson
import uvloop

from bench.load import (
    DEFAULT_MODES,
    MODES,
    Samples,
    fixed_rate,
    headers_for,
    path_for,
    payload,
    pct,
)
from bench.runkit import LineTail, cpu_seconds, pin_self, pinned
from tests.processes import ROOT, ManagedProcess, free_port, wait_http

KEY = "bsk-bench"
SETTLE_SECONDS = 15.0
"""After the load, how long to wait for the last lines."""


@dataclass
class Result:
    rate: float
    duration_s: float
    sent: int
    answered_ok: int
    http_errors: int
    lines: int
    missing: int
    """Sent requests without a line (sent minus distinct request_ids in the file)."""
    duplicates: int
    delay_p50_ms: float | None
    delay_p90_ms: float | None
    delay_p99_ms: float | None
    delay_max_ms: float | None
    http_p50_ms: float | None
    http_p99_ms: float | None
    generator_lag_p99_ms: float | None
    proxy_cpu_pct: float
    logger_cpu_pct: float
    pinned: bool

    def line(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return (
            f"disk delay at {self.rate:g} req/s for {self.duration_s:g}s: p50 "
            f"{ms(self.delay_p50_ms)} p90 {ms(self.delay_p90_ms)} p99 {ms(self.delay_p99_ms)} "
            f"max {ms(self.delay_max_ms)} ms; sent {self.sent:,}, ok {self.answered_ok:,}, "
            f"errors {self.http_errors}, lines {self.lines:,}, missing {self.missing}, "
            f"duplicates {self.duplicates}; HTTP p50 {ms(self.http_p50_ms)} p99 "
            f"{ms(self.http_p99_ms)} ms, generator lag p99 {ms(self.generator_lag_p99_ms)} ms; "
            f"CPU proxy {self.proxy_cpu_pct:.0f}%, logger {self.logger_cpu_pct:.0f}%"
        )


def watch_file(path: Path, poll_seconds: float, conn: Connection) -> None:
    """In its own process (a busy load generator must not delay the stamps): stamp each new line
    of `path`; once told how many requests were sent, go on until that many lines are in (or
    SETTLE_SECONDS passed), then send back the delays (ms) and the request_ids seen."""
    tail = LineTail(path)
    delays: list[float] = []
    ids: list[str] = []

    def stamp_new_lines() -> None:
        lines = tail.new_lines()
        seen_ms = time.time_ns() / 1e6
        for line in lines:
            record = orjson.loads(line)
            delays.append(seen_ms - record["ended_at_ms"])
            ids.append(record["request_id"])

    while not conn.poll(poll_seconds):
        stamp_new_lines()
    expected, deadline = conn.recv(), time.monotonic() + SETTLE_SECONDS
    while len(ids) < expected and time.monotonic() < deadline:
        stamp_new_lines()
        time.sleep(poll_seconds)
    conn.send((delays, ids))


async def load(url: str, modes: list[str], rate: float, duration: float) -> list[Samples]:
    """bench/load.py's open loop, one generator per mode, all at once."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        runs = []
        for name in modes:
            mode = MODES[name]
            body = payload(mode["proto"], mode["stream"], "mock-model")
            headers = headers_for(mode["proto"], KEY)
            target = url + path_for(mode["proto"])
            share = rate / len(modes)
            runs.append(
                fixed_rate(session, target, body, headers, mode, True, share, duration, 0.0)
            )
        return [samples for samples, _ in await asyncio.gather(*runs)]


class System:
    """The fake upstream and bench/project_target.sh, pinned as the shared rig pins them."""

    def __init__(self, root: Path, proxy_cpu: str | None, side_cpu: str | None) -> None:
        self.run_dir = root / "run"
        self.url = f"http://127.0.0.1:{free_port()}"
        upstream_port = free_port()
        upstream = [
            sys.executable,
            str(ROOT / "bench/fake_upstream.py"),
            "--port",
            str(upstream_port),
        ]
        self.upstream = ManagedProcess(
            "fake-upstream", pinned(upstream, side_cpu), dict(os.environ), root
        )
        env = {
            **os.environ,
            "UPSTREAM_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
            "PORT": self.url.rsplit(":", 1)[1],
            "PYTHON": sys.executable,
            "SIDE_CPU": side_cpu or "",
            "BENCH_KEY": KEY,
            "EVENTS_ROTATE_BYTES": str(1 << 40),
        }
        argv = ["bash", str(ROOT / "bench/project_target.sh"), str(self.run_dir)]
        self.target = ManagedProcess("target", pinned(argv, proxy_cpu), env, root)
        self.events_path = self.run_dir / "data/events.jsonl"

    def start(self) -> None:
        self.upstream.start()
        self.target.start()
        wait_http(self.url + "/readyz", self.target, timeout=60)

    def logger_pid(self) -> int:
        return int((self.run_dir / "logger.pid").read_text())

    def stop(self) -> None:
        self.target.stop()
        self.upstream.stop()


async def measure(args: argparse.Namespace, system: System) -> Result:
    parent, child = multiprocessing.Pipe()
    watcher = multiprocessing.Process(
        target=watch_file, args=(system.events_path, args.poll_ms / 1000, child), daemon=True
    )
    watcher.start()
    pids = (system.target.pid, system.logger_pid())
    cpu0 = [cpu_seconds(pid) for pid in pids]
    began = time.perf_counter()
    runs = await load(system.url, args.modes.split(","), args.rate, args.duration)
    wall = time.perf_counter() - began
    proxy_cpu, logger_cpu = (
        cpu_seconds(pid) - before for pid, before in zip(pids, cpu0, strict=True)
    )
    sent = sum(s.ok + s.errors + s.non2xx + s.incomplete for s in runs)
    parent.send(sent)
    delays, ids = await asyncio.to_thread(parent.recv)
    watcher.join()
    seconds = [delay / 1000 for delay in delays]
    latencies = [value for s in runs for value in s.latency]
    return Result(
        rate=args.rate,
        duration_s=args.duration,
        sent=sent,
        answered_ok=sum(s.ok for s in runs),
        http_errors=sent - sum(s.ok for s in runs),
        lines=len(ids),
        missing=max(0, sent - len(set(ids))),
        duplicates=len(ids) - len(set(ids)),
        delay_p50_ms=pct(seconds, 50),
        delay_p90_ms=pct(seconds, 90),
        delay_p99_ms=pct(seconds, 99),
        delay_max_ms=max(delays, default=None),
        http_p50_ms=pct(latencies, 50),
        http_p99_ms=pct(latencies, 99),
        generator_lag_p99_ms=pct([lag for s in runs for lag in s.lag], 99),
        proxy_cpu_pct=100 * proxy_cpu / wall,
        logger_cpu_pct=100 * logger_cpu / wall,
        pinned=not args.no_pin,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second, in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="bench/load.py modes, equal shares")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="how often to read the file")
    parser.add_argument("--proxy-cpu", default="0", help="CPU list for the proxy (taskset -c)")
    parser.add_argument("--side-cpu", default="1", help="CPU list for everything else")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    proxy_cpu, side_cpu = (None, None) if args.no_pin else (args.proxy_cpu, args.side_cpu)
    pin_self(side_cpu)
    with tempfile.TemporaryDirectory(prefix="b23-disk-delay.") as root:
        system = System(Path(root), proxy_cpu, side_cpu)
        try:
            system.start()
            result = uvloop.run(measure(args, system))
        finally:
            system.stop()
    print(result.line())
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
