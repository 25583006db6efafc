"""chat.completion -> Response object (bridge spec §3), and the pieces the stream shares.

The stream translator builds its items with the same functions, so a streamed and a buffered
answer to the same upstream output agree item for item. Nothing here raises on odd upstream JSON:
a missing choice or a null message still yields a valid Response.
"""

from __future__ import annotations

import math
import time

import orjson

from proxy_service.convert.anthropic.response import tool_input
from proxy_service.convert.anthropic.token_count import estimate_text
from proxy_service.convert.openai.message import message_calls, reasoning_text, visible_text
from proxy_service.convert.openai.usage import token_count
from proxy_service.convert.responses.reasoning import seal
from proxy_service.convert.responses.request import ConvertedRequest
from proxy_service.convert.responses.tools import CUSTOM_INPUT
from proxy_service.ids import random_hex
from shared.usage_split import split_usage, total_input

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_response_id() -> str:
    """`resp_` + 32 hex digits, like the API's own."""
    return "resp_" + random_hex(16)


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{random_hex(16)}"


def chat_to_response(
    completion: object,
    request: ConvertedRequest,
    *,
    response_id: str | None = None,
    created_at: int | None = None,
) -> dict:
    """The exact Response object for a buffered upstream answer; never raises."""
    completion = completion if isinstance(completion, dict) else {}
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}

    status, reason = response_status(choice.get("finish_reason"))
    cut = status == "incomplete"  # only the last item can have been cut off
    calls = list(message_calls(message))
    output: list[dict] = []
    if thinking := reasoning_text(message):
        output.append(reasoning_item(new_item_id("rs"), thinking, request))
    if text := visible_text(message):
        output.append(message_item(new_item_id("msg"), text, _item_status(cut and not calls)))
    seen: set[str] = set()
    for position, (name, arguments, raw_id) in enumerate(calls):
        last = cut and position == len(calls) - 1
        item_id = call_item_id(name, request)
        call_id = unique_call_id(raw_id, seen)
        output.append(
            call_item(
                item_id,
                call_id,
                name,
                arguments,
                request,
                status=_item_status(last),
                truncated=last,
            )
        )
    usage = responses_usage(
        completion.get("usage"),
        estimated_input=request.estimated_input_tokens,
        estimated_output=output_estimate(output),
    )
    return response_object(
        request,
        response_id=response_id or new_response_id(),
        created_at=created_at or int(time.time()),
        status=status,
        output=output,
        usage=usage,
        incomplete_reason=reason,
    )


def response_object(
    request: ConvertedRequest,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict],
    usage: dict | None,
    error: dict | None = None,
    incomplete_reason: str | None = None,
) -> dict:
    """A Response with every field the SDK and Codex read (output, tools, tool_choice, ...)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": request.requested_model,
        **request.echo,
        "output": output,
        "usage": usage,
    }


def response_status(finish_reason: object) -> tuple[str, str | None]:
    """(status, incomplete reason): `length` and `content_filter` are incomplete (§3)."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", reason) if reason else ("completed", None)


def _item_status(cut: bool) -> str:
    return "incomplete" if cut else "completed"


def responses_usage(usage: object, *, estimated_input: int, estimated_output: int) -> dict:
    """The full Responses usage shape, always (the Agents SDK reads the details directly);
    the estimates stand in for counts the upstream did not report at all."""
    usage = usage if isinstance(usage, dict) else {}
    split = split_usage(usage)
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    input_tokens = estimated_input if prompt is None else total_input(split)
    output_tokens = estimated_output if completion is None else split["output"]
    total = token_count(usage.get("total_tokens")) if prompt is not None else None
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": split["cache_read"],
            "cache_write_tokens": split["cache_write_5m"] + split["cache_write_1h"],
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": split["reasoning"]},
        "total_tokens": total or input_tokens + output_tokens,
    }


def reasoning_item(item_id: str, text: str, request: ConvertedRequest) -> dict:
    """Reasoning as a summary: what Codex and the Agents SDK display (raw content is hidden)."""
    item: dict = {"id": item_id, "type": "reasoning", "summary": [summary_part(text)]}
    if request.encrypted_reasoning:
        item["encrypted_content"] = seal(text)
    return item


def summary_part(text: str) -> dict:
    return {"type": "summary_text", "text": text}


def message_item(item_id: str, text: str, status: str) -> dict:
    """The assistant message; a refusal is folded into its text (Codex knows no refusal part)."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text(text)],
    }


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item_id(name: str, request: ConvertedRequest) -> str:
    target = request.tools.get(name)
    if target and target.search:
        return new_item_id("tsc")
    return new_item_id("ctc" if target and target.custom else "fc")


def call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: object,
    request: ConvertedRequest,
    *,
    status: str,
    truncated: bool,
) -> dict:
    """The client's view of one upstream call: `function_call` with string arguments,
    `custom_tool_call` with raw input, or `tool_search_call` with its arguments as an object;
    with the namespace Codex needs to dispatch it."""
    target = request.tools.get(name)
    item: dict = {"id": item_id}
    if target and target.search:
        item |= {"type": "tool_search_call", "status": status, "call_id": call_id}
        item |= {"execution": "client", "arguments": tool_input(arguments)}
    elif target and target.custom:
        item |= {"type": "custom_tool_call", "status": status, "call_id": call_id}
        item |= {"name": target.name, "input": custom_input(arguments, truncated=truncated)}
    else:
        item |= {"type": "function_call", "status": status, "call_id": call_id}
        item |= {"name": target.name if target else name}
        item["arguments"] = arguments_text(arguments, truncated=truncated)
    if target and target.namespace:
        item["namespace"] = target.namespace
    return item


def arguments_text(raw: object, *, truncated: bool) -> str:
    """A JSON object text: valid text verbatim, an object stringified (Codex silently drops a
    call whose arguments are not a string), broken text repaired; but a call cut off by the
    output limit stays broken, so no client runs a half-written command as if complete."""
    if isinstance(raw, str) and (truncated or _object(raw) is not None):
        return raw
    return orjson.dumps(tool_input(raw)).decode()


def custom_input(raw: object, *, truncated: bool) -> str:
    """The raw text of a freeform call, unwrapped from its one-string-argument function form."""
    if raw is None:
        return ""
    args = _object(raw)
    if args is None and not truncated:
        args = tool_input(raw)
    if args is not None:
        if isinstance(text := args.get(CUSTOM_INPUT), str):
            return text
        strings = [value for value in args.values() if isinstance(value, str)]
        if len(args) == 1 and strings:
            return strings[0]  # another key, or text that was never JSON (`_raw_arguments`)
        if not args:
            return ""
    return raw if isinstance(raw, str) else orjson.dumps(raw).decode()


def unique_call_id(raw: object, seen: set[str]) -> str:
    """The upstream call id, or a fresh one when missing or repeated (pairing would break)."""
    call_id = raw if isinstance(raw, str) and raw and raw not in seen else "call_" + random_hex(12)
    seen.add(call_id)
    return call_id


def output_estimate(output: list[dict]) -> int:
    """Output tokens from the visible result, for upstreams that report no usage."""
    total = 0.0
    for item in output:
        texts = [part.get("text", "") for part in item.get("summary", item.get("content", []))]
        texts += [item.get(key, "") for key in ("name", "arguments", "input")]
        total += sum(estimate_text(text) for text in texts if isinstance(text, str))
    return max(1, math.ceil(total))


def _object(raw: object) -> dict | None:
    """`raw` as a JSON object when it strictly is one (a dict, or text encoding one)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
