"""A fast fake LLM upstream for load tests: Python stdlib only (asyncio, raw HTTP/1.1 keep-alive).

    python bench/fake_upstream.py --port 18080            # then UPSTREAM_BASE_URL=http://127.0.0.1:18080/v1

POST .../chat/completions  an OpenAI `chat.completion`, or an SSE stream when the body has
                           `"stream": true` (role chunk, N content deltas, finish chunk, usage
                           chunk, `data: [DONE]`)
POST .../messages          the equivalent Anthropic message or SSE stream, so a load test can
                           also measure the upstream directly ("DIRECT") for both protocols
GET  /health, .../models   200

Every body is rendered once at start-up; per request the server only finds `"stream"` and
`"model"` in the body with two regular expressions. Streams go out one event per write, in
chunked encoding (one HTTP chunk per event, as a real upstream sends them). A model name that
contains `paced` gets `--pace-ms` between events from the first content delta on, so time to
first token through a proxy can be measured; `--latency-ms` delays every reply (headers included).
The first content delta starts with `Sure!` and the last one ends with `END-OF-MOCK-REPLY.`,
which `bench/load.py` uses to check that replies arrive whole. The replies mirror the shared
rig's Go mock (same shapes, 120 prompt tokens, 100 completion tokens).

It uses uvloop when installed (the project's venv has it; `--no-uvloop` to compare). One
process, one core; about 20-40 µs of CPU per JSON reply with uvloop, a few times less than any
Python proxy in front of it, but pin it to its own core (`taskset -c 1`) when you measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from typing import Any

CREATED = 1732600000
MODEL = "mock-model"
PROMPT_TOKENS = 120
TEXT = (
    "Sure! Here is a short answer from the mock upstream, written to look like a realistic "
    "streamed chat completion, token by token, until the very end."
)
WORDS = TEXT.split()  # the shared rig's Go mock uses the same words, four per content delta

STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]*)"')


def pieces(n: int) -> list[str]:
    """n content deltas of four words each; the first starts with the TTFT marker `Sure!`."""
    words = [w + " " for w in WORDS]
    out = ["".join(words[(i * 4 + j) % len(words)] for j in range(4)) for i in range(n)]
    if not out[0].startswith("Sure!"):
        out[0] = "Sure! " + out[0]
    out[-1] += "END-OF-MOCK-REPLY."
    return out


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Bodies:
    """Pre-rendered replies: JSON bodies and lists of SSE events (bytes)."""

    def __init__(self, chunks: int) -> None:
        parts = pieces(chunks)
        text = "".join(parts)
        completion = chunks * 5
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        cid = "chatcmpl-fake0123456789abcdef"
        head = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL}
        self.openai_json = dumps(
            {
                "id": cid,
                "object": "chat.completion",
                "created": CREATED,
                "model": MODEL,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + dumps({**head, "choices": [choice]}) + b"\n\n"

        self.openai_sse = [chunk({"role": "assistant", "content": ""}, None)]
        self.openai_sse += [chunk({"content": part}, None) for part in parts]
        self.openai_sse.append(chunk({}, "stop"))
        self.openai_sse.append(b"data: " + dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
        self.openai_sse.append(b"data: [DONE]\n\n")

        mid = "msg_fake0123456789abcdef"
        self.anthropic_json = dumps(
            {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": completion},
            }
        )

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"

        start = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
        }
        block = {"type": "text", "text": ""}
        self.anthropic_sse = [
            event("message_start", {"type": "message_start", "message": start}),
            event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            event("ping", {"type": "ping"}),
        ]
        self.anthropic_sse += [
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": part},
                },
            )
            for part in parts
        ]
        self.anthropic_sse += [
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
            ),
            event("message_stop", {"type": "message_stop"}),
        ]
        # chunked-encoding frames, rendered once too
        self.openai_frames = [frame(e) for e in self.openai_sse]
        self.anthropic_frames = [frame(e) for e in self.anthropic_sse]


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def head(status: str, content_type: bytes, length: int | None, close: bool) -> bytes:
    lines = [
        b"HTTP/1.1 " + status.encode(),
        b"content-type: " + content_type,
        b"x-request-id: req_fake",
    ]
    if length is None:
        lines += [b"transfer-encoding: chunked", b"cache-control: no-cache"]
    else:
        lines.append(b"content-length: %d" % length)
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


MODELS = b'{"object":"list","data":[{"id":"mock-model","object":"model"}]}'
LAST_CHUNK = b"0\r\n\r\n"


class FakeUpstream(asyncio.Protocol):
    """One connection: parse requests (Content-Length or chunked bodies), answer in order."""

    def __init__(self, bodies: Bodies, pace: float, latency: float) -> None:
        self.bodies, self.pace, self.latency = bodies, pace, latency
        self.buf = bytearray()
        self.busy = False  # a slow (delayed or paced) reply is being written
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while self.transport is not None and not self.busy:
            request = self.take_request()
            if request is None:
                return
            self.answer(*request)

    def take_request(self) -> tuple[bytes, bytes, bytes, bool] | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buf[:end]).split(b"\r\n")
        method, path, version = [*lines[0].split(b" "), b"", b""][:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        close = headers.get(b"connection", b"").lower() == b"close" or version == b"HTTP/1.0"
        start = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body, pos = bytearray(), start
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(self.buf[pos:eol].split(b";")[0], 16)
                if len(self.buf) < eol + 2 + size + 2:
                    return None
                if size == 0:
                    trailer_end = self.buf.find(b"\r\n\r\n", eol)
                    if trailer_end < 0:
                        return None
                    pos = trailer_end + 4
                    break
                body += self.buf[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
            del self.buf[:pos]
            return method, path, bytes(body), close
        length = int(headers.get(b"content-length", b"0") or 0)
        if len(self.buf) < start + length:
            return None
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return method, path, body, close

    def answer(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        transport = self.transport
        assert transport is not None
        if method == b"GET" and (path == b"/health" or path.endswith(b"/models")):
            transport.write(head("200 OK", b"application/json", len(MODELS), close) + MODELS)
        elif method != b"POST" or not path.endswith((b"/chat/completions", b"/messages")):
            message = b'{"error":{"message":"not found"}}'
            transport.write(
                head("404 Not Found", b"application/json", len(message), close) + message
            )
        else:
            anthropic = path.endswith(b"/messages")
            stream = STREAM_RE.search(body) is not None
            model = MODEL_RE.search(body)
            paced = model is not None and b"paced" in model.group(1)
            if (paced and stream) or self.latency:
                self.busy = True  # later pipelined requests wait until this reply is out
                asyncio.get_running_loop().create_task(
                    self.slow_reply(anthropic, stream, paced, close)
                )
                return
            if stream:
                frames = self.bodies.anthropic_frames if anthropic else self.bodies.openai_frames
                transport.write(head("200 OK", b"text/event-stream", None, close))
                for f in frames:  # one write (one HTTP chunk, usually one segment) per event
                    transport.write(f)
                transport.write(LAST_CHUNK)
            else:
                data = self.bodies.anthropic_json if anthropic else self.bodies.openai_json
                transport.write(head("200 OK", b"application/json", len(data), close) + data)
        if close:
            transport.close()

    async def slow_reply(self, anthropic: bool, stream: bool, paced: bool, close: bool) -> None:
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.transport is None:
                return
            if not stream:
                data = self.bodies.anthropic_json if anthropic else self.bodies.openai_json
                self.transport.write(head("200 OK", b"application/json", len(data), close) + data)
            else:
                frames = self.bodies.anthropic_frames if anthropic else self.bodies.openai_frames
                pace_from = 3 if anthropic else 1  # preamble events go out at once
                self.transport.write(head("200 OK", b"text/event-stream", None, close))
                loop = asyncio.get_running_loop()
                due = loop.time()
                for index, f in enumerate(frames):
                    if paced and index >= pace_from:
                        due += self.pace  # absolute schedule: timer slack does not add up
                        await asyncio.sleep(max(0.0, due - loop.time()))
                    if self.transport is None:
                        return
                    self.transport.write(f)
                self.transport.write(LAST_CHUNK)
            if close:
                self.transport.close()
        finally:
            self.busy = False
            if self.transport is not None and self.buf:
                self.process()


async def serve(args: argparse.Namespace) -> None:
    bodies = Bodies(args.chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FakeUpstream(bodies, args.pace_ms / 1000, args.latency_ms / 1000),
        args.host,
        args.port,
        backlog=1024,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"fake upstream on http://{args.host}:{args.port}/v1 ({args.chunks} deltas per stream)",
        flush=True,
    )
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--chunks", type=int, default=20, help="content deltas per streamed reply")
    parser.add_argument(
        "--pace-ms", type=float, default=5.0, help="gap between events for 'paced' models"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio event loop")
    args = parser.parse_args()
    run = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            pass
    run(serve(args))


if __name__ == "__main__":
    main()
