"""Time the usage aggregates on a data directory (see gen_events.py): the logger's rebuild of
them in Redis, their memory, and GET /admin/usage answering from them.

    .venv/bin/python scripts/bench_usage.py --data-dir /tmp/b23-1m --redis-url redis://...
    .venv/bin/python scripts/bench_usage.py ... --recent-max 0   # without the requests window

FLUSHES the given Redis database first. The endpoint runs in-process (httpx ASGITransport) with
the proxy's route, admin check and error handlers; only its lifespan is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from proxy_service.admin_guard import AdminGuard
from proxy_service.app import create_app
from proxy_service.routes import usage
from shared.redis_names import RECENT_REQUESTS
from shared.settings import Settings

TOKEN = "bench-admin-token-0123456789"
QUERIES = (
    {"since": "30d", "group_by": "user"},
    {"since": "30d", "group_by": "day"},
    {"since": "30d", "group_by": "model", "user_id": "alice"},
    {"since": "7d", "group_by": "client_app"},
    {"since": "36h", "group_by": "key"},
)


async def bench(data_dir: Path, redis_url: str, retention_days: int, recent_max: int) -> None:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    began = time.perf_counter()
    rollup = Rollup(redis, data_dir / "events.jsonl", retention_days, recent_max=recent_max)
    lines = await rollup.catch_up()
    print(f"rebuild: {lines:,} lines counted in {time.perf_counter() - began:.1f}s")
    if recent_max:
        entries = await redis.xlen(RECENT_REQUESTS)
        window = await redis.memory_usage(RECENT_REQUESTS, samples=0) or 0
        print(f"recent-requests window: {entries:,} entries, {window:,} bytes")
    memory = await redis.info("memory")
    print(f"redis: {await redis.dbsize():,} keys, {memory['used_memory_human']} used")
    settings = Settings(_env_file=None, admin_token=TOKEN, redis_url=redis_url, data_dir=data_dir)
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/admin/usage" for route in app.routes):
        app.include_router(usage.router)
    app.state.proxy = SimpleNamespace(settings=settings, redis=redis, admin_guard=AdminGuard())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        for params in QUERIES:
            times = []
            for _ in range(5):
                began = time.perf_counter()
                reply = await client.get(
                    "/admin/usage", params=params, headers={"x-admin-token": TOKEN}
                )
                times.append(time.perf_counter() - began)
            body = reply.raise_for_status().json()
            print(
                f"GET /admin/usage {params}: best {min(times) * 1000:.0f} ms, "
                f"median {sorted(times)[2] * 1000:.0f} ms; {len(body['groups'])} groups, "
                f"{body['totals']['requests']:,} requests"
            )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--redis-url", required=True, help="its database is flushed")
    parser.add_argument("--retention-days", type=int, default=90)
    parser.add_argument(
        "--recent-max",
        type=int,
        default=Settings.model_fields["recent_requests_max"].default,
        help="RECENT_REQUESTS_MAX (default: its default); 0 rebuilds without the window",
    )
    args = parser.parse_args()
    asyncio.run(bench(args.data_dir, args.redis_url, args.retention_days, args.recent_max))


if __name__ == "__main__":
    main()
