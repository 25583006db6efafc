"""Token estimates for OpenAI chat traffic whose upstream reported no usage. Pure.

Used when a stream ends before its usage chunk (the client left right after the answer, the
upstream broke) or an upstream sends no usage at all: without an estimate such requests would
be charged nothing, and a key's token limits could be evaded by closing streams early. The
rules are those of convert/anthropic/token_count.py (biased upward): the prompt from the
request body, the output from what was relayed to the client.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from proxy_service.convert.anthropic.token_count import estimate_json, estimate_text
from shared.sse import SSEDecoder

MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 1600
TOOLS_PROMPT = 350


def estimate_prompt(body: dict[str, Any]) -> int:
    """Input tokens of a Chat Completions request; never 0, never raises on odd shapes."""
    total = 0.0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        total += MESSAGE_OVERHEAD
        if isinstance(message, dict):
            total += _content(message.get("content"))
            for call in _list(message.get("tool_calls")):
                total += estimate_json(call)
    tools = _list(body.get("tools"))
    if tools:
        total += TOOLS_PROMPT + sum(estimate_json(tool) for tool in tools)
    return max(1, math.ceil(total))


def estimate_output(relayed: bytes) -> int:
    """Output tokens of what the client received: a chat.completion JSON body, or the SSE
    chunks of a stream (text, reasoning and tool arguments)."""
    try:
        answer = orjson.loads(relayed)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        parts = [_choice(c.get("message")) for c in _dicts(answer.get("choices"))]
    else:
        parts = [_streamed(event.data) for event in _events(relayed)]
    return math.ceil(sum(parts))


def _events(relayed: bytes) -> list:
    decoder = SSEDecoder()
    return [*decoder.feed(relayed), *decoder.flush()]


def _streamed(data: bytes) -> float:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return 0.0
    if not isinstance(chunk, dict):
        return 0.0
    return sum(_choice(choice.get("delta")) for choice in _dicts(chunk.get("choices")))


def _choice(message: Any) -> float:
    """Text, reasoning and tool-call arguments of a message or a delta."""
    if not isinstance(message, dict):
        return 0.0
    total = 0.0
    for field in ("content", "reasoning_content", "reasoning", "refusal"):
        if isinstance(text := message.get(field), str):
            total += estimate_text(text)
    for call in _dicts(message.get("tool_calls")):
        function = call.get("function")
        if isinstance(function, dict):
            for field in ("name", "arguments"):
                if isinstance(text := function.get(field), str):
                    total += estimate_text(text)
    return total


def _content(content: Any) -> float:
    if isinstance(content, str):
        return estimate_text(content)
    total = 0.0
    for part in _dicts(content):
        if part.get("type") in ("image_url", "input_image", "image"):
            total += IMAGE_TOKENS
        elif isinstance(text := part.get("text"), str):
            total += estimate_text(text)
        else:
            total += estimate_json(part)
    return total


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict]:
    return [item for item in _list(value) if isinstance(item, dict)]
