"""Generate a realistic data directory of usage events, to measure reports on.

    .venv/bin/python scripts/gen_events.py --lines 1000000 --days 30 --out /tmp/b23-data

Lines have the shape the logger writes (README field order, prompts and responses cut to about
MAX_LOG_FIELD_SIZE, streamed responses as chunks + assembled result, tokens and their cost under
--prices: some models priced, some not), for a team of --users
people with one to three keys each, several models and client apps, a working-hours rhythm,
lognormal latencies and token counts, and a few percent of errors. By default each UTC day but
the last is a rotated file `events-<next day>T000000.jsonl` as the logger would leave it (the
last day is events.jsonl); --single-file puts everything in events.jsonl, and --sidecars writes
the rollup sidecars the logger writes after rotating.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import orjson

from logger_service.records import priced
from logger_service.rotated import write_sidecar
from shared.prices import parse_table

TEAM = """alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert
sybil trent victor walter yasmin zoe arjun bea chen dmitri elif farah goran hana ines jonas kenji
lena mateo noor oskar priya quinn rosa"""
NAMES = TEAM.split()
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "deepseek-chat", "o3-mini", "kimi-k2")
APPS = {
    "claude-code": "anthropic_messages",
    "anthropic-python-sdk": "anthropic_messages",
    "openai-python-sdk": "openai_chat",
    "cursor": "openai_chat",
    "continue": "openai_chat",
    "curl": "openai_chat",
}
ERRORS = (
    (0.02, 429, "rate limited upstream: 429"),
    (0.004, 502, "upstream unreachable: connection reset"),
    (0.003, 400, "invalid request: messages must not be empty"),
    (0.002, 504, "upstream silent for 600s"),
)
EXAMPLE_PRICES = Path(__file__).resolve().parent.parent / "config" / "prices.example.toml"
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 20, 19, 14, 17, 20, 20, 18, 14, 9, 6, 4, 3, 2, 1]
FIELD_SIZE = 2000
SAMPLE_TEXT = """the function returns a list of values from the database and we need to handle
the error case where the connection is closed before the query finishes please refactor this
class so that it uses dependency injection and add tests for the edge cases also explain why the
build fails on CI with a timeout in the integration step import os def main(): return 0"""
WORDS = SAMPLE_TEXT.split()


class Team:
    """Users with keys, each key with its usual client app and each user favourite models."""

    def __init__(self, rng: random.Random, users: int) -> None:
        self.keys = []
        for index in range(users):
            lap, name = divmod(index, len(NAMES))
            user = NAMES[name] + (str(lap) if lap else "")
            models = rng.sample(MODELS, k=rng.randint(1, 3))
            for _ in range(rng.choice((1, 1, 2, 3))):
                app = rng.choice(list(APPS))
                self.keys.append((user, f"key_{rng.getrandbits(64):016x}", app, models))
        self.weights = [rng.paretovariate(1.2) for _ in self.keys]


def text(rng: random.Random, median_chars: int) -> str:
    size = min(int(rng.lognormvariate(math.log(median_chars), 0.9)), 50_000)
    words = rng.choices(WORDS, k=max(1, size // 6))
    body = " ".join(words)
    if len(body) > FIELD_SIZE:
        body = body[:FIELD_SIZE] + f"…[truncated, {len(body)} chars]"
    return body


def record(rng: random.Random, team: Team, started_ms: int) -> dict:
    user, key_id, app, models = rng.choices(team.keys, team.weights)[0]
    model = rng.choice(models)
    stream = rng.random() < 0.7
    status, error = 200, None
    roll = rng.random()
    for share, code, message in ERRORS:
        if roll < share:
            status, error = code, message
            break
        roll -= share
    if error:
        latency = int(rng.lognormvariate(math.log(60 if status == 429 else 2000), 0.8))
        usage = None
        response = {"error": {"message": error, "type": "api_error"}}
    else:
        latency = int(rng.lognormvariate(math.log(6000 if stream else 1500), 0.8))
        prompt_tokens = int(rng.lognormvariate(math.log(3000), 1.0))
        completion = int(rng.lognormvariate(math.log(350), 0.9))
        cached = int(prompt_tokens * rng.random()) if rng.random() < 0.5 else 0
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "cached_tokens": cached,
        }
        response = reply(rng, model, stream, usage)
    messages = [
        {"role": "system", "content": "You are a careful coding assistant."},
        {"role": "user", "content": text(rng, 900)},
    ]
    return {
        "request_id": f"req_{rng.getrandbits(128):032x}",
        "protocol": APPS[app],
        "client_app": app,
        "user_id": user,
        "key_id": key_id,
        "upstream_id": None if error else f"chatcmpl-{rng.getrandbits(64):016x}",
        "model": model,
        "started_at_ms": started_ms,
        "ended_at_ms": started_ms + latency,
        "latency_ms": latency,
        "status_code": status,
        "error": error,
        "prompt": {"model": model, "messages": messages, "stream": stream},
        "response": response,
        "usage": usage,
    }


def reply(rng: random.Random, model: str, stream: bool, usage: dict) -> dict:
    content = text(rng, 600)
    message = {"role": "assistant", "content": content}
    result = {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }
    if not stream:
        return result
    pieces = content.split(" ")[:8]
    chunks = [
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]}
        for p in pieces
    ]
    return {"chunk_count": len(content.split(" ")) + 2, "assembled": result, "chunks": chunks}


def start_times(rng: random.Random, lines: int, end_ms: int, days: int) -> list[int]:
    """Request start times over the `days` before `end_ms`, with a working-hours rhythm and
    quieter weekends, sorted."""
    first_hour = end_ms // 3_600_000 - days * 24
    hours = range(first_hour, end_ms // 3_600_000)
    weekend = {hour for hour in hours if datetime.fromtimestamp(hour * 3600, UTC).weekday() >= 5}
    weights = [HOUR_WEIGHTS[hour % 24] * (0.25 if hour in weekend else 1) for hour in hours]
    return sorted(
        hour * 3_600_000 + rng.randrange(3_600_000) for hour in rng.choices(hours, weights, k=lines)
    )


def write(out: Path, lines: Iterator[tuple[int, bytes]], single_file: bool) -> list[Path]:
    """Lines into one file per UTC day of their end time (the last day is events.jsonl), as a
    logger rotating daily would leave them; returns the rotated files."""
    out.mkdir(parents=True, exist_ok=True)
    current = out / "events.jsonl"
    day_files: dict[int, Path] = {}
    with ExitStack() as stack:
        handles = {}
        for ended_ms, line in lines:
            day = 0 if single_file else ended_ms // 86_400_000
            if day not in handles:
                day_files[day] = out / f"events-{day}.partial"
                handles[day] = stack.enter_context(day_files[day].open("wb"))
            handles[day].write(line)
    last = max(day_files)
    rotated = []
    for day, path in sorted(day_files.items()):
        if day == last:
            path.rename(current)
            continue
        stamp = datetime.fromtimestamp((day + 1) * 86400, UTC).strftime("%Y%m%dT%H%M%S")
        rotated.append(path.rename(out / f"events-{stamp}.jsonl"))
    return rotated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data directory to create")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="ending now")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--single-file", action="store_true", help="no rotated files")
    parser.add_argument("--sidecars", action="store_true", help="write rotated files' sidecars")
    parser.add_argument(
        "--prices",
        type=Path,
        default=EXAMPLE_PRICES,
        help="price table the lines' costs are computed with (default: the example table)",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    team = Team(rng, args.users)
    began = time.perf_counter()
    end_ms = time.time_ns() // 1_000_000 - 600_000
    starts = start_times(rng, args.lines, end_ms, args.days)
    prices = parse_table(args.prices.read_bytes())
    records = (priced(record(rng, team, start), prices) for start in starts)
    lines = ((item["ended_at_ms"], orjson.dumps(item) + b"\n") for item in records)
    rotated = write(args.out, lines, args.single_file)
    took = time.perf_counter() - began
    print(f"{args.lines:,} lines, {len(rotated)} rotated files in {args.out} ({took:.1f}s)")
    if args.sidecars:
        began = time.perf_counter()
        for path in rotated:
            write_sidecar(path)
        print(f"{len(rotated)} sidecars ({time.perf_counter() - began:.1f}s)")


if __name__ == "__main__":
    main()
