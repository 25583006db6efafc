"""chat.completion -> Response object (spec §3); scenarios 1, 3, 8, 9, 15, 21, 24 and 29.

Every Response is validated with the SDK's own pydantic types (stricter than the SDK itself,
which constructs without validation).
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from proxy_service.convert.responses import ResponsesOptions, chat_to_response, new_response_id
from proxy_service.convert.responses.reasoning import unseal

from .support import (
    EXEC,
    MULTI_AGENT,
    REQUEST,
    TOOLS,
    bridge_client,
    completion,
    convert,
    validate_response,
)


def respond(message: dict, finish_reason: str = "stop", request=REQUEST, **extra: object) -> dict:
    response = chat_to_response(completion(message, finish_reason, **extra), request)
    validate_response(response)
    return response


def call(name: str, arguments: object, call_id: str | None = "call_1") -> dict:
    entry: dict = {"type": "function", "function": {"name": name, "arguments": arguments}}
    return entry if call_id is None else entry | {"id": call_id}


def test_s01_text_answer_is_the_exact_response_object() -> None:
    request = convert(
        instructions="Be brief.",
        tools=[TOOLS[0]],
        metadata={"team": "infra"},
        temperature=0.2,
        store=False,
    )
    response = chat_to_response(
        completion({"content": "Hello."}, usage={"prompt_tokens": 9, "completion_tokens": 2}),
        request,
        response_id="resp_abc",
        created_at=1700000000,
    )
    message = response["output"][0]
    assert message["id"].startswith("msg_")
    assert response == {
        "id": "resp_abc",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "background": False,
        "completed_at": response["completed_at"],
        "error": None,
        "incomplete_details": None,
        "model": "gw-model",
        "instructions": "Be brief.",
        "max_output_tokens": None,
        "metadata": {"team": "infra"},
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "store": False,
        "temperature": 0.2,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [TOOLS[0]],
        "top_p": None,
        "truncation": "disabled",
        "user": None,
        "output": [
            {
                "id": message["id"],
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Hello.", "annotations": [], "logprobs": []}
                ],
            }
        ],
        "usage": {
            "input_tokens": 9,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 2,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 11,
        },
    }
    assert isinstance(response["completed_at"], int)
    assert validate_response(response).output_text == "Hello."


def test_s03_namespaced_and_colliding_calls_get_their_namespace_back() -> None:
    colliding = {"type": "function", "name": "spawn_agent", "parameters": {}}
    request = convert(tools=[colliding, MULTI_AGENT])
    message = {
        "tool_calls": [
            call("spawn_agent", "{}", "a"),
            call("multi_agent_v1__spawn_agent", "{}", "b"),
            call("close_agent", '{"id": "x"}', "c"),
        ]
    }
    output = respond(message, "tool_calls", request)["output"]
    assert [(o["type"], o["name"], o.get("namespace")) for o in output] == [
        ("function_call", "spawn_agent", None),
        ("function_call", "spawn_agent", "multi_agent_v1"),
        ("function_call", "close_agent", "multi_agent_v1"),
    ]
    assert [o["call_id"] for o in output] == ["a", "b", "c"]
    assert all(o["id"].startswith("fc_") and o["status"] == "completed" for o in output)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"input": "*** Begin Patch\\n*** End Patch\\n"}', "*** Begin Patch\n*** End Patch\n"),
        ({"input": "raw"}, "raw"),  # an object, Ollama-style
        ('{"patch": "other key"}', "other key"),  # the model renamed the one argument
        ("*** Begin Patch\nnot JSON at all", "*** Begin Patch\nnot JSON at all"),
        ("", ""),
        (None, ""),
    ],
    ids=["wrapped", "object", "renamed", "raw-text", "empty", "missing"],
)
def test_s08_custom_tool_call_unwraps_raw_input(arguments: object, expected: str) -> None:
    (item,) = respond({"tool_calls": [call("apply_patch", arguments)]}, "tool_calls")["output"]
    assert item["type"] == "custom_tool_call" and item["id"].startswith("ctc_")
    assert (item["name"], item["call_id"], item["input"]) == ("apply_patch", "call_1", expected)
    assert "arguments" not in item


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_s09_truncated_answers_are_incomplete(finish_reason: str, reason: str) -> None:
    message = {"content": "Partial", "tool_calls": [call("exec_command", '{"cmd": "rm -rf /tm')]}
    response = respond(message, finish_reason)
    assert response["status"] == "incomplete" and response["completed_at"] is None
    assert response["incomplete_details"] == {"reason": reason}
    assert [o["status"] for o in response["output"]] == ["completed", "incomplete"]
    assert response["output"][1]["arguments"] == '{"cmd": "rm -rf /tm'  # nobody runs it


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_s15_reasoning_becomes_a_summary_item_first(field: str) -> None:
    output = respond({"content": "42", field: "Think first."})["output"]
    assert [o["type"] for o in output] == ["reasoning", "message"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "Think first."}]
    assert output[0]["id"].startswith("rs_") and "encrypted_content" not in output[0]


def test_s16_encrypted_reasoning_envelope_when_included() -> None:
    request = convert(include=["reasoning.encrypted_content"])
    (item,) = respond({"reasoning_content": "secret-ish"}, request=request)["output"]
    assert item["encrypted_content"].startswith("gwr1:")
    assert unseal(item["encrypted_content"]) == "secret-ish"
    assert unseal("gAAAA-openai-blob") is None and unseal("gwr1:!!") is None


class Weather(BaseModel):
    city: str
    degrees: int


def test_s21_sdk_parse_with_text_format() -> None:
    seen: list[dict] = []
    client = bridge_client(
        lambda body: completion({"content": '{"city":"Rome","degrees":21}'}), seen
    )
    parsed = client.responses.parse(model="gw-model", input="weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Rome", degrees=21)
    response_format = seen[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Weather"
    assert response_format["json_schema"]["strict"] is True
    assert "properties" in response_format["json_schema"]["schema"]


@pytest.mark.parametrize(
    ("upstream_usage", "expected"),
    [
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
            (100, 64, 8, 20, 12, 120),
        ),
        (
            {"prompt_tokens": 50, "completion_tokens": 5, "prompt_cache_hit_tokens": 40},
            (50, 40, 0, 5, 0, 55),
        ),
        ({"prompt_tokens": "many", "completion_tokens": -3, "total_tokens": None}, "garbage"),
        (None, None),
    ],
    ids=["openai", "deepseek", "garbage", "absent"],
)
def test_s24_usage_always_in_the_full_shape(
    upstream_usage: dict | None, expected: tuple | str | None
) -> None:
    extra = {"usage": upstream_usage} if upstream_usage is not None else {}
    usage = respond({"content": "An answer of some length."}, **extra)["usage"]
    got = (
        usage["input_tokens"],
        usage["input_tokens_details"]["cached_tokens"],
        usage["input_tokens_details"]["cache_write_tokens"],
        usage["output_tokens"],
        usage["output_tokens_details"]["reasoning_tokens"],
        usage["total_tokens"],
    )
    if expected is None:  # estimated: the request's own estimate, and never 0 output
        assert got[0] == REQUEST.estimated_input_tokens and got[3] >= 1
        assert got[5] == got[0] + got[3]
    elif expected == "garbage":  # a non-number is estimated, a negative one clamped to 0
        assert got == (REQUEST.estimated_input_tokens, 0, 0, 0, 0, REQUEST.estimated_input_tokens)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"cmd": "ls"}, '{"cmd":"ls"}'),
        ("", "{}"),
        (None, "{}"),
        ('{"cmd": "ls"}', '{"cmd": "ls"}'),
        ("{'cmd': 'ls'}", '{"cmd":"ls"}'),
        ('"{\\"cmd\\": \\"ls\\"}"', '{"cmd":"ls"}'),
        ("[1, 2]", '{"value":[1,2]}'),
    ],
    ids=["object", "empty", "null", "verbatim", "repaired", "double-encoded", "not-an-object"],
)
def test_s29_arguments_always_one_json_object_string(arguments: object, expected: str) -> None:
    (item,) = respond({"tool_calls": [call("exec_command", arguments)]}, "tool_calls")["output"]
    assert item["arguments"] == expected
    assert isinstance(json.loads(item["arguments"]), dict)


def test_legacy_function_call_and_unknown_tool_names() -> None:
    message = {"function_call": {"name": "not_declared", "arguments": "{}"}}
    (item,) = respond(message, "function_call")["output"]
    assert (item["type"], item["name"], item.get("namespace")) == (
        "function_call",
        "not_declared",
        None,
    )
    assert item["call_id"].startswith("call_")


def test_missing_and_repeated_call_ids_are_made_unique() -> None:
    calls = [
        call("exec_command", "{}", None),
        call("exec_command", "{}", "x"),
        call("exec_command", "{}", "x"),
    ]
    ids = [o["call_id"] for o in respond({"tool_calls": calls}, "tool_calls")["output"]]
    assert len(set(ids)) == 3 and ids[1] == "x"


def test_refusal_is_folded_into_the_text() -> None:
    (item,) = respond({"content": None, "refusal": "I can't help with that."})["output"]
    assert item["content"] == [
        {
            "type": "output_text",
            "text": "I can't help with that.",
            "annotations": [],
            "logprobs": [],
        }
    ]


def test_text_parts_content_is_joined() -> None:
    (item,) = respond({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})[
        "output"
    ]
    assert item["content"][0]["text"] == "ab"


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        "text",
        {},
        {"choices": None},
        {"choices": []},
        {"choices": [None]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"tool_calls": [None, {"function": None}, {"function": {}}]}}]},
        {"choices": [{"message": {"content": 5, "reasoning_content": ["x"]}}], "usage": []},
    ],
)
def test_odd_upstream_json_still_gives_a_valid_response(answer: object) -> None:
    response = chat_to_response(answer, REQUEST)
    validate_response(response)
    assert response["status"] == "completed" and response["output"] == []


def test_ids_look_like_the_apis() -> None:
    response_id = new_response_id()
    assert response_id.startswith("resp_") and len(response_id) == 37
    assert response_id != new_response_id()
    assert chat_to_response({}, convert(ResponsesOptions()))["id"].startswith("resp_")


def test_s26_a_tool_search_call_goes_back_as_a_tool_search_call_item() -> None:
    request = convert(tools=[{"type": "tool_search", "execution": "client"}, EXEC])
    calls = [call("tool_search", '{"query": "calendar", "limit": 3}', "ts_1")]
    (item,) = respond({"tool_calls": calls}, "tool_calls", request)["output"]
    assert item["type"] == "tool_search_call" and item["id"].startswith("tsc_")
    assert item["call_id"] == "ts_1" and item["execution"] == "client"
    assert item["arguments"] == {"query": "calendar", "limit": 3}
    assert item["status"] == "completed"
