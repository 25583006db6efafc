"""Record lines as the logger writes them (logger_service/records.py from proxy-shaped events),
varied the way the recent-requests window must show them: every route, streamed or not, errors,
aborts, estimates, unpriced models."""

from __future__ import annotations

import random
from typing import Any

import orjson

from logger_service.records import record_line
from shared.events import Protocol
from shared.settings import Settings
from tests.poison import START_MS, proxy_event
from tests.processes import ADMIN_TOKEN
from tests.usage_data import PRICES

SETTINGS = Settings(_env_file=None, admin_token=ADMIN_TOKEN)
PROTOCOLS: tuple[Protocol, ...] = (
    "openai_chat",
    "openai_embeddings",
    "openai_responses",
    "anthropic_messages",
    "anthropic_count_tokens",
)
STREAMED = frozenset({"openai_chat", "openai_responses", "anthropic_messages"})
USERS = {"alice": ("key_a1", "key_a2"), "bob": ("key_b1",), "carol": ("key_c1",)}
MODELS = ("gpt-4o", "claude-sonnet-4", "deepseek-chat", "local-llm", None)
"""Priced, priced, unpriced, free (tests/usage_data.py's PRICES), none."""
OUTCOMES = (
    (200, None),
    (200, None),
    (200, None),
    (200, "upstream unreachable: connection reset mid-stream"),
    (429, "rate limit: 60 requests per minute"),
    (499, "client disconnected mid-stream"),
    (500, "internal proxy error: RuntimeError"),
    (502, "upstream unreachable"),
)
PROMPT_TEXT = "SECRET-PROMPT-TEXT "
RESPONSE_TEXT = "SECRET-RESPONSE-TEXT "


def stream_text(protocol: str) -> str:
    if protocol == "anthropic_messages":
        events = [
            {"type": "message_start", "message": {"id": "msg_1", "role": "assistant"}},
            {"type": "content_block_delta", "index": 0, "delta": {"text": RESPONSE_TEXT}},
            {"type": "message_stop"},
        ]
    else:
        events = [{"choices": [{"index": 0, "delta": {"content": RESPONSE_TEXT}}]}]
    return "".join(f"data: {orjson.dumps(event).decode()}\n\n" for event in events)


def proxy_events(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` events, the i-th started i seconds after START_MS, with its expected stream
    flag as `_streamed`."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        protocol = PROTOCOLS[index % len(PROTOCOLS)]
        user = rng.choice(list(USERS))
        status, error = rng.choice(OUTCOMES)
        streamed = protocol in STREAMED and rng.random() < 0.5
        usage = None
        if protocol != "anthropic_count_tokens" and status in (200, 499):
            usage = {
                "prompt_tokens": rng.randint(0, 5000),
                "completion_tokens": rng.randint(0, 900),
                "total_tokens": 0,
                "cached_tokens": rng.choice([0, 100]),
            }
            if status == 499:
                usage["estimated"] = True
        started = START_MS + index * 1000
        fields: dict[str, Any] = {
            "protocol": protocol,
            "user_id": user,
            "key_id": rng.choice(USERS[user]),
            "client_app": rng.choice(("claude-code", "curl", "openai-python-sdk")),
            "upstream_id": f"up_{index}",
            "model": rng.choice(MODELS),
            "started_at_ms": started,
            "ended_at_ms": started + 250,
            "latency_ms": 250,
            "status_code": status,
            "error": error,
            "prompt": {"messages": [{"role": "user", "content": PROMPT_TEXT * 3}]},
            "usage": usage,
        }
        if streamed:
            fields["response"] = None
            fields["response_stream"] = stream_text(protocol)
        else:
            fields["response"] = {"choices": [{"message": {"content": RESPONSE_TEXT}}]}
        event = proxy_event(f"req_{seed}_{index}", **fields)
        event["_streamed"] = streamed
        events.append(event)
    return events


def line_of(event: dict[str, Any]) -> bytes:
    """The line the logger writes for the event (priced with PRICES)."""
    sent = {name: value for name, value in event.items() if name != "_streamed"}
    _, line = record_line("1-0", {b"e": orjson.dumps(sent)}, SETTINGS, PRICES)
    return line


def record_lines(count: int, seed: int = 1) -> list[bytes]:
    return [line_of(event) for event in proxy_events(count, seed)]
