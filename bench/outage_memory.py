"""Memory under a Redis or logger outage at a steady rate of real-size requests.

    python -m bench.outage_memory --fault redis --seconds 60 --rate 50
    python -m bench.outage_memory --fault logger --seconds 120 --rate 50

Starts a private Redis, the fake upstream, a logger and one proxy (tests/processes.py), sends
`--mode` bodies (bench/bodies.py) at `--rate` req/s: `--warmup` seconds, then the fault for
`--seconds`, then recovery (Redis restarted empty, or the logger started again) until every
request has its record. Prints the proxy's RSS (peak and at the end of the outage), Redis's
used_memory and the stream's length, what /readyz says about the event buffers, and whether
each request got exactly one record (compacted or not).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import redis

from bench.bodies import PRESETS, preset
from shared import redis_names
from tests.processes import RedisServer, fake_upstream_process, free_port, wait_http
from tests.system import System

KEY = "bsk-outage-memory-01"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    """Open loop: one request every 1/rate s on a thread pool; request ids collected."""

    def __init__(self, url: str, mode: str, rate: float) -> None:
        anthropic = PRESETS[mode].kind == "anthropic"
        self._url = url + ("/v1/messages" if anthropic else "/v1/chat/completions")
        self._body = preset(mode)
        self._rate = rate
        self._pool = concurrent.futures.ThreadPoolExecutor(64)
        self._client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64))
        self.statuses: Counter[int] = Counter()
        self.ids: list[str] = []
        self._lock = threading.Lock()

    def _one(self) -> None:
        headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
        reply = self._client.post(self._url, content=self._body, headers=headers)
        with self._lock:
            self.statuses[reply.status_code] += 1
            self.ids.append(reply.headers.get("x-request-id") or reply.headers["request-id"])

    def run(self, seconds: float, sample) -> None:
        start = time.monotonic()
        futures = []
        for index in range(int(seconds * self._rate)):
            delay = start + index / self._rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(self._pool.submit(self._one))
            if index % int(self._rate) == 0:
                sample()
        concurrent.futures.wait(futures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=("redis", "logger"), required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--mode", default="anthropic-nonstream-78k", choices=sorted(PRESETS))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="b23-outage-"))
    (root / "redis").mkdir()
    server = RedisServer(root / "redis").start()
    upstream_port = free_port()
    upstream = fake_upstream_process(upstream_port, root).start()
    wait_http(f"http://127.0.0.1:{upstream_port}/_requests", upstream)
    system = System(server.url, f"http://127.0.0.1:{upstream_port}/v1", root / "system")
    try:
        system.start_logger()
        system.start_proxy()
        assert system.upsert(KEY, "outage").status_code == 200
        proxy_pid = system.proxies[0].pid
        load = Load(system.url, args.mode, args.rate)
        print(f"body: {len(preset(args.mode))} bytes ({args.mode}), {args.rate} req/s")
        load.run(args.warmup, lambda: None)
        system.wait_events(len(load.ids), timeout=60)
        print(f"after warm-up: proxy RSS {rss_mib(proxy_pid):.0f} MiB")
        client = redis.Redis.from_url(server.url)
        peaks = {"rss": 0.0, "redis": 0, "xlen": 0}

        def sample() -> None:
            peaks["rss"] = max(peaks["rss"], rss_mib(proxy_pid))
            if args.fault == "logger":
                peaks["redis"] = max(peaks["redis"], client.info("memory")["used_memory"])
                peaks["xlen"] = max(peaks["xlen"], client.xlen(redis_names.EVENTS_STREAM))

        base_redis = client.info("memory")["used_memory"]
        if args.fault == "redis":
            server.stop()
        else:
            system.logger.kill()
        sent_before = len(load.ids)
        load.run(args.seconds, sample)
        sample()
        state = system.readyz().json()
        print(f"outage of {args.seconds:.0f} s: {len(load.ids) - sent_before} requests")
        print(f"proxy RSS: peak {peaks['rss']:.0f} MiB, at the end {rss_mib(proxy_pid):.0f} MiB")
        if args.fault == "logger":
            print(
                f"Redis used_memory: {base_redis / 2**20:.1f} MiB before, peak "
                f"{peaks['redis'] / 2**20:.1f} MiB; stream peak {peaks['xlen']} entries"
            )
        keys = ("events_pending", "events_pending_bytes", "events_dropped", "events_compacted")
        print("readyz:", {k: state[k] for k in (*keys, "events_unconfirmed_bytes", "stream")})
        if args.fault == "redis":
            server.start()
        else:
            system.start_logger()
        events = system.wait_events(len(load.ids), timeout=300)
        per_id = Counter(e["request_id"] for e in events)
        compacted = sum(bool(e.get("compacted")) for e in events)
        print(
            f"recovered: {len(load.ids)} requests ({dict(load.statuses)}), {len(events)} records, "
            f"{sum(n > 1 for n in per_id.values())} duplicates, "
            f"{len(set(load.ids) - set(per_id))} missing, {compacted} compacted, "
            f"usage kept in all: {all(e['usage'] for e in events)}"
        )
        print(f"proxy RSS after recovery: {rss_mib(proxy_pid):.0f} MiB")
    finally:
        system.stop()
        upstream.stop()
        server.stop()


if __name__ == "__main__":
    main()
