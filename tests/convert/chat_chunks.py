"""Chat Completions chunks as an upstream streams them, for the stream translators' tests."""

from __future__ import annotations

import orjson


def chunk(delta: dict | None = None, finish: str | None = None, **extra: object) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "up",
        "choices": [choice],
        **extra,
    }


def content(text: str) -> dict:
    return chunk({"content": text})


def reasoning(text: str) -> dict:
    return chunk({"reasoning_content": text})


def tool(
    index: int | None, call_id: str | None = None, name: str | None = None, args: object = None
) -> dict:
    call: dict = {} if index is None else {"index": index}
    if call_id is not None:
        call |= {"id": call_id, "type": "function"}
    function = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    return chunk({"tool_calls": [call | {"function": function}]})


def finish(reason: str = "stop") -> dict:
    return chunk({}, reason)


def usage(prompt: int = 20, completion: int = 7, cached: int = 0, **extra: object) -> dict:
    """The include_usage trailer; `cached` as prompt_tokens_details, `extra` as more fields."""
    counts: dict = {"prompt_tokens": prompt, "completion_tokens": completion}
    counts["total_tokens"] = prompt + completion
    if cached:
        counts["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-1", "choices": [], "usage": counts | extra}


def sse(*chunks: dict, done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")
