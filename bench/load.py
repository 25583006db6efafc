"""Load generator for the proxy: throughput at saturation and latency at a fixed rate.

    # closed loop: 32 requests always in flight for 10 s, every mode, proxy and upstream directly
    python bench/load.py --url http://127.0.0.1:8866 --direct-url http://127.0.0.1:18080 \\
        --key bsk-... --saturate --concurrency 32 --duration 10

    # open loop: 20 requests per second, started on schedule whatever the replies do
    python bench/load.py --url http://127.0.0.1:8866 --key bsk-... --rate 20 --duration 10

Modes (`--modes`, comma-separated; default the first four): openai-nonstream, openai-stream,
anthropic-nonstream, anthropic-stream, plus openai-stream-paced and anthropic-stream-paced (the
fake upstream spaces events 5 ms apart for model `mock-paced`: time to first token), and the
real-size modes, whose bodies come from `bench/bodies.py`: anthropic-nonstream-78k,
anthropic-stream-78k, anthropic-stream-370k (Claude Code: 24 tool schemas, system blocks, tool
round trips), openai-nonstream-77k, openai-stream-77k (an agent framework on Chat Completions),
responses-stream-77k (Codex) and responses-stream (`POST /v1/responses`, ~1 KB). The upstream
has no Responses API in the bridge mode, so `--direct-url` skips the responses modes.

The basic modes send the same ~1 KB conversation (system prompt and three turns). A reply counts
as OK when it is HTTP 200 and complete: the fake upstream's last marker `END-OF-MOCK-REPLY.` is
in it, plus `[DONE]` (OpenAI streams), `message_stop` (Anthropic streams) or `response.completed`
(Responses streams). Against a real upstream (`--model` some real model, `--no-check`) only the
status is checked; do not saturate a paid API.

Mixed traffic (`--rate 20 --mix-rate 200 --mix-mode openai-stream`): beside each fixed-rate run,
a second open loop sends the mix mode at its own rate on the same connections pool; both are
reported apart, the measured mode as `<mode>+mix` and the background as `<mix mode>@<rate>/s`,
so the p99 of real-size requests under a flood of small ones stands alone.

Measured per run: completed req/s, latency p50/p90/p99 (open loop: from the *scheduled* send
time, so a stalled proxy is not hidden by a waiting generator; the generator's own lag is shown
too), time to first token for streams (first body bytes containing `Sure!`), errors and non-2xx.
With `--direct-url` the same load also runs against the upstream directly, and the report shows
the proxy's overhead (p50 minus direct p50) and throughput ratio.

The generator is one Python process (aiohttp). It reports its own CPU use: above ~80% it is the
bottleneck, not the proxy; then run it on its own core (`taskset -c 1`) with fewer connections
or split modes across several processes. `--out results.json` keeps the numbers;
`bench/report.py results.json` (or `--report` here) prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bodies import preset

SYSTEM = (
    "You are a helpful coding assistant. Answer concisely, prefer short code examples, and "
    "explain trade-offs when there are several reasonable options. "
) * 3
TURNS = [
    ("user", "How do I read a large CSV file in Python without loading it all into memory?"),
    (
        "assistant",
        "Use the csv module with a file iterator, or pandas.read_csv with chunksize=... to "
        "process it in pieces.",
    ),
    (
        "user",
        "Show me the pandas version and explain what chunksize does, in two or three sentences.",
    ),
]

MODES: dict[str, dict[str, Any]] = {
    "openai-nonstream": {"proto": "openai", "stream": False},
    "openai-stream": {"proto": "openai", "stream": True},
    "anthropic-nonstream": {"proto": "anthropic", "stream": False},
    "anthropic-stream": {"proto": "anthropic", "stream": True},
    "openai-stream-paced": {"proto": "openai", "stream": True, "paced": True},
    "anthropic-stream-paced": {"proto": "anthropic", "stream": True, "paced": True},
    "anthropic-nonstream-78k": {"proto": "anthropic", "stream": False, "body": True},
    "anthropic-stream-78k": {"proto": "anthropic", "stream": True, "body": True},
    "anthropic-stream-370k": {"proto": "anthropic", "stream": True, "body": True},
    "openai-nonstream-77k": {"proto": "openai", "stream": False, "body": True},
    "openai-stream-77k": {"proto": "openai", "stream": True, "body": True},
    "responses-stream-77k": {"proto": "responses", "stream": True, "body": True},
    "responses-stream": {"proto": "responses", "stream": True, "body": True},
}
DEFAULT_MODES = "openai-nonstream,openai-stream,anthropic-nonstream,anthropic-stream"
END_MARKER = b"END-OF-MOCK-REPLY."
# what ends a complete stream, and in how many last bytes (response.completed repeats the request)
TAILS = {"openai": (b"[DONE]", 200), "anthropic": (b"message_stop", 200)}
TAILS["responses"] = (b"event: response.completed", 1 << 30)
TTFT_MARKER = b"Sure!"


def body_for(name: str, mode: dict[str, Any], model: str) -> bytes:
    """The mode's request body: a bench/bodies.py preset, or the basic ~1 KB conversation."""
    return (
        preset(name, model=model)
        if mode.get("body")
        else payload(mode["proto"], mode["stream"], model)
    )


def payload(proto: str, stream: bool, model: str) -> bytes:
    if proto == "openai":
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": SYSTEM.strip()}]
            + [{"role": role, "content": text} for role, text in TURNS],
            "max_tokens": 256,
            "temperature": 0.2,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
    else:
        body = {
            "model": model,
            "max_tokens": 256,
            "system": SYSTEM.strip(),
            "temperature": 0.2,
            "messages": [
                {"role": role, "content": [{"type": "text", "text": text}]} for role, text in TURNS
            ],
        }
        if stream:
            body["stream"] = True
    return json.dumps(body).encode()


def headers_for(proto: str, key: str) -> dict[str, str]:
    auth = {"x-api-key": key} if proto == "anthropic" else {"authorization": f"Bearer {key}"}
    extra = {"anthropic-version": "2023-06-01"} if proto == "anthropic" else {}
    return {"content-type": "application/json", **auth, **extra}


def path_for(proto: str) -> str:
    return {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}.get(
        proto, "/v1/responses"
    )


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)  # seconds
    ttft: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # open loop: actual minus scheduled send
    ok: int = 0
    errors: int = 0
    non2xx: int = 0
    incomplete: int = 0
    first_error: str = ""


@dataclass
class Result:
    target: str  # "proxy" or "direct"
    mode: str
    kind: str  # "saturate" or "rate"
    concurrency: int
    rate: float
    duration_s: float
    requests: int
    ok: int
    errors: int
    non2xx: int
    incomplete: int
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    lag_p99_ms: float | None
    loader_cpu_pct: float
    first_error: str = ""


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index] * 1000


async def one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    mode: dict[str, Any],
    check: bool,
    start: float,
    samples: Samples | None,
) -> None:
    """Send one request, read it whole, record latency (from `start`) into `samples`."""
    ttft = None
    try:
        async with session.post(url, data=body, headers=headers) as reply:
            status = reply.status
            if mode["stream"]:
                parts = []
                async for data in reply.content.iter_any():
                    if ttft is None and TTFT_MARKER in data:
                        ttft = time.perf_counter() - start
                    parts.append(data)
                text = b"".join(parts)
            else:
                text = await reply.read()
        done = time.perf_counter() - start
    except Exception as error:  # counted, and the first one shown
        if samples is not None:
            samples.errors += 1
            samples.first_error = samples.first_error or f"{type(error).__name__}: {error}"[:200]
        return
    if samples is None:
        return
    if not 200 <= status < 300:
        samples.non2xx += 1
        samples.first_error = samples.first_error or f"HTTP {status}: {text[:160]!r}"
        return
    if check:
        tail, window = TAILS[mode["proto"]]
        if END_MARKER not in text or (mode["stream"] and tail not in text[-window:]):
            samples.incomplete += 1
            samples.first_error = samples.first_error or f"incomplete reply: {text[-160:]!r}"
            return
    samples.ok += 1
    samples.latency.append(done)
    if ttft is not None:
        samples.ttft.append(ttft)


async def saturate(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    mode: dict[str, Any],
    check: bool,
    concurrency: int,
    duration: float,
    warmup: float,
) -> tuple[Samples, float]:
    """Closed loop: `concurrency` workers, each sending its next request when the last ends."""
    samples = Samples()
    phase = {"record": False}
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + warmup + duration

    async def worker() -> None:
        while loop.time() < stop_at:
            start = time.perf_counter()
            await one(
                session,
                url,
                body,
                headers,
                mode,
                check,
                start,
                samples if phase["record"] else None,
            )

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    phase["record"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    phase["record"] = False
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    return samples, elapsed


async def fixed_rate(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    mode: dict[str, Any],
    check: bool,
    rate: float,
    duration: float,
    warmup: float,
) -> tuple[Samples, float]:
    """Open loop: request i is due at t0 + i/rate; one task per request, never waiting."""
    samples = Samples()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    total_warm, total = int(warmup * rate), int((warmup + duration) * rate)
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = samples if i >= total_warm else None
        if record is not None:
            record.lag.append(max(0.0, time.perf_counter() - due))
        tasks.append(loop.create_task(one(session, url, body, headers, mode, check, due, record)))
    await asyncio.gather(*tasks)
    return samples, duration


def summarise(
    target: str,
    name: str,
    kind: str,
    args: argparse.Namespace,
    samples: Samples,
    elapsed: float,
    cpu: float,
    rate: float | None = None,
) -> Result:
    requests = samples.ok + samples.errors + samples.non2xx + samples.incomplete
    return Result(
        target=target,
        mode=name,
        kind=kind,
        concurrency=args.concurrency if kind == "saturate" else 0,
        rate=(args.rate if rate is None else rate) if kind == "rate" else 0.0,
        duration_s=round(elapsed, 3),
        requests=requests,
        ok=samples.ok,
        errors=samples.errors,
        non2xx=samples.non2xx,
        incomplete=samples.incomplete,
        rps=round(samples.ok / elapsed, 1) if elapsed else 0.0,
        p50_ms=pct(samples.latency, 50),
        p90_ms=pct(samples.latency, 90),
        p99_ms=pct(samples.latency, 99),
        ttft_p50_ms=pct(samples.ttft, 50),
        ttft_p99_ms=pct(samples.ttft, 99),
        lag_p99_ms=pct(samples.lag, 99),
        loader_cpu_pct=round(cpu, 1),
        first_error=samples.first_error,
    )


async def run_all(args: argparse.Namespace) -> list[Result]:
    targets = [("proxy", args.url.rstrip("/"))]
    if args.direct_url:
        targets.append(("direct", args.direct_url.rstrip("/")))
    kinds = (["saturate"] if args.saturate else []) + (["rate"] if args.rate else [])
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        for name in args.modes:
            mode = MODES[name]
            model = args.paced_model if mode.get("paced") else args.model
            body = body_for(name, mode, model)
            headers = headers_for(mode["proto"], args.key)
            for target, base in targets:
                if target == "direct" and mode["proto"] == "responses":
                    continue  # the fake upstream speaks chat and messages only
                url = base + path_for(mode["proto"])
                for kind in kinds:
                    if kind == "saturate" and mode.get("paced"):
                        continue  # paced modes measure latency, not throughput
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    if kind == "saturate":
                        samples, elapsed = await saturate(
                            session,
                            url,
                            body,
                            headers,
                            mode,
                            args.check,
                            args.concurrency,
                            args.duration,
                            args.warmup,
                        )
                    else:
                        measured = fixed_rate(
                            session,
                            url,
                            body,
                            headers,
                            mode,
                            args.check,
                            args.rate,
                            args.duration,
                            args.warmup,
                        )
                        if args.mix_rate:
                            mix = mixed_in(session, base, args)
                            (samples, elapsed), (mix_samples, _) = await asyncio.gather(
                                measured, mix
                            )
                        else:
                            samples, elapsed = await measured
                    cpu = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
                    mixed = kind == "rate" and args.mix_rate
                    label = f"{name}+mix" if mixed else name
                    result = summarise(target, label, kind, args, samples, elapsed, cpu)
                    results.append(result)
                    print(one_line(result), file=sys.stderr, flush=True)
                    if mixed:
                        background = f"{args.mix_mode}@{args.mix_rate:g}/s"
                        result = summarise(
                            target, background, kind, args, mix_samples, elapsed, cpu, args.mix_rate
                        )
                        results.append(result)
                        print(one_line(result), file=sys.stderr, flush=True)
    return results


def mixed_in(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace
) -> Any:  # a coroutine of fixed_rate's result
    """The background open loop of `--mix-rate`: the mix mode beside the measured one."""
    mode = MODES[args.mix_mode]
    return fixed_rate(
        session,
        base + path_for(mode["proto"]),
        body_for(args.mix_mode, mode, args.model),
        headers_for(mode["proto"], args.key),
        mode,
        args.check,
        args.mix_rate,
        args.duration,
        args.warmup,
    )


def one_line(r: Result) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    what = f"c={r.concurrency}" if r.kind == "saturate" else f"{r.rate:g}/s"
    text = (
        f"{r.target:6} {r.mode:22} {r.kind:8} {what:7} {r.rps:9.1f} req/s  p50 {ms(r.p50_ms)} "
        f"p99 {ms(r.p99_ms)} ms  ttft p50 {ms(r.ttft_p50_ms)}  ok {r.ok}/{r.requests}  "
        f"loader cpu {r.loader_cpu_pct:.0f}%"
    )
    if r.first_error:
        text += f"\n       first error: {r.first_error}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8866", help="the proxy's base URL")
    parser.add_argument("--direct-url", default="", help="the upstream's base URL, for overheads")
    parser.add_argument(
        "--key", default=os.environ.get("BENCH_KEY", "bsk-bench"), help="proxy API key"
    )
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"any of {', '.join(MODES)}")
    parser.add_argument("--saturate", action="store_true", help="closed loop at --concurrency")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this many req/s")
    parser.add_argument(
        "--mix-rate", type=float, default=0.0, help="with --rate: background req/s of --mix-mode"
    )
    parser.add_argument("--mix-mode", default="openai-stream", help="the background's mode")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unrecorded seconds before each run"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--paced-model", default="mock-paced")
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="only check the status (a real upstream has no markers)",
    )
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument("--report", action="store_true", help="print markdown tables at the end")
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in [*args.modes, args.mix_mode] if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    if not args.saturate and not args.rate:
        parser.error("choose --saturate and/or --rate N")
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    results = run(run_all(args))
    document = {
        "args": {k: v for k, v in vars(args).items() if k != "key"},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": [asdict(r) for r in results],
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(document, f, indent=1)
        print(f"results in {args.out}", file=sys.stderr)
    if args.report:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from report import render

        print(render(document))


if __name__ == "__main__":
    main()
