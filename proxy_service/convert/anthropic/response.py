"""OpenAI chat completion -> Anthropic Message (conversion spec §3), and the shared pieces.

The stream translator reuses the helpers here (usage, tool ids, tool input, stop reason), so a
streamed and a buffered answer to the same upstream output agree field for field. Nothing here
raises on odd upstream JSON: a missing choice or a null message still yields a valid Message.
"""

from __future__ import annotations

import math
import re

import json_repair
import orjson

from proxy_service.convert.anthropic.request import ConvertedRequest
from proxy_service.convert.anthropic.token_count import estimate_json, estimate_text
from proxy_service.convert.openai.message import message_calls, reasoning_text, visible_text
from proxy_service.convert.openai.usage import token_count
from proxy_service.ids import random_hex
from shared.usage_split import split_usage

_TOOL_ID = re.compile(r"[A-Za-z0-9_-]+")
_STOP_REASONS = {"length": "max_tokens", "content_filter": "refusal"}


def usage_from_openai(
    usage: dict | None, *, estimated_input: int = 0, estimated_output: int = 0
) -> dict:
    """Anthropic usage: input excludes cache reads/writes, reported apart (§3.3); all four keys.

    The estimates stand in for counts the upstream did not report at all.
    """
    split = split_usage(usage)
    reported = isinstance(usage, dict)
    prompt = token_count(usage.get("prompt_tokens")) if reported else None
    completion = token_count(usage.get("completion_tokens")) if reported else None
    return {
        "input_tokens": estimated_input if prompt is None else split["input"],
        "cache_creation_input_tokens": split["cache_write_5m"] + split["cache_write_1h"],
        "cache_read_input_tokens": split["cache_read"],
        "output_tokens": estimated_output if completion is None else split["output"],
    }


def tool_use_id(raw: object) -> str:
    """The upstream id when Anthropic's pattern allows it (Kimi's `functions.X:0` does not)."""
    if isinstance(raw, str) and _TOOL_ID.fullmatch(raw):
        return raw
    return "toolu_" + random_hex(12)


def tool_input(arguments: object) -> dict:
    """Tool arguments as the JSON object Anthropic requires, however the upstream mangled them."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        return {"value": arguments}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # Trailing commas, single quotes, truncation: repair, else hand the text to the model.
        try:
            repaired = json_repair.loads(arguments)
        except (ValueError, RecursionError):
            repaired = None
        return (
            repaired if isinstance(repaired, dict) and repaired else {"_raw_arguments": arguments}
        )
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return tool_input(value)  # double-encoded
    return value if isinstance(value, dict) else {"value": value}


def stop_reason(
    finish_reason: object, *, tool_use: bool, matched: object, stop_sequences: tuple[str, ...]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) per §3.2: tool blocks win over everything but `length`."""
    if finish_reason == "length":
        return "max_tokens", None
    if tool_use:
        return "tool_use", None
    if finish_reason == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    reason = _STOP_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    return reason or "end_turn", None


def matched_stop(choice: dict) -> object:
    """The stop string that ended generation: vLLM `stop_reason`, SGLang `matched_stop`."""
    return choice.get("stop_reason") or choice.get("matched_stop")


def openai_to_anthropic_message(response: dict, request: ConvertedRequest, message_id: str) -> dict:
    """The exact Anthropic Message for a buffered upstream answer; never raises."""
    choices = response.get("choices") if isinstance(response, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}

    content: list[dict] = []
    if thinking := reasoning_text(message):
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if text := visible_text(message):
        content.append({"type": "text", "text": text})
    seen: set[str] = set()
    for name, arguments, raw_id in message_calls(message):
        call_id = tool_use_id(raw_id)
        if call_id in seen:
            call_id = tool_use_id(None)  # a repeated upstream id would confuse tool_result pairing
        seen.add(call_id)
        content.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": request.tool_names.get(name, name),
                "input": tool_input(arguments),
            }
        )
    reason, sequence = stop_reason(
        choice.get("finish_reason"),
        tool_use=bool(seen),
        matched=matched_stop(choice),
        stop_sequences=request.stop_sequences,
    )
    usage = response.get("usage") if isinstance(response, dict) else None
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.requested_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_from_openai(
            usage,
            estimated_input=request.estimated_input_tokens,
            estimated_output=_estimate_output(content),
        ),
    }


def _estimate_output(content: list[dict]) -> int:
    """Output tokens from the visible result, for upstreams that report no usage."""
    total = 0.0
    for block in content:
        match block["type"]:
            case "thinking":
                total += estimate_text(block["thinking"])
            case "text":
                total += estimate_text(block["text"])
            case "tool_use":
                total += estimate_json(block["input"]) + estimate_text(block["name"])
    return max(1, math.ceil(total))
