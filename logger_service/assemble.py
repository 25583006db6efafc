"""Streamed responses as records keep them: the chunks and the result assembled from them.

The proxy publishes the raw SSE text the client received (no JSON work on its hot path); this
module turns it into `{"chunks": [...], "chunk_count": n, "assembled": {...}}`. Pure functions.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.sse import SSEDecoder


def stream_response(raw: str, protocol: str) -> dict[str, Any]:
    """Chunks and their assembled result; chunks of a shape no API sends (the upstream's data,
    passed on as it came) leave `unassembled` saying why instead of failing the record."""
    chunks = _chunks(raw)
    assemble = ASSEMBLERS.get(protocol, assemble_openai)
    try:
        return {"chunk_count": len(chunks), "assembled": assemble(chunks), "chunks": chunks}
    except Exception as error:  # any odd shape: the line must be written all the same
        reason = f"{type(error).__name__}: {error}"
        return {"chunk_count": len(chunks), "unassembled": reason, "chunks": chunks}


def _chunks(raw: str) -> list[Any]:
    chunks = []
    for data in event_data(raw.encode()):
        if data == b"[DONE]":
            continue
        try:
            chunks.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            chunks.append(data.decode("utf-8", "replace"))
    return chunks


def event_data(raw: bytes) -> list[bytes]:
    """The data of each event of a whole stream, as SSEDecoder dispatches them when fed all of it
    and flushed, a few times faster: without a CR, events end exactly at the blank lines, so they
    are split apart in C and the usual frames (`data: ...`, or `event: ...` then `data: ...`)
    read without walking their lines. Event names are not needed here."""
    if b"\r" in raw:
        decoder = SSEDecoder()
        return [event.data for event in (*decoder.feed(raw), *decoder.flush())]
    found = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"event: "):
            block = block.partition(b"\n")[2]
        if block.startswith(b"data: ") and b"\n" not in block:
            found.append(block[6:])
            continue
        values = [
            value
            for name, _, value in (line.partition(b":") for line in block.split(b"\n"))
            if name == b"data"
        ]
        if values:
            found.append(b"\n".join(v[1:] if v.startswith(b" ") else v for v in values))
    return found


def assemble_openai(chunks: list[Any]) -> dict[str, Any]:
    """A chat.completion object folded from chat.completion.chunk objects."""
    result: dict[str, Any] = {"object": "chat.completion"}
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        for field in ("id", "model", "created", "system_fingerprint"):
            if field in chunk and field not in result:
                result[field] = chunk[field]
        if chunk.get("usage"):
            result["usage"] = chunk["usage"]
        if "error" in chunk:
            result["error"] = chunk["error"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                _fold_choice(choices, choice)
    result["choices"] = [_finish_choice(choice) for _, choice in sorted(choices.items())]
    return result


def _fold_choice(choices: dict[int, dict[str, Any]], choice: dict[str, Any]) -> None:
    index = choice.get("index", 0)
    state = choices.setdefault(
        index, {"index": index, "role": "assistant", "content": [], "reasoning": [], "tools": {}}
    )
    delta = choice.get("delta") or {}
    if choice.get("finish_reason"):
        state["finish_reason"] = choice["finish_reason"]
    if isinstance(delta.get("content"), str):
        state["content"].append(delta["content"])
    if isinstance(delta.get("reasoning_content"), str):
        state["reasoning"].append(delta["reasoning_content"])
    for call in delta.get("tool_calls") or ():
        tool = state["tools"].setdefault(call.get("index", 0), {"id": None, "name": "", "args": []})
        tool["id"] = call.get("id") or tool["id"]
        function = call.get("function") or {}
        tool["name"] += function.get("name") or ""
        tool["args"].append(function.get("arguments") or "")


def _finish_choice(state: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": state["role"], "content": "".join(state["content"])}
    if state["reasoning"]:
        message["reasoning_content"] = "".join(state["reasoning"])
    if state["tools"]:
        message["tool_calls"] = [
            {
                "id": tool["id"],
                "type": "function",
                "function": {"name": tool["name"], "arguments": "".join(tool["args"])},
            }
            for _, tool in sorted(state["tools"].items())
        ]
    return {
        "index": state["index"],
        "message": message,
        "finish_reason": state.get("finish_reason"),
    }


def assemble_anthropic(events: list[Any]) -> dict[str, Any]:
    """An Anthropic Message folded from the stream events the client received."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event.get("message") or {})
        elif kind == "content_block_start":
            blocks[event.get("index", 0)] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            _fold_block_delta(blocks, partial_json, event)
        elif kind == "message_delta":
            message.update(event.get("delta") or {})
            message["usage"] = {**message.get("usage", {}), **(event.get("usage") or {})}
        elif kind == "error":
            message["error"] = event.get("error")
    for index, parts in partial_json.items():
        try:
            blocks[index]["input"] = orjson.loads("".join(parts) or "{}")
        except orjson.JSONDecodeError:
            blocks[index]["input"] = {"_raw_arguments": "".join(parts)}
    message["content"] = [block for _, block in sorted(blocks.items())]
    return message


def _fold_block_delta(
    blocks: dict[int, dict[str, Any]], partial_json: dict[int, list[str]], event: dict[str, Any]
) -> None:
    index = event.get("index", 0)
    block = blocks.setdefault(index, {})
    delta = event.get("delta") or {}
    match delta.get("type"):
        case "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        case "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        case "signature_delta":
            block["signature"] = delta.get("signature", "")
        case "input_json_delta":
            partial_json.setdefault(index, []).append(delta.get("partial_json", ""))


TERMINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def assemble_responses(events: list[Any]) -> dict[str, Any]:
    """The Response object of a Responses stream: every terminal event carries the whole of it
    (output and usage), so it is taken as sent; a stream cut before one keeps the latest
    Response it announced (created or in progress), marked as never finished."""
    latest: dict[str, Any] = {}
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("response"), dict):
            continue
        latest = event["response"]
        if event.get("type") in TERMINAL_RESPONSE_EVENTS:
            return latest
    return {**latest, "status": "cut"} if latest else {"status": "cut"}


ASSEMBLERS = {
    "openai_chat": assemble_openai,
    "anthropic_messages": assemble_anthropic,
    "openai_responses": assemble_responses,
}
