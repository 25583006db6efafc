"""Reading an OpenAI chat message or stream delta: the fields every target protocol needs.

Buffered and streamed conversions, to Anthropic and to Responses alike, read reasoning, text and
tool calls through these, so the same upstream output converts the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator


def reasoning_text(payload: dict) -> str:
    """`reasoning_content` (DeepSeek, vLLM, SGLang) or `reasoning` (OpenRouter), first non-empty."""
    value = payload.get("reasoning_content") or payload.get("reasoning")
    return value if isinstance(value, str) else ""


def visible_text(payload: dict) -> str:
    """`content` (a string, or text parts from some servers) plus any `refusal`."""
    content = payload.get("content")
    refusal = payload.get("refusal")
    if refusal is None and isinstance(content, str):
        return content  # the per-chunk fast path
    if isinstance(content, list):
        content = "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    texts = [t for t in (content, refusal) if isinstance(t, str) and t]
    return "\n\n".join(texts)


def message_calls(message: dict) -> Iterator[tuple[str, object, object]]:
    """(name, arguments, id) of each named `tool_calls` entry and of a legacy `function_call`."""
    calls = message.get("tool_calls")
    entries = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    if isinstance(legacy := message.get("function_call"), dict):
        entries.append({"function": legacy})
    for entry in entries:
        function = entry.get("function")
        if isinstance(function, dict) and isinstance(name := function.get("name"), str) and name:
            yield name, function.get("arguments"), entry.get("id")
