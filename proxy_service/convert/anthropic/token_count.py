"""Local input-token estimate for `/v1/messages/count_tokens` and `message_start`.

Claude Code uses the count for its context meter and auto-compaction, so the estimate is biased
upward: ASCII text costs 1 token per 3.5 characters (English prose runs ~4 characters per token in
BPE tokenizers, code and JSON nearer 3), and each wide character (CJK, kana, emoji: 3-4 UTF-8
bytes) costs 1 token. Images cost a fixed 1,600 tokens (Anthropic's cap for a ~1.15 MP image), a
base64 PDF 1,600 per estimated page, tools a 350-token hidden tool prompt plus their name,
description and schema JSON, and every message 4 tokens of framing.

Accuracy has not been measured: no reference tokenizer is available offline here (tiktoken is
not installed and Anthropic's tokenizer is not public). Treat the result as a rough upper bound.
"""

from __future__ import annotations

import math

import orjson

_ASCII_CHARS_PER_TOKEN = 3.5
_MESSAGE_OVERHEAD = 4
_TOOL_OVERHEAD = 8
_TOOLS_PROMPT = 350
_IMAGE_TOKENS = 1600
_PDF_PAGE_TOKENS = 1600
_PDF_BASE64_CHARS_PER_PAGE = 80_000  # ~60 KB per page once decoded


def estimate_text(text: str) -> float:
    """Fractional tokens for one string; summed by callers and rounded up once."""
    if text.isascii():
        return len(text) / _ASCII_CHARS_PER_TOKEN
    chars = len(text)
    extra_bytes = len(text.encode("utf-8", "surrogatepass")) - chars
    wide = min(chars, extra_bytes // 2)  # 3-byte chars add 2 bytes each, 2-byte accents add 1
    return (chars - wide) / _ASCII_CHARS_PER_TOKEN + wide


def estimate_json(value: object) -> float:
    """Tokens for a JSON value as the model would see it serialized (tool inputs and schemas)."""
    if isinstance(value, str):
        return estimate_text(value)
    try:
        return estimate_text(orjson.dumps(value).decode())
    except TypeError:  # not JSON-serializable (bad client input): count its repr instead
        return estimate_text(repr(value))


def count_tokens(body: dict) -> int:
    """Estimated input tokens of a Messages request body; never 0, never raises on odd shapes."""
    total = _count_content(body.get("system"))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            total += _MESSAGE_OVERHEAD
            if isinstance(message, dict):
                total += _count_content(message.get("content"))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += _TOOLS_PROMPT
        for tool in tools:
            if isinstance(tool, dict):
                total += _TOOL_OVERHEAD + sum(
                    estimate_json(tool[key])
                    for key in ("name", "description", "input_schema")
                    if tool.get(key) is not None
                )
    return max(1, math.ceil(total))


def _count_content(content: object) -> float:
    """A string, or a list of blocks (also nested inside tool_result and document sources)."""
    if isinstance(content, str):
        return estimate_text(content)
    if not isinstance(content, list):
        return 0.0
    return sum(_count_block(block) for block in content)


def _count_block(block: object) -> float:
    if isinstance(block, str):
        return estimate_text(block)
    if not isinstance(block, dict):
        return 0.0
    match block.get("type"):
        case "image":
            return _IMAGE_TOKENS
        case "document":
            return _count_document(block)
        case "tool_use" | "server_tool_use":
            return estimate_json(block.get("name") or "") + estimate_json(block.get("input") or {})
        case "tool_result":
            return _count_content(block.get("content"))
        case "thinking":
            return _count_content(block.get("thinking"))
        case "search_result":
            return _count_content(block.get("content")) + _count_content(block.get("title"))
        case _:
            text = block.get("text")
            return estimate_text(text) if isinstance(text, str) else 0.0


def _count_document(block: dict) -> float:
    source = block.get("source")
    if not isinstance(source, dict):
        return 0.0
    match source.get("type"):
        case "base64":
            data = source.get("data")
            size = len(data) if isinstance(data, str) else 0
            return _PDF_PAGE_TOKENS * max(1, math.ceil(size / _PDF_BASE64_CHARS_PER_PAGE))
        case "text":
            return _count_content(source.get("data"))
        case "content":
            return _count_content(source.get("content"))
        case _:
            return _PDF_PAGE_TOKENS
