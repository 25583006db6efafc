"""Dashboard page load times with a big history: N usage records (default 1,000,000) over 30
days, 200 keys of 50 users, 12 models, counted by the logger's own rollup into a private Redis
(aggregates and the recent-requests window), then every page fetched by a signed-in client from
a real proxy process, each page `--rounds` times; prints the median and the slowest, in ms.

    .venv/bin/python -m bench.ui_pages                       # 1,000,000 lines
    .venv/bin/python -m bench.ui_pages --lines 100000 --rounds 10

The pages never read events.jsonl (only Redis), so what a page costs depends on the keys, the
groups and the hours it folds, not on the file's size; the file is there to show that, and the
rollup's time to count it is printed too. Lines are slim (metadata, usage, tokens, cost: ~700
bytes), as truncated records are to the pages: the prompt and response parts are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from shared import redis_names
from shared.keys import KeyRecord, hash_api_key, key_hint, new_api_key, new_key_id, utc_now

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
MODELS = ["claude-sonnet-4-5", "gpt-4o", "model-3"] + [f"model-{n}" for n in range(4, 13)]
APPS = ["claude-code", "codex", "openai-python"]
DAY_MS = 86_400_000
PAGES = [
    "/ui/",
    "/ui/keys",
    "/ui/keys/{key_id}",
    "/ui/usage",
    "/ui/usage?since=30d&group_by=user,model",
    "/ui/usage.csv?since=30d&group_by=key,day",
    "/ui/requests",
    "/ui/requests?model=model-3&status=2xx",
    "/ui/models",
    "/me/",
]


def records(count: int, key_ids: list[str], users: list[str], now_ms: int, models: int, apps: int):
    """`count` record lines in time order over the 30 days before now, each key using
    `models` of the models and `apps` client apps (how many groups, hence cells, there are)."""
    seed = 1
    rng = random.Random(seed)
    start = now_ms - 30 * DAY_MS
    step = 30 * DAY_MS / count
    for n in range(count):
        index = rng.randrange(len(key_ids))
        prompt, cached, output = (
            rng.randint(100, 90_000),
            rng.randint(0, 60_000),
            rng.randint(1, 4000),
        )
        cached = min(cached, prompt)
        usd = ((prompt - cached) * 3 + cached * 0.3 + output * 15) / 1e6
        status = 200 if rng.random() < 0.97 else rng.choice([429, 500, 499])
        started = int(start + n * step)
        yield (
            orjson.dumps(
                {
                    "request_id": f"req_{n:032x}",
                    "protocol": "anthropic_messages",
                    "client_app": APPS[(index + rng.randrange(apps)) % len(APPS)],
                    "user_id": users[index % len(users)],
                    "key_id": key_ids[index],
                    "model": MODELS[(index + rng.randrange(models)) % len(MODELS)],
                    "started_at_ms": started,
                    "ended_at_ms": started + 1500,
                    "latency_ms": rng.randint(200, 30_000),
                    "status_code": status,
                    "error": None if status == 200 else "upstream said no",
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": output,
                        "total_tokens": prompt + output,
                        "cached_tokens": cached,
                    },
                    "tokens": {
                        "input": prompt - cached,
                        "cache_read": cached,
                        "cache_write_5m": 0,
                        "cache_write_1h": 0,
                        "output": output,
                        "reasoning": 0,
                    },
                    "cost": {
                        "usd": f"{usd:.6f}",
                        "breakdown": None,
                        "price_version": "sha256:bench",
                        "status": "priced",
                    },
                }
            )
            + b"\n"
        )


def key_set(count: int) -> tuple[list[str], list[KeyRecord]]:
    """`count` API keys of 50 users, some with limits and budgets (so the pages read them)."""
    api_keys = [new_api_key() for _ in range(count)]
    records = [
        KeyRecord(
            key_hash=hash_api_key(api_key),
            key_id=new_key_id(),
            key_hint=key_hint(api_key),
            created_at=utc_now(),
            user_id=f"user-{n % 50}",
            rpm_limit=600 if n % 3 == 0 else None,
            daily_token_quota=50_000_000 if n % 4 == 0 else None,
            budget_usd_daily=50 if n % 5 == 0 else None,
        )
        for n, api_key in enumerate(api_keys)
    ]
    return api_keys, records


async def prepare(redis_url: str, data: Path, args: argparse.Namespace, keys: list[KeyRecord]):
    """The key set into Redis as the logger loads it, the event file written, and the logger's
    rollup run over it to the end (timed)."""
    redis = Redis.from_url(redis_url)
    async with redis.pipeline(transaction=True) as pipe:
        for record in keys:
            pipe.hset(redis_names.KEYS_HASH, record.key_hash, record.to_redis())
        pipe.set(redis_names.KEYS_LOADED, "1")
        await pipe.execute()
    users = sorted({r.user_id for r in keys})
    key_ids = [r.key_id for r in keys]
    started = time.perf_counter()
    path = data / "events.jsonl"
    with path.open("wb") as file:
        now_ms = int(time.time() * 1000)
        file.writelines(records(args.lines, key_ids, users, now_ms, args.models, args.apps))
    size = path.stat().st_size
    took = time.perf_counter() - started
    print(f"wrote {args.lines:,} lines ({size / 1e6:,.0f} MB) in {took:.1f} s")
    started = time.perf_counter()
    counted = await Rollup(redis, path, 3650, recent_max=args.recent_max).catch_up()
    print(f"rollup counted {counted:,} lines in {time.perf_counter() - started:.1f} s")
    await redis.aclose()


def fetch_times(url: str, api_key: str, key_id: str, rounds: int) -> dict[str, list[float]]:
    client = httpx.Client(base_url=url, timeout=120)
    origin = {"Origin": url}
    login = client.post("/ui/login", data={"token": ADMIN_TOKEN}, headers=origin)
    admin = login.headers["set-cookie"].split(";", 1)[0]
    me_login = client.post("/me/login", data={"api_key": api_key}, headers=origin)
    me = me_login.headers["set-cookie"].split(";", 1)[0]
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for template in PAGES:
            path = template.format(key_id=key_id)
            cookie = me if path.startswith("/me") else admin
            started = time.perf_counter()
            response = client.get(path, headers={"Cookie": cookie})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
            times.setdefault(template, []).append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--models", type=int, default=12, help="models each key uses (1-12)")
    parser.add_argument("--apps", type=int, default=3, help="client apps each key uses (1-3)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--recent-max", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="b23-ui-bench-") as tmp:
        root = Path(tmp)
        port, proxy_port = _free_port(), _free_port()
        redis_server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        proxy = None
        try:
            time.sleep(0.3)
            redis_url = f"redis://127.0.0.1:{port}/0"
            data = root / "data"
            data.mkdir()
            api_keys, key_records = key_set(args.keys)
            asyncio.run(prepare(redis_url, data, args, key_records))
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "DATA_DIR": str(data),
                "UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1",
                "HOST": "127.0.0.1",
                "PORT": str(proxy_port),
                "RECENT_REQUESTS_MAX": str(args.recent_max),
            }
            proxy = subprocess.Popen(
                [sys.executable, "-m", "proxy_service"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(root / "proxy.log").open("wb"),
            )
            url = f"http://127.0.0.1:{proxy_port}"
            _wait(url + "/healthz")
            try:
                times = fetch_times(url, api_keys[0], key_records[0].key_id, args.rounds)
            except SystemExit:
                sys.stderr.write((root / "proxy.log").read_text()[-3000:])
                raise
            print(f"{'page':48} {'median ms':>10} {'max ms':>8}  ({args.rounds} rounds)")
            for page, values in times.items():
                print(f"{page:48} {statistics.median(values):10.1f} {max(values):8.1f}")
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait()
            redis_server.terminate()
            redis_server.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


if __name__ == "__main__":
    main()
