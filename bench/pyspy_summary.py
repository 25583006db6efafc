"""Summarise `py-spy record --format raw` output: where the proxy's CPU goes.

    py-spy record -p <pid> -d 15 -r 100 --format speedscope -o prof.json   # under saturation load
    python bench/pyspy_summary.py prof.json [--top 15] [--markdown] [--us-per-request 380]

Speedscope input (preferred) keeps the samples in time order, so runs of identical consecutive
samples (the proxy was not running: descheduled by another process, or py-spy catching up) are
counted once. Raw input (`--format raw`, collapsed stacks) is accepted too, without that filter.

Prints, as percentages of the main thread's samples (idle worker threads are dropped):
  * layers: every sample charged to exactly one layer, the innermost frame that belongs to a
    package we can name (stdlib frames such as `ipaddress`, `uuid`, `contextlib` are charged to
    the package that called them); samples that stop in the event loop's `run` are the loop's
    own C work (uvloop: epoll, socket reads and writes, callback dispatch);
  * named costs: inclusive time of the functions that matter for the proxy (authentication,
    metering, the usage-event XADD pipeline, conversions, httpx URL parsing, ...);
  * top functions by self time and by cumulative time.
With `--us-per-request N` (CPU µs per request, measured separately) percentages are also shown
as µs per request. py-spy charges time in C code (orjson, hiredis, hashlib) to the Python frame
that called it.

Measure on an otherwise idle core: if the proxy is descheduled, py-spy keeps sampling the frozen
stack and inflates whatever line it stopped at.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter

PACKAGE_LAYERS = {
    "uvicorn": "uvicorn (HTTP parsing, ASGI send/receive)",
    "httptools": "uvicorn (HTTP parsing, ASGI send/receive)",
    "fastapi": "FastAPI + Starlette (middleware, routing, dependencies, Request/Response)",
    "starlette": "FastAPI + Starlette (middleware, routing, dependencies, Request/Response)",
    "anyio": "anyio + sniffio (StreamingResponse task group, cancel scopes)",
    "sniffio": "anyio + sniffio (StreamingResponse task group, cancel scopes)",
    "httpx": "httpx layer (URL, Request, Headers, Response objects)",
    "httpx_aiohttp": "httpx layer (URL, Request, Headers, Response objects)",
    "httpcore": "httpx layer (URL, Request, Headers, Response objects)",
    "aiohttp": "aiohttp client (pool, request write, response parse)",
    "yarl": "aiohttp client (pool, request write, response parse)",
    "multidict": "aiohttp client (pool, request write, response parse)",
    "redis": "redis-py (usage-event XADD pipeline, key pub/sub)",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
}
LOOP_LAYER = "event loop (uvloop C: epoll, socket I/O, callbacks) + asyncio"

NAMED = [  # (label, regex on "function (file")
    (
        "Upstream call, all of it (post / open_stream / chunks / aclose)",
        r"^(Upstream\.(post|open_stream)|UpstreamStream\.(chunks|aclose|read_error_body)) "
        r"\(proxy_service",
    ),
    ("  httpx: build_request (URL parse, Headers, Request)", r"^BaseClient\.build_request \(httpx"),
    ("  httpx: URL parsing (urlparse, incl. ipaddress check)", r"^urlparse \(httpx"),
    (
        "  httpx-aiohttp transport + aiohttp request",
        r"^AiohttpTransport\.handle_async_request \(httpx_aiohttp",
    ),
    ("FastAPI/Starlette: solve_dependencies", r"^solve_dependencies \(fastapi"),
    (
        "FastAPI/Starlette: route matching",
        r"^(_IncludedRouter\._match|_EffectiveRouteContext\.matches|Route\.matches"
        r"|APIRoute\.matches) ",
    ),
    ("uvicorn: RequestResponseCycle.send", r"^RequestResponseCycle\.send \(uvicorn"),
    ("StreamingResponse machinery", r"^StreamingResponse\.(__call__|stream_response) \(starlette"),
    ("our: authenticate (key parse + SHA-256 + lookup)", r"^authenticate \(proxy_service"),
    ("our: UsageMeter() (uuid4 request id, client_app)", r"^UsageMeter\.__init__ \(proxy_service"),
    ("our: uuid4", r"^(uuid4|UUID\.__init__|UUID\.hex) \(uuid"),
    (
        "our: UsageMeter.finish (event dict, publish, charge)",
        r"^UsageMeter\.finish \(proxy_service",
    ),
    ("our: usage-event publisher task (XADD pipeline)", r"^EventPublisher\.run \(proxy_service"),
    ("our: key-sync task (pub/sub)", r"^KeyStore\.run \(proxy_service"),
    ("our: read_body", r"^read_body \(proxy_service"),
    ("our: parse_json_object (orjson.loads)", r"^parse_json_object \(proxy_service"),
    (
        "our: Anthropic -> OpenAI request conversion",
        r"^anthropic_to_openai_request \(proxy_service",
    ),
    ("  of which count_tokens", r"^count_tokens \(proxy_service"),
    (
        "our: OpenAI -> Anthropic message conversion",
        r"^openai_to_anthropic_message \(proxy_service",
    ),
    (
        "our: OpenAI stream tap (usage/id capture)",
        r"^OpenAIStreamTap\.(feed|flush) \(proxy_service",
    ),
    ("our: Anthropic stream translator", r"^AnthropicStreamTranslator\.\w+ \(proxy_service"),
    ("  of which SSE decoding (shared/sse.py)", r"^SSEDecoder\.feed \(shared"),
    ("our: Anthropic relay reader task + queue", r"^_Reader\.(_pump|chunks|close) \(proxy_service"),
    ("our: metering of non-stream replies (_meter_reply)", r"^_meter_reply \(proxy_service"),
    ("our: relay generators (_relay)", r"^_relay \(proxy_service"),
]

FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
IDLE_LEAVES = {("Condition.wait", "threading.py"), ("Event.wait", "threading.py")}
"""Idle worker threads (anyio's pool waits in Condition.wait) that py-spy may count as active."""


def short_file(file: str) -> str:
    """py-spy prints paths relative to sys.path entries already (e.g. `fastapi/routing.py`)."""
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    for ours in ("proxy_service", "shared", "logger_service"):  # absolute paths of our modules
        if f"/{ours}/" in file:
            return ours + "/" + file.split(f"/{ours}/", 1)[1]
    return file


def parse(path: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack_text, _, count = line.rpartition(" ")
            frames = []
            for raw in stack_text.split(";"):
                m = FRAME_RE.match(raw)
                func, file = (m["func"], short_file(m["file"])) if m else (raw, "")
                frames.append((func, file))
            if (frames[-1][0], frames[-1][1]) in IDLE_LEAVES:
                continue
            stacks.append((frames, int(count)))
    return stacks


def parse_speedscope(
    path: str, keep_repeats: bool
) -> tuple[list[tuple[list[tuple[str, str]], int]], int]:
    """The main thread's samples in time order. A run of identical consecutive samples (same
    frames, same lines) means the process did not run between them (descheduled, or py-spy fell
    behind and caught up): it is counted once unless `keep_repeats`. Returns (stacks, dropped)."""
    with open(path) as f:
        doc = json.load(f)
    frames = [(fr["name"], short_file(fr.get("file") or "")) for fr in doc["shared"]["frames"]]
    profiles = doc["profiles"]
    main = [p for p in profiles if "MainThread" in p.get("name", "")] or profiles[:1]
    stacks: list[tuple[list[tuple[str, str]], int]] = []
    dropped = 0
    for profile in main:
        previous = None
        for sample in profile["samples"]:
            key = tuple(sample)
            if key == previous and not keep_repeats:
                dropped += 1
                continue
            previous = key
            stack = [frames[i] for i in sample]
            if stack and (stack[-1][0], stack[-1][1]) not in IDLE_LEAVES:
                stacks.append((stack, 1))
    return stacks, dropped


def package(file: str) -> str:
    return file.split("/", 1)[0] if "/" in file else ""


def layer_of(frames: list[tuple[str, str]]) -> str:
    """The innermost frame of a named package (or our code) owns the sample."""
    for func, file in reversed(frames):
        if func == "Runner.run" and file.startswith("asyncio/"):
            return LOOP_LAYER
        pkg = package(file)
        if pkg in ("proxy_service", "shared"):
            module = file.rsplit(".", 1)[0].replace("/", ".")
            return f"our code: {module}"
        if pkg in PACKAGE_LAYERS:
            return PACKAGE_LAYERS[pkg]
    return LOOP_LAYER


def label(frame: tuple[str, str]) -> str:
    return f"{frame[0]} ({frame[1]})"


def summarise(
    path: str, top: int, markdown: bool, us: float | None, keep_repeats: bool = False
) -> str:
    dropped = 0
    if path.endswith(".json"):
        stacks, dropped = parse_speedscope(path, keep_repeats)
    else:
        stacks = parse(path)
    total = sum(count for _, count in stacks)
    if not total:
        return "no samples"
    layers: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    cum_fn: Counter[str] = Counter()
    named: Counter[str] = Counter()
    patterns = [(name, re.compile(rx)) for name, rx in NAMED]
    for frames, count in stacks:
        layers[layer_of(frames)] += count
        self_fn[label(frames[-1])] += count
        labels = {label(f) for f in frames}
        for name in labels:
            cum_fn[name] += count
        for name, rx in patterns:
            if any(rx.search(text) for text in labels):
                named[name] += count

    def cell(n: int) -> str:
        share = 100 * n / total
        return f"{share:.1f}%" + (f" | {share * us / 100:.0f}" if us else "")

    head = "| % |" + (" µs/req |" if us else "")
    rule = "---:|" + ("---:|" if us else "")
    out = [
        f"{total} main-thread samples from {path}"
        + (f" ({dropped} repeated consecutive samples dropped)" if dropped else ""),
        "",
    ]

    def table(title: str, rows: list[tuple[str, int]]) -> None:
        if markdown:
            out.extend([f"| {title} {head}", f"|---|{rule}"])
            out.extend(f"| {name} | {cell(n)} |" for name, n in rows)
        else:
            out.append(title + ":")
            out.extend(f"  {cell(n).replace(' | ', '  '):>14}  {name}" for name, n in rows)
        out.append("")

    table("layer (exclusive, sums to 100%)", layers.most_common())
    table("named cost (inclusive)", [(name, named[name]) for name, _ in NAMED if named[name]])
    table(f"top {top} self time", self_fn.most_common(top))
    cum = [(f, n) for f, n in cum_fn.most_common() if n < total * 0.999]
    table(f"top {top} cumulative (below the event loop)", cum[:top])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--keep-repeats",
        action="store_true",
        help="speedscope input: keep runs of identical consecutive samples",
    )
    parser.add_argument(
        "--us-per-request",
        type=float,
        default=None,
        help="CPU µs per request measured in the same run, to convert % to µs",
    )
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.markdown, args.us_per_request, args.keep_repeats))


if __name__ == "__main__":
    main()
