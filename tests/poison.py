"""Stream entries the logger must survive: events nested past what orjson writes (254 levels) or
reads (1024), in each place a proxy event can carry them, and other odd values. Built as bytes,
since no serialiser here writes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared.sse import encode_event

START_MS = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000
"""An hour in 2026: inside any retention, and in the usage test's report window."""
USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cached_tokens": 1}
SPLICE = "\x00deep\x00"


def deep_json(depth: int) -> bytes:
    """A list nested `depth` levels around a string."""
    return b"[" * depth + b'"leaf"' + b"]" * depth


def proxy_event(request_id: str, **fields: Any) -> dict[str, Any]:
    """An event with every field, in the order the proxy writes them."""
    return {
        "request_id": request_id,
        "protocol": "openai_chat",
        "client_app": "poison-test",
        "user_id": "mallory",
        "key_id": "key_poison",
        "upstream_id": None,
        "model": "m",
        "started_at_ms": START_MS,
        "ended_at_ms": START_MS + 9,
        "latency_ms": 9,
        "status_code": 200,
        "error": None,
        "prompt": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        "response": None,
        "usage": USAGE,
        **fields,
    }


def encode(event: dict[str, Any], deep: bytes = b"") -> bytes:
    """The event as the proxy's XADD field `e`, with `deep` spliced in where SPLICE is."""
    return orjson.dumps(event).replace(orjson.dumps(SPLICE), deep)


def openai_stream_with_deep_chunk(depth: int) -> str:
    chunk = b'{"choices":[{"index":0,"delta":{"content":"hi"}}],"x":' + deep_json(depth) + b"}"
    return "data: " + chunk.decode() + "\n\ndata: [DONE]\n\n"


def anthropic_stream_with_deep_tool_arguments(depth: int) -> str:
    """A tool_use block whose input_json_delta pieces assemble into `depth`-deep arguments."""
    arguments = '{"a":' + deep_json(depth).decode() + "}"
    half = len(arguments) // 2
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "usage": {}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "tu_1", "name": "f", "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in (arguments[:half], arguments[half:])
        ),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
        {"type": "message_stop"},
    ]
    return b"".join(encode_event(event["type"], event) for event in events).decode()


@dataclass(frozen=True)
class Poison:
    name: str
    request_id: str
    entry: bytes
    unprocessed: bool
    """Written with `unprocessed` (else processed as usual, the odd value kept)."""
    prompt_tokens: int | None = USAGE["prompt_tokens"]
    """What the rollup counts of its prompt tokens; None: not counted at all (no start time)."""


def deep_in(field: str, depth: int) -> Poison:
    request_id = f"req_deep_{field}_{depth}"
    entry = encode(proxy_event(request_id, **{field: SPLICE}), deep_json(depth))
    return Poison(f"{field} {depth} deep", request_id, entry, unprocessed=True)


def streamed(name: str, protocol: str, stream: str) -> Poison:
    request_id = f"req_{name.replace(' ', '_')}"
    event = proxy_event(request_id, protocol=protocol, response_stream=stream)
    return Poison(name, request_id, encode(event), unprocessed=True)


def odd_usage(name: str, usage: Any) -> Poison:
    """Written as usual; no token of it counted (2**64 - 1 would overflow Redis' counters)."""
    request_id = f"req_{name.replace(' ', '_')}"
    event = proxy_event(request_id, usage=usage)
    return Poison(name, request_id, orjson.dumps(event), unprocessed=False, prompt_tokens=0)


def unreadable(name: str, request_id: str, entry: bytes) -> Poison:
    """Past any parse: only a leading request_id can be read, or none (`{entry_id}`)."""
    return Poison(name, request_id, entry, unprocessed=True, prompt_tokens=None)


UNPROCESSABLE = (
    deep_in("prompt", 255),
    deep_in("prompt", 400),
    deep_in("prompt", 1000),
    deep_in("prompt", 1030),  # past what orjson reads: head and usage read around the prompt
    deep_in("response", 400),
    deep_in("user_id", 600),
    streamed("openai chunk 400 deep", "openai_chat", openai_stream_with_deep_chunk(400)),
    streamed(
        "anthropic tool arguments 600 deep",
        "anthropic_messages",
        anthropic_stream_with_deep_tool_arguments(600),
    ),
    unreadable("not JSON", "malformed-{entry_id}", b"{not json"),
    unreadable(
        "1100 deep, request_id first",
        "req_bare_1100",
        b'{"request_id":"req_bare_1100","deep":' + deep_json(1100) + b"}",
    ),
    unreadable(
        "1100 deep, no request_id first", "malformed-{entry_id}", b'{"a":' + deep_json(1100) + b"}"
    ),
)
USAGE_OVERFLOW = odd_usage("usage count 2**64 - 1", {**USAGE, "prompt_tokens": 2**64 - 1})
POISONS = (
    *UNPROCESSABLE,
    USAGE_OVERFLOW,
    odd_usage("usage count above 2**64", {**USAGE, "prompt_tokens": 2.0**65}),
    odd_usage("usage a string", "lots"),
    odd_usage("usage a list", [1, 2, 3]),
)
