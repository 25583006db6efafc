"""Logger throughput: usage events per second the real logger moves from the Redis stream into
events.jsonl, truncation included (performance target: >= 20,000 events/s).

    # drain: pre-fill the stream with N events, start the logger, time it until N lines are on disk
    .venv/bin/python -m bench.logger_throughput --events 100000

    # sustained: the logger runs while a producer publishes at a fixed rate
    .venv/bin/python -m bench.logger_throughput --rate 20000 --duration 10

    # the same, every line priced by a price table (PRICES_FILE) that names MODEL
    .venv/bin/python -m bench.logger_throughput --real-size 80000 --events 20000 --prices p.toml

    # real sizes: Claude Code-shaped streamed Anthropic requests of ~80 KB, or a 370 KB session
    .venv/bin/python -m bench.logger_throughput --real-size 80000 --events 20000
    .venv/bin/python -m bench.logger_throughput --real-size 370000 --events 5000

Everything is private: a `redis-server` on a free port (`--save "" --appendonly no`), a DATA_DIR
in a temporary directory, and `python -m logger_service` exactly as deployed. The logger and its
Redis run under `taskset -c 1` (`--cpu`, `--redis-cpu`; like bench/project_target.sh's SIDE_CPU),
this script on the other CPUs; `--no-pin` pins nothing.

Events are published by the proxy's own EventPublisher (same stream, same field encoding), shaped
like the proxy's: bench/load.py's modes in turn (by default OpenAI and Anthropic, streamed and
not), with bench/load.py's request bodies as prompts and bench/fake_upstream.py's replies as
responses or `response_stream`; every `--long-every`-th round is long (a 20 KB prompt, 200-delta
streams), so truncation cuts strings and chunk lists. `--modes openai-nonstream --long-every 0`
shows the pipeline's own ceiling (Redis, file, acknowledgements; nothing to truncate). The run
checks that events.jsonl holds exactly one line per published event (no duplicates, none
missing) and prints one line; `--json` prints the figures as JSON too.

`--real-size N` replaces the mix with one shape of event: an Anthropic Messages body of about N
bytes as Claude Code sends it (system blocks with `cache_control`, 24 tool schemas, a history of
tool_use/tool_result round trips growing to the size; synthetic, seeded text, the same on every
run) and the streamed reply of one more round trip as `response_stream`; every request differs
in its last user message, so nothing is shared between events. The prompt is cut as the proxy
cuts it before publishing; `--whole-prompts` publishes it whole (the logger cuts it).

The drain rate counts from the first line on disk (the logger's start-up is shown apart);
the sustained mode reports the rate at which lines reached the disk while the producer ran, and
the backlog (published, not yet on disk) over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from bench.fake_upstream import Bodies
from bench.load import DEFAULT_MODES, MODES, payload
from bench.runkit import LineTail, cpu_seconds, other_cpus, pin_self, pinned
from proxy_service.bodies import logged_prompt
from proxy_service.publisher import EventBounds, EventPublisher
from shared import redis_names
from shared.settings import Settings
from shared.sse import encode_event
from tests.processes import RedisServer, logger_process, service_env

MODEL = "mock-model"
UPSTREAM_ID = "chatcmpl-fake0123456789abcdef"
USAGE = {"prompt_tokens": 120, "completion_tokens": 100, "total_tokens": 220, "cached_tokens": 0}
LONG_PROMPT_CHARS = 20_000
LONG_STREAM_DELTAS = 200
FILLER = "Please review this module and explain each function, with examples of its use. "
POLL_SECONDS = 0.01
SAMPLE_SECONDS = 0.5
TRUNCATED_MARKERS = (b"truncated, ", b"items omitted]")


WORDS = [
    "the",
    "file",
    "function",
    "module",
    "value",
    "error",
    "request",
    "stream",
    "token",
    "config",
    "test",
    "path",
    "line",
    "return",
    "build",
    "check",
    "parse",
    "cache",
    "server",
    "client",
    "handler",
    "schema",
    "field",
    "option",
    "index",
    "buffer",
    "record",
    "update",
    "read",
    "write",
    "list",
    "object",
    "string",
    "number",
    "array",
    "type",
    "default",
    "result",
    "output",
    "input",
]
TOOL_COUNT = 24
SEED = 23


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(WORDS, k=count))


def code_lines(rng: random.Random, count: int) -> str:
    """Lines that look like a source file a tool read (numbered, indented, code-like)."""
    return "\n".join(
        f"{n:>5}\t{'    ' * rng.randrange(4)}{rng.choice(WORDS)}_{rng.choice(WORDS)} = "
        f"{rng.choice(WORDS)}({rng.choice(WORDS)}, {rng.randrange(1000)})"
        for n in range(1, count + 1)
    )


def tool_schema(rng: random.Random, index: int) -> dict[str, Any]:
    """One of Claude Code's ~2.7 KB tool definitions: a long description, typed properties."""
    properties = {
        f"{rng.choice(WORDS)}_{n}": {
            "type": rng.choice(["string", "integer", "boolean", "array"]),
            "description": words(rng, 25),
            **({"enum": rng.sample(WORDS, 4)} if n % 3 == 0 else {}),
        }
        for n in range(6)
    }
    return {
        "name": f"Tool{index}_{rng.choice(WORDS)}",
        "description": words(rng, 180),
        "input_schema": {
            "type": "object",
            "properties": properties,
            "required": list(properties)[:2],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }


def round_trip(rng: random.Random, turn: int) -> list[dict[str, Any]]:
    """An assistant tool_use and the user's tool_result (a file read, a command's output)."""
    tool_id = f"toolu_{turn:04d}{rng.randrange(16**16):016x}"
    return [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": words(rng, 30)},
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": f"Tool{rng.randrange(TOOL_COUNT)}",
                    "input": {"file_path": f"/src/{rng.choice(WORDS)}.py", "limit": 200},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_id,
                    "content": code_lines(rng, rng.randrange(20, 120)),
                }
            ],
        },
    ]


def claude_code_body(size: int) -> dict[str, Any]:
    """A streamed Messages body of about `size` bytes, shaped as Claude Code sends it."""
    rng = random.Random(SEED)
    cached = {"type": "ephemeral"}
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": cached},
            {"type": "text", "text": words(rng, 1200), "cache_control": cached},
        ],
        "tools": [tool_schema(rng, index) for index in range(TOOL_COUNT)],
        "messages": [{"role": "user", "content": [{"type": "text", "text": words(rng, 60)}]}],
        "metadata": {"user_id": "user_" + "0" * 64},
    }
    turn = 0
    while len(orjson.dumps(body)) < size - 600:
        body["messages"][-1:-1] = round_trip(rng, turn)
        turn += 1
    return body


def claude_code_reply(deltas: int) -> str:
    """The SSE of one more round trip: text deltas, then a tool_use with its JSON in pieces."""
    rng = random.Random(SEED + 1)
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "usage": {"input_tokens": 20000, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": words(rng, 3) + " "},
            }
            for _ in range(deltas)
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_bench",
                "name": "Tool3",
                "input": {},
            },
        },
        *(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in ('{"file_path": "/src/', 'module.py", ', '"limit": 200}')
        ),
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 180},
        },
        {"type": "message_stop"},
    ]
    return b"".join(encode_event(event["type"], event) for event in events).decode()


@dataclass(frozen=True)
class Kind:
    """One shape of event: what the proxy publishes for one mode, short or long."""

    protocol: str
    prompt: orjson.Fragment
    response: Any
    stream: str | None


def kinds(modes: list[str], long: bool) -> list[Kind]:
    """bench/load.py modes, in order, with the fake upstream's replies."""
    bodies = Bodies(LONG_STREAM_DELTAS if long else 20)
    shapes = []
    for name in modes:
        proto, stream = MODES[name]["proto"], MODES[name]["stream"]
        body = orjson.loads(payload(proto, stream, MODEL))
        if long:
            text = (FILLER * (LONG_PROMPT_CHARS // len(FILLER) + 1))[:LONG_PROMPT_CHARS]
            content = text if proto == "openai" else [{"type": "text", "text": text}]
            body["messages"].append({"role": "user", "content": content})
        openai = proto == "openai"
        protocol = "openai_chat" if openai else "anthropic_messages"
        reply = bodies.openai_json if openai else bodies.anthropic_json
        frames = bodies.openai_sse if openai else bodies.anthropic_sse
        prompt = orjson.Fragment(orjson.dumps(body))
        if stream:
            shapes.append(Kind(protocol, prompt, None, b"".join(frames).decode()))
        else:
            shapes.append(Kind(protocol, prompt, orjson.Fragment(reply), None))
    return shapes


def proxy_event(index: int, kind: Kind, prompt: orjson.Fragment) -> dict[str, Any]:
    """Event `index` of one shape, as proxy_service/metering.py builds it."""
    ended = time.time_ns() // 1_000_000
    event = {
        "request_id": f"req_{index:032x}",
        "protocol": kind.protocol,
        "client_app": "bench",
        "user_id": "bench",
        "key_id": "key_bench",
        "upstream_id": UPSTREAM_ID,
        "model": MODEL,
        "started_at_ms": ended - 5,
        "ended_at_ms": ended,
        "latency_ms": 5,
        "status_code": 200,
        "error": None,
        "prompt": prompt,
        "response": kind.response,
        "usage": USAGE,
    }
    if kind.stream is not None:
        event["response_stream"] = kind.stream
    return event


class EventMaker:
    """Event i of the mix, as proxy_service/metering.py builds it."""

    def __init__(self, modes: list[str], long_every: int) -> None:
        self._short, self._long = kinds(modes, long=False), kinds(modes, long=True)
        self._long_every = long_every

    def __call__(self, index: int) -> dict[str, Any]:
        round_, mode = divmod(index, len(self._short))
        long = self._long_every > 0 and round_ % self._long_every == 0
        kind = (self._long if long else self._short)[mode]
        return proxy_event(index, kind, kind.prompt)


REQUEST_MARK = b"@@request@@"
REPLY_DELTAS = 60


class RealSizeMaker:
    """Event i: a Claude Code-sized streamed request, its last user message naming i, with the
    prompt as the proxy publishes it (cut to MAX_LOG_FIELD_SIZE by proxy_service.bodies), or
    whole (`whole_prompt`: what FULL_TRACE_LOGGING publishes, and what every event carried
    before the proxy cut prompts)."""

    def __init__(self, size: int, whole_prompt: bool) -> None:
        body = claude_code_body(size)
        body["messages"][-1]["content"].append({"type": "text", "text": REQUEST_MARK.decode()})
        self._body = orjson.dumps(body)
        self._budget = None if whole_prompt else Settings.model_fields["max_log_field_size"].default
        stream = claude_code_reply(REPLY_DELTAS)
        self._kind = Kind("anthropic_messages", orjson.Fragment(b"null"), None, stream)

    def __call__(self, index: int) -> dict[str, Any]:
        raw = self._body.replace(REQUEST_MARK, b"request %d" % index)
        prompt = logged_prompt(raw, orjson.loads(raw), self._budget)
        return proxy_event(index, self._kind, prompt)


Maker = EventMaker | RealSizeMaker


@dataclass
class Result:
    mode: str
    events: int
    lines: int
    duplicates: int
    missing: int
    truncated_lines: int
    events_per_s: float
    """Drain: from the first line on disk to the last; sustained: lines on disk per second while
    the producer ran."""
    seconds: float
    startup_s: float | None
    offered_per_s: float | None
    backlog_max: int | None
    backlog_end: int | None
    logger_cpu_pct: float
    redis_cpu_pct: float
    logger_cpu_us_per_event: float
    """The logger's CPU time per line written: what it could do with a CPU of its own (a figure
    a busy machine shifts far less than the rate)."""
    mb_per_s: float
    pinned: bool

    @property
    def exact(self) -> bool:
        """One line per published event: none twice, none missing."""
        return self.lines == self.events and not self.duplicates and not self.missing

    def line(self) -> str:
        check = "OK" if self.exact else "FAILED"
        text = (
            f"logger {self.mode}: {self.events_per_s:,.0f} events/s ({self.mb_per_s:.1f} MB/s "
            f"to disk) over {self.seconds:.2f}s; {self.lines:,}/{self.events:,} lines, "
            f"{self.duplicates} duplicates, {self.missing} missing, {self.truncated_lines:,} "
            f"truncated; logger CPU {self.logger_cpu_pct:.0f}% "
            f"({self.logger_cpu_us_per_event:,.0f} µs/event), Redis CPU {self.redis_cpu_pct:.0f}%"
        )
        if self.startup_s is not None:
            text += f"; start-up {self.startup_s:.2f}s"
        if self.offered_per_s is not None:
            text += (
                f"; offered {self.offered_per_s:,.0f}/s, backlog max {self.backlog_max:,} "
                f"end {self.backlog_end:,}"
            )
        return f"{text} [{check}]"


class Bench:
    """A private Redis and logger; the events it published and the lines it has seen."""

    def __init__(
        self, root: Path, cpu: str | None, redis_cpu: str | None, prices: Path | None = None
    ) -> None:
        self.redis_server = RedisServer(root)
        self.redis_server.process.argv = pinned(self.redis_server.process.argv, redis_cpu)
        data_dir = root / "data"
        env = service_env(
            self.redis_server.url,
            "http://127.0.0.1:9/v1",
            data_dir,
            EVENTS_ROTATE_BYTES=str(1 << 40),
            PYTHONDONTWRITEBYTECODE="1",
            **({"PRICES_FILE": str(prices.resolve())} if prices else {}),
        )
        self.logger = logger_process("logger", env, root)
        self.logger.argv = pinned(self.logger.argv, cpu)
        self.events_path = data_dir / "events.jsonl"
        self.tail = LineTail(self.events_path)
        self.lines = 0
        self.bytes = 0
        self.published = 0

    def poll(self) -> int:
        """Lines on disk so far."""
        for line in self.tail.new_lines():
            self.lines += 1
            self.bytes += len(line) + 1
        return self.lines

    async def wait_lines(self, count: int) -> None:
        while self.poll() < count:
            if not self.logger.alive():
                raise SystemExit(f"logger exited:\n{self.logger.log()[-3000:]}")
            await asyncio.sleep(POLL_SECONDS)

    def check(self) -> tuple[int, int, int]:
        """(duplicate request_ids, published ids missing, lines with a truncation marker)."""
        ids: Counter[str] = Counter()
        truncated = 0
        for raw in self.events_path.read_bytes().splitlines():
            ids[orjson.loads(raw)["request_id"]] += 1
            truncated += any(marker in raw for marker in TRUNCATED_MARKERS)
        expected = {f"req_{index:032x}" for index in range(self.published)}
        duplicates = sum(n - 1 for n in ids.values())
        return duplicates, len(expected - ids.keys()), truncated


async def drain(bench: Bench, redis: Redis, make: Maker, count: int) -> dict[str, Any]:
    """Pre-fill the stream, then time the logger from its start until every line is on disk."""
    publisher = EventPublisher(redis, EventBounds.none())
    for index in range(count):
        publisher.publish(make(index))
    await publisher.drain(timeout=600)
    bench.published = publisher.published
    started = time.perf_counter()
    bench.logger.start()
    cpu_redis0 = cpu_seconds(bench.redis_server.process.pid)
    await bench.wait_lines(1)
    first_at, first_lines, first_bytes = time.perf_counter(), bench.lines, bench.bytes
    first_cpu = cpu_seconds(bench.logger.pid)
    await bench.wait_lines(count)
    ended = time.perf_counter()
    logger_cpu = cpu_seconds(bench.logger.pid)
    redis_cpu = cpu_seconds(bench.redis_server.process.pid) - cpu_redis0
    seconds = max(ended - first_at, 1e-9)
    return {
        "mode": "drain",
        "events_per_s": (count - first_lines) / seconds,
        "mb_per_s": (bench.bytes - first_bytes) / seconds / 1e6,
        "seconds": seconds,
        "startup_s": first_at - started,
        "logger_cpu_pct": 100 * logger_cpu / (ended - started),
        "redis_cpu_pct": 100 * redis_cpu / (ended - started),
        "logger_cpu_us_per_event": 1e6 * (logger_cpu - first_cpu) / max(count - first_lines, 1),
    }


async def sustained(
    bench: Bench, redis: Redis, make: Maker, rate: float, duration: float
) -> dict[str, Any]:
    """Publish at `rate` for `duration` while the logger runs; sample the backlog."""
    bench.logger.start()
    while not await redis.exists(redis_names.LOGGER_HEARTBEAT):
        await asyncio.sleep(POLL_SECONDS)
    total = int(rate * duration)
    publisher = EventPublisher(redis, EventBounds.none())
    runner = asyncio.create_task(publisher.run())
    loop = asyncio.get_running_loop()
    cpu_logger0 = cpu_seconds(bench.logger.pid)
    cpu_redis0 = cpu_seconds(bench.redis_server.process.pid)
    lines0, bytes0 = bench.poll(), bench.bytes
    started = loop.time()
    next_sample, backlogs, made = started, [], 0
    while made < total:
        due = min(total, int((loop.time() - started) * rate))
        for index in range(made, due):
            publisher.publish(make(index))
        made = due
        if loop.time() >= next_sample:
            backlogs.append(made - bench.poll())
            next_sample += SAMPLE_SECONDS
        await asyncio.sleep(0.001)
    produced = loop.time() - started
    lines, written = bench.poll() - lines0, bench.bytes - bytes0
    logger_cpu = cpu_seconds(bench.logger.pid) - cpu_logger0
    redis_cpu = cpu_seconds(bench.redis_server.process.pid) - cpu_redis0
    backlog_end = total - bench.lines
    while publisher.pending:
        await asyncio.sleep(POLL_SECONDS)
    runner.cancel()
    bench.published = publisher.published
    await bench.wait_lines(total)
    return {
        "mode": "sustained",
        "events_per_s": lines / produced,
        "mb_per_s": written / produced / 1e6,
        "seconds": produced,
        "offered_per_s": total / produced,
        "backlog_max": max([*backlogs, backlog_end]),
        "backlog_end": backlog_end,
        "logger_cpu_pct": 100 * logger_cpu / produced,
        "redis_cpu_pct": 100 * redis_cpu / produced,
        "logger_cpu_us_per_event": 1e6 * logger_cpu / max(lines, 1),
    }


async def run(args: argparse.Namespace, root: Path) -> Result:
    cpu = None if args.no_pin else args.cpu
    bench = Bench(root, cpu, None if args.no_pin else (args.redis_cpu or args.cpu), args.prices)
    make = (
        RealSizeMaker(args.real_size, args.whole_prompts)
        if args.real_size
        else EventMaker(args.modes.split(","), args.long_every)
    )
    bench.redis_server.start()
    redis = Redis.from_url(bench.redis_server.url)
    try:
        if args.rate:
            figures = await sustained(bench, redis, make, args.rate, args.duration)
        else:
            figures = await drain(bench, redis, make, args.events)
    finally:
        bench.logger.stop()
        await redis.aclose()
        bench.redis_server.stop()
    duplicates, missing, truncated = bench.check()
    defaults = {"startup_s": None, "offered_per_s": None, "backlog_max": None, "backlog_end": None}
    return Result(
        **{**defaults, **figures},
        events=bench.published,
        lines=bench.lines,
        duplicates=duplicates,
        missing=missing,
        truncated_lines=truncated,
        pinned=cpu is not None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="drain: events pre-filled")
    parser.add_argument("--rate", type=float, default=0.0, help="sustained: events/s published")
    parser.add_argument("--duration", type=float, default=10.0, help="sustained: seconds")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="bench/load.py modes, in turn")
    parser.add_argument(
        "--real-size", type=int, default=0, help="Claude Code-shaped events of ~N bytes instead"
    )
    parser.add_argument(
        "--whole-prompts",
        action="store_true",
        help="--real-size: events carry the whole prompt (the logger cuts it), not the proxy's cut",
    )
    parser.add_argument("--long-every", type=int, default=10, help="1 round in N is long; 0: none")
    parser.add_argument(
        "--prices",
        type=Path,
        help="PRICES_FILE for the logger: every line priced (model " + MODEL + ")",
    )
    parser.add_argument("--cpu", default="1", help="CPU list for the logger (taskset -c)")
    parser.add_argument("--redis-cpu", default="", help="CPU list for Redis (default: --cpu)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if not args.no_pin:
        pin_self(other_cpus(args.cpu))
    with tempfile.TemporaryDirectory(prefix="b23-logger-bench.") as root:
        result = asyncio.run(run(args, Path(root)))
    print(result.line())
    if args.json:
        print(json.dumps(asdict(result)))
    if not result.exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
