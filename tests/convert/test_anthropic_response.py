"""OpenAI completion -> Anthropic Message (spec §3); scenarios 6, 20-22, 26, 36."""

from __future__ import annotations

import re

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message

from proxy_service.convert.anthropic.request import (
    ConversionOptions,
    ConvertedRequest,
    anthropic_to_openai_request,
)
from proxy_service.convert.anthropic.response import (
    openai_to_anthropic_message,
    tool_input,
    usage_from_openai,
)

LONG_TOOL = "mcp__claude_ai_Some_Very_Long_Server_Name__some_extremely_long_tool_name_here"
TOOL_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def make_request(**fields: object) -> ConvertedRequest:
    body = {
        "model": "claude-proxy-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Read"}, {"name": "Bash"}, {"name": LONG_TOOL}],
        **fields,
    }
    return anthropic_to_openai_request(body, ConversionOptions())


REQUEST = make_request()


def completion(message: dict | None, finish: str | None = "stop", **extra: object) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        **extra,
    }


def call(call_id: str | None, name: str, arguments: object) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def convert(response: dict, request: ConvertedRequest = REQUEST) -> dict:
    message = openai_to_anthropic_message(response, request, "msg_test")
    Message.model_validate(message)  # the SDK's own model accepts it
    return message


def test_s20_full_mapping_order_and_usage() -> None:
    response = completion(
        {
            "role": "assistant",
            "reasoning_content": "Let me think.",
            "content": "I'll read both.",
            "tool_calls": [
                call("call_a", "Read", '{"file_path": "/a.py"}'),
                call("functions.Bash:1", "Bash", '{"command": "ls"}'),
            ],
        },
        finish="tool_calls",
        usage={
            "prompt_tokens": 1200,
            "completion_tokens": 80,
            "total_tokens": 1280,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    )
    message = convert(response)
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, read, bash = message["content"]
    assert thinking == {"type": "thinking", "thinking": "Let me think.", "signature": ""}
    assert text == {"type": "text", "text": "I'll read both."}
    assert read == {
        "type": "tool_use",
        "id": "call_a",
        "name": "Read",
        "input": {"file_path": "/a.py"},
    }
    assert bash["input"] == {"command": "ls"}
    assert bash["id"].startswith("toolu_") and TOOL_ID.match(bash["id"])  # Kimi id normalized
    assert message["id"] == "msg_test"
    assert message["model"] == "claude-proxy-test"
    assert (message["stop_reason"], message["stop_sequence"]) == ("tool_use", None)
    assert message["usage"] == {
        "input_tokens": 176,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
        "output_tokens": 80,
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
        ("eos", "end_turn"),
        ("abort", "end_turn"),
        ("tool_calls", "end_turn"),  # s6: no tool block could be built
        (42, "end_turn"),
    ],
)
def test_s21_finish_reason_table(finish: object, stop_reason: str) -> None:
    message = convert(completion({"content": "x"}, finish))  # type: ignore[arg-type]
    assert (message["stop_reason"], message["stop_sequence"]) == (stop_reason, None)


def test_s6_stop_with_tool_calls_is_tool_use_but_length_wins() -> None:
    tools = {"tool_calls": [call("c1", "Read", "{}")]}
    assert convert(completion(tools, "stop"))["stop_reason"] == "tool_use"
    assert convert(completion(tools, "length"))["stop_reason"] == "max_tokens"


def test_s21_stop_sequence_only_when_the_requested_string_matched() -> None:
    request = make_request(stop_sequences=["</answer>", "STOP"])
    vllm = completion({"content": "done"}, "stop")
    vllm["choices"][0]["stop_reason"] = "</answer>"
    assert (convert(vllm, request)["stop_reason"], convert(vllm, request)["stop_sequence"]) == (
        "stop_sequence",
        "</answer>",
    )
    sglang = completion({"content": "done"}, "stop")
    sglang["choices"][0]["matched_stop"] = "STOP"
    assert convert(sglang, request)["stop_sequence"] == "STOP"
    token_id = completion({"content": "done"}, "stop")
    token_id["choices"][0]["stop_reason"] = 128001
    assert convert(token_id, request)["stop_reason"] == "end_turn"
    unknown = completion({"content": "done"}, "stop")
    unknown["choices"][0]["stop_reason"] = "other"
    assert convert(unknown, request)["stop_sequence"] is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("", {}),
        ("   ", {}),
        (None, {}),
        ({"already": "object"}, {"already": "object"}),
        ('{"a": 1,}', {"a": 1}),  # trailing comma
        ("{'a': 'b'}", {"a": "b"}),  # single quotes
        ('{"path": "/x", "content": "unterminated', {"path": "/x", "content": "unterminated"}),
        ('"{\\"a\\": 2}"', {"a": 2}),  # double-encoded
        ("[1, 2]", {"value": [1, 2]}),
        ("7", {"value": 7}),
        ('"just text"', {"value": "just text"}),
        ("not json at all", {"_raw_arguments": "not json at all"}),
        (12, {"value": 12}),
    ],
)
def test_s22_tool_arguments_repair(arguments: object, expected: dict) -> None:
    assert tool_input(arguments) == expected
    message = convert(completion({"tool_calls": [call("c1", "Read", arguments)]}, "tool_calls"))
    assert message["content"][0]["input"] == expected


def test_s26_original_long_tool_name_is_restored() -> None:
    upstream_name = next(iter(REQUEST.tool_names))
    message = convert(completion({"tool_calls": [call("c1", upstream_name, "{}")]}, "tool_calls"))
    assert message["content"][0]["name"] == LONG_TOOL


def test_s36_empty_completion_has_no_blocks() -> None:
    message = convert(completion({"role": "assistant", "content": ""}, "stop"))
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    "response",
    [
        {},
        {"choices": []},
        {"choices": None},
        {"choices": "x"},
        {"choices": [None]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"content": None, "tool_calls": None}}]},
        {"choices": [{"message": {"tool_calls": [None, {"function": None}, {"function": {}}]}}]},
        {"usage": "nonsense", "choices": [{"message": {"content": 5}}]},
        [],
    ],
)
def test_odd_upstream_json_still_yields_a_valid_message(response: dict) -> None:
    message = convert(response)
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == REQUEST.estimated_input_tokens  # estimated
    assert message["usage"]["output_tokens"] == 1


def test_no_usage_is_estimated_not_zero() -> None:
    message = convert(completion({"content": "word " * 70}))
    assert message["usage"]["input_tokens"] == REQUEST.estimated_input_tokens > 0
    assert message["usage"]["output_tokens"] == 100


def test_refusal_content_parts_and_legacy_function_call() -> None:
    message = convert(
        completion(
            {
                "content": [{"type": "text", "text": "Part "}, {"type": "text", "text": "two"}],
                "refusal": "I can't do that.",
                "reasoning": "openrouter style",
                "function_call": {"name": "Bash", "arguments": '{"command": "pwd"}'},
            },
            "function_call",
        )
    )
    assert message["content"][0]["thinking"] == "openrouter style"
    assert message["content"][1]["text"] == "Part two\n\nI can't do that."
    assert message["content"][2]["name"] == "Bash"
    assert message["content"][2]["input"] == {"command": "pwd"}
    assert message["stop_reason"] == "tool_use"


def test_repeated_upstream_tool_ids_are_made_unique() -> None:
    message = convert(
        completion({"tool_calls": [call("dup", "Read", "{}"), call("dup", "Bash", "{}")]})
    )
    ids = [block["id"] for block in message["content"]]
    assert ids[0] == "dup" and ids[1] != "dup" and TOOL_ID.match(ids[1])


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, (0, 0, 0, 0)),
        ({"prompt_tokens": 10, "completion_tokens": 2}, (10, 0, 0, 2)),
        (
            {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 60},
            (40, 0, 60, 5),
        ),  # DeepSeek
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 30, "cache_creation_tokens": 50},
            },
            (20, 50, 30, 5),
        ),
        # Cache counts above prompt_tokens: it cannot include them (shared/usage_split.py).
        ({"prompt_tokens": 10, "cache_read_input_tokens": 50}, (10, 0, 50, 0)),
        ({"prompt_tokens": -3, "completion_tokens": True}, (0, 0, 0, 0)),
    ],
)
def test_usage_from_openai(usage: dict | None, expected: tuple[int, int, int, int]) -> None:
    got = usage_from_openai(usage)
    assert list(got) == [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ]
    assert tuple(got.values()) == expected


def test_usage_estimates_fill_only_missing_counts() -> None:
    assert usage_from_openai({"completion_tokens": 9}, estimated_input=50, estimated_output=7) == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 9,
    }


def test_s20_sdk_e2e_parses_the_message() -> None:
    """SDK-e2e: the official client receives and parses our JSON as a Message."""
    message = openai_to_anthropic_message(
        completion(
            {
                "reasoning_content": "hmm",
                "content": "Reading.",
                "tool_calls": [call("call_1", "Read", '{"file_path": "/a"}')],
            },
            "tool_calls",
            usage={"prompt_tokens": 50, "completion_tokens": 9},
        ),
        REQUEST,
        "msg_abc",
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=orjson.dumps(message))

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://proxy.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    result = client.messages.create(
        model="claude-proxy-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert result.stop_reason == "tool_use"
    assert [block.type for block in result.content] == ["thinking", "text", "tool_use"]
    assert result.content[2].input == {"file_path": "/a"}
    assert result.usage.input_tokens == 50
