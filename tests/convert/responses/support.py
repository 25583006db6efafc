"""Shared pieces of the Responses bridge tests: upstream chunk builders, the event-stream lint
(scenario 32), and the openai SDK run in-process against the bridge (no server, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import httpx2
import openai
from openai import omit
from openai._models import construct_type_unchecked
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from proxy_service.convert.responses import (
    ConvertedRequest,
    ResponsesOptions,
    ResponsesStreamTranslator,
    chat_to_response,
    responses_to_chat_request,
)
from tests.convert.frames import parse_frames, run

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
EXEC = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
}
MULTI_AGENT = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
        {"type": "function", "name": "close_agent", "parameters": {"type": "object"}},
    ],
}
TOOLS = [EXEC, WEATHER, APPLY_PATCH, MULTI_AGENT]


def convert(options: ResponsesOptions | None = None, **fields: object) -> ConvertedRequest:
    body = {"model": "gw-model", "input": "hi", **fields}
    return responses_to_chat_request(body, options or ResponsesOptions())


REQUEST = convert(stream=True, tools=TOOLS)


def completion(message: dict, finish_reason: str = "stop", **extra: object) -> dict:
    """A buffered chat.completion with one choice."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", **message},
        "finish_reason": finish_reason,
    }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "up",
        "choices": [choice],
        **extra,
    }


# -- running ----------------------------------------------------------------------------------


def translate(
    raw: bytes, request: ConvertedRequest = REQUEST, cuts: Iterable[int] = ()
) -> tuple[list[bytes], ResponsesStreamTranslator]:
    translator = ResponsesStreamTranslator(request)
    return run(translator, raw, cuts), translator


# -- scenario 32: the event-stream lint -------------------------------------------------------

_OPENED = {
    "message": {"content": [], "status": "in_progress", "role": "assistant"},
    "reasoning": {"summary": []},
    "function_call": {"arguments": "", "status": "in_progress"},
    "custom_tool_call": {"input": "", "status": "in_progress"},
    "tool_search_call": {"arguments": {}, "status": "in_progress", "execution": "client"},
}
_PART_OPEN = ("response.content_part.added", "response.reasoning_summary_part.added")


def lint(frames: list[bytes], *, exact_arguments: bool = True) -> list[dict]:
    """What the SDK accumulator and Codex check (§4.3): `created` first; sequence_number
    contiguous from 0; one terminal event, last; one response id; items added densely in
    output_index order and done in that order, every delta/part event between its item's added
    and done (and after its part was added), ids equal across added/done/terminal, every added
    item done before a completed/incomplete end whose output is exactly the done items. With
    `exact_arguments`, the argument deltas of each call add up to its final arguments."""
    events = parse_frames(frames)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert [i for i, e in enumerate(events) if e["type"] in TERMINAL] == [len(events) - 1]
    response_id = events[0]["response"]["id"]
    assert response_id.startswith("resp_")
    added: dict[int, dict] = {}
    done: dict[int, dict] = {}
    parts: set[tuple[int, int]] = set()
    streamed: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if "response" in event:
            assert event["response"]["id"] == response_id
            assert event["response"]["object"] == "response"
        if kind == "response.output_item.added":
            index, item = event["output_index"], event["item"]
            assert index == len(added), "output_index must be dense, in order of added"
            assert item["id"] and all(item[k] == v for k, v in _OPENED[item["type"]].items())
            added[index] = item
        elif kind == "response.output_item.done":
            index, item = event["output_index"], event["item"]
            assert index in added and index not in done
            assert all(index > other for other in done), "items close in output_index order"
            assert (item["id"], item["type"], item.get("call_id")) == (
                added[index]["id"],
                added[index]["type"],
                added[index].get("call_id"),
            )
            done[index] = item
        elif "item_id" in event:
            index = event["output_index"]
            assert index in added and index not in done, f"{kind} outside its item"
            assert event["item_id"] == added[index]["id"]
            sub = event.get("content_index", event.get("summary_index"))
            if kind in _PART_OPEN:
                parts.add((index, sub))
            elif sub is not None:
                assert (index, sub) in parts, f"{kind} before its part was added"
            if kind == "response.function_call_arguments.delta":
                streamed[index] = streamed.get(index, "") + event["delta"]
            if kind == "response.function_call_arguments.done" and exact_arguments:
                assert streamed.get(index, "") == event["arguments"]
    final = events[-1]
    output = final["response"]["output"]
    if final["type"] == "response.failed":
        assert [item["id"] for item in output] == [added[i]["id"] for i in range(len(added))]
        assert final["response"]["error"]["code"] and final["response"]["error"]["message"]
    else:
        assert sorted(done) == sorted(added), "an added item was never done"
        assert output == [done[i] for i in range(len(done))]
        usage_ = final["response"]["usage"]
        assert all(
            type(usage_[k]) is int for k in ("input_tokens", "output_tokens", "total_tokens")
        )
    for item in output:
        if item["type"] == "function_call":
            assert isinstance(item["arguments"], str)
    validate_response(final["response"])
    return events


def validate_response(response: dict) -> Response:
    """The SDK's own types, validated strictly (the SDK itself only constructs). Its error-code
    literal lacks `context_length_exceeded`, the code Codex acts on in `response.failed`."""
    error = response.get("error")
    if error and error["code"] == "context_length_exceeded":
        response = {**response, "error": {**error, "code": "server_error"}}
    return Response.model_validate(response)


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def terminal(events: list[dict]) -> dict:
    return events[-1]["response"]


def strip_ids(value: object) -> object:
    """`value` without the random parts (item and response ids, timestamps) for comparisons."""
    if isinstance(value, dict):
        return {
            k: strip_ids(v)
            for k, v in value.items()
            if k not in ("id", "item_id", "created_at", "completed_at")
        }
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


# -- the SDK ----------------------------------------------------------------------------------


def sdk_accumulate(events: list[dict]) -> ResponseStreamState:
    """Fold our events with the SDK's strict accumulator (what `responses.stream()` runs);
    it raises on every ordering or identity fault of §4.3."""
    state: ResponseStreamState = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(construct_type_unchecked(type_=ResponseStreamEvent, value=event))
    return state


Upstream = Callable[[dict], bytes | dict]


def bridge_client(upstream: Upstream, seen: list[dict] | None = None) -> openai.OpenAI:
    """An SDK client whose HTTP layer is the bridge: the request body is converted, `upstream`
    answers the Chat body (SSE bytes, or a chat.completion dict) and the answer is converted
    back, exactly as the route will do it."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        converted = responses_to_chat_request(json.loads(request.content), ResponsesOptions())
        if seen is not None:
            seen.append(converted.body)
        answer = upstream(converted.body)
        if isinstance(answer, dict):
            return httpx2.Response(200, json=chat_to_response(answer, converted))
        frames, _ = translate(answer, converted)
        return httpx2.Response(
            200, content=b"".join(frames), headers={"content-type": "text/event-stream"}
        )

    return openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
