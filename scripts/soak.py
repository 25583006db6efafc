"""Soak test: the whole system under steady load for N minutes with periodic faults.

Runs Redis, a logger, two proxies and the fake upstream as real processes on loopback, sends
requests at a steady rate (both protocols, streaming and not) and, every `--fault-every` seconds,
injects the next fault in turn: logger SIGKILL + restart, Redis stop for 5 s + restart (empty),
proxy SIGTERM + restart. At the end it checks that every request got a well-formed answer and that
events.jsonl holds exactly one line per request, and prints a summary.

    .venv/bin/python scripts/soak.py --minutes 10 --rate 20
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.load import Background
from tests.processes import RedisServer, fake_upstream_process, free_port, wait_http
from tests.system import System

KEY = "bsk-soak-000000000001"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20, help="requests per second")
    parser.add_argument("--fault-every", type=float, default=30, help="seconds between faults")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="b23-soak-"))
    (root / "redis").mkdir()
    redis = RedisServer(root / "redis").start()
    port = free_port()
    upstream = fake_upstream_process(port, root).start()
    wait_http(f"http://127.0.0.1:{port}/_requests", upstream)
    system = System(
        redis.url, f"http://127.0.0.1:{port}/v1", root / "system", SHUTDOWN_GRACE_SECONDS="10"
    )
    try:
        system.start_logger()
        system.start_proxy()
        system.start_proxy()
        system.upsert(KEY, "soak")
        total = int(args.minutes * 60 * args.rate)
        load = Background(system.proxy_urls, KEY, total, args.rate, ("openai", "anthropic"))
        faults = itertools.cycle(("logger", "redis", "proxy"))
        injected: Counter[str] = Counter()
        deadline = time.monotonic() + args.minutes * 60 - args.fault_every / 2
        while time.monotonic() + args.fault_every < deadline:
            time.sleep(args.fault_every)
            fault = next(faults)
            inject(fault, system, redis)
            injected[fault] += 1
            print(f"{time.strftime('%H:%M:%S')} injected {fault}", flush=True)
        outcomes = load.join(timeout=args.minutes * 60 + 300)
        reached = [o for o in outcomes if o.status]
        events = system.wait_events(len(reached), timeout=60)
        recorded = {e["request_id"] for e in events}
        duplicates = len(events) - len(recorded)
        lost = [o.request_id for o in reached if o.request_id and o.request_id not in recorded]
        malformed = sum(not o.well_formed for o in reached)
        errors = sum(not o.complete for o in reached)
        print(
            f"SOAK | {args.minutes:g} min | faults {dict(injected)} | {len(outcomes)} sent | "
            f"{len(outcomes) - len(reached)} refused before reaching a proxy | "
            f"{len(events)} recorded | {duplicates} duplicates | {len(lost)} lost | "
            f"{malformed} malformed | {errors} client-visible errors"
        )
        return 0 if duplicates == malformed == len(lost) == 0 else 1
    finally:
        system.stop()
        upstream.stop()
        redis.stop()


def inject(fault: str, system: System, redis: RedisServer) -> None:
    if fault == "logger":
        system.logger.kill()
        time.sleep(2)
        system.start_logger()
    elif fault == "redis":
        redis.stop()
        time.sleep(5)
        redis.start()
    else:
        # A rolling restart, as a load balancer does it: no new requests to the replica, which
        # drains what it has (SIGTERM), restarts and comes back.
        victim, url = system.proxies.pop(0), system.proxy_urls.pop(0)
        victim.stop(timeout=20)
        victim.start()
        wait_http(url + "/readyz", victim, timeout=30)
        system.proxies.append(victim)
        system.proxy_urls.append(url)


if __name__ == "__main__":
    sys.exit(main())
