"""Responses request -> Chat request body (spec §2); scenarios 1-4, 8, 16-18, 21-23, 26-28.

Bodies are shaped like what Codex 0.171, the openai SDK and the Agents SDK send (§2.1).
"""

from __future__ import annotations

import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.convert.model_map import ModelMap
from proxy_service.convert.responses import (
    InvalidRequest,
    PreviousResponseNotFound,
    ResponsesOptions,
    UnsupportedParameter,
    UnsupportedTool,
    request_error,
    responses_to_chat_request,
)
from proxy_service.convert.responses.reasoning import seal

from .support import APPLY_PATCH, EXEC, MULTI_AGENT, TOOLS, WEATHER, convert

STRICT = ResponsesOptions(strict_tools=True)


def messages(*items: object, options: ResponsesOptions | None = None, **fields: object) -> list:
    return convert(options, input=list(items), **fields).body["messages"]


def developer(text: str) -> dict:
    return {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": text}],
    }


def user(content: object) -> dict:
    return {"type": "message", "role": "user", "content": content}


def assistant(text: str) -> dict:
    return {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "phase": "final_answer",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call(call_id: str, name: str = "exec_command", arguments: str = "{}", **extra) -> dict:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        **extra,
    }


def output(call_id: str, value: object = "ok", kind: str = "function_call_output") -> dict:
    return {"type": kind, "call_id": call_id, "output": value}


def function_names(body: dict) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


CODEX_FALLBACK = {
    "model": "qwen3-coder",
    "instructions": None,
    "input": [
        developer("You are Codex, based on GPT-5. ..."),
        developer("<permissions instructions>read-only</permissions instructions>"),
        developer("<collaboration_mode>default</collaboration_mode>"),
        user(
            [{"type": "input_text", "text": "<environment_context>cwd=/repo</environment_context>"}]
        ),
        user([{"type": "input_text", "text": "list the files"}]),
    ],
    "tools": [EXEC, MULTI_AGENT, {"type": "web_search", "external_web_access": False}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019b-session-uuid",
    "client_metadata": {"x-codex-installation-id": "abc"},
}


# -- scenarios --------------------------------------------------------------------------------


def test_s01_codex_fallback_request() -> None:
    converted = responses_to_chat_request(CODEX_FALLBACK, ResponsesOptions(), "019b-session-uuid")
    body = converted.body
    assert body["messages"] == [
        {
            "role": "system",
            "content": "You are Codex, based on GPT-5. ...\n\n"
            "<permissions instructions>read-only</permissions instructions>\n\n"
            "<collaboration_mode>default</collaboration_mode>",
        },
        {"role": "user", "content": "<environment_context>cwd=/repo</environment_context>"},
        {"role": "user", "content": "list the files"},
    ]
    assert function_names(body) == ["exec_command", "spawn_agent", "close_agent"]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 32_768 and body["reasoning_effort"] == "medium"
    assert body["user"] == "019b-session-uuid"
    assert set(body) == {
        "model",
        "messages",
        "max_tokens",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "user",
    }
    assert converted.stream and converted.encrypted_reasoning
    assert converted.requested_model == converted.upstream_model == "qwen3-coder"
    assert converted.echo["store"] is False and converted.echo["tools"] == CODEX_FALLBACK["tools"]
    assert converted.tools["spawn_agent"].namespace == "multi_agent_v1"
    assert converted.estimated_input_tokens > 350  # the hidden tool prompt at least


def test_s02_tool_loop_pairs_the_call_with_its_output() -> None:
    got = messages(
        user("list the files"),
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None},
        function_call("call_1", arguments='{"cmd":"ls"}', id="fc_1", status="completed"),
        output("call_1", "a.txt\nb.txt"),
        tools=[EXEC],
    )
    assert got == [
        {"role": "user", "content": "list the files"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
    ]


def test_s03_namespaces_flatten_and_collisions_get_a_prefix() -> None:
    collaboration = {
        "type": "namespace",
        "name": "collaboration",
        "description": "Work with others.",
        "tools": [
            {"type": "function", "name": "spawn_agent", "description": "Start one."},
            {"type": "function", "name": "send_message"},
        ],
    }
    converted = convert(
        tools=[MULTI_AGENT, collaboration, {"type": "function", "name": "send_message"}]
    )
    assert function_names(converted.body) == [
        "multi_agent_v1__spawn_agent",
        "close_agent",
        "collaboration__spawn_agent",
        "collaboration__send_message",
        "send_message",
    ]
    first = converted.body["tools"][2]["function"]
    assert first["description"] == "Work with others.\n\nStart one."  # namespace text, once
    assert "description" not in converted.body["tools"][3]["function"]
    assert converted.tools["collaboration__spawn_agent"].namespace == "collaboration"
    assert converted.tools["send_message"].namespace is None
    history = messages(
        function_call("c1", "spawn_agent", namespace="collaboration"),
        output("c1"),
        function_call("c2", "close_agent", namespace="multi_agent_v1"),
        output("c2"),
        function_call("c3", "gone_tool", namespace="old_ns"),  # no longer declared
        output("c3"),
        tools=[MULTI_AGENT, collaboration],
    )
    names = [m["tool_calls"][0]["function"]["name"] for m in history if m["role"] == "assistant"]
    assert names == ["collaboration__spawn_agent", "close_agent", "old_ns__gone_tool"]


def test_s04_parallel_calls_become_one_assistant_message_and_two_tool_messages() -> None:
    got = messages(
        user("weather in Paris and Rome?"),
        assistant("Checking both."),
        function_call("call_a", "get_weather", '{"city":"Paris"}'),
        function_call("call_b", "get_weather", '{"city":"Rome"}'),
        output("call_a", "sunny"),
        output("call_b", "rain"),
        tools=[WEATHER],
    )
    assert [m["role"] for m in got] == ["user", "assistant", "tool", "tool"]
    assert got[1]["content"] == "Checking both."
    assert [c["id"] for c in got[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["tool_call_id"], m["content"]) for m in got[2:]] == [
        ("call_a", "sunny"),
        ("call_b", "rain"),
    ]


def test_s08_custom_tool_is_a_one_string_function_and_round_trips() -> None:
    converted = convert(tools=[APPLY_PATCH])
    (function,) = [t["function"] for t in converted.body["tools"]]
    assert function["name"] == "apply_patch"
    assert function["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }
    assert function["description"].startswith("Apply a patch.\n\nPass the raw text as the `input`")
    assert 'start: "*** Begin Patch"' in function["description"]  # the lark grammar
    assert converted.tools["apply_patch"].custom
    patch = "*** Begin Patch\n*** Add File: x\n+1\n*** End Patch"
    got = messages(
        {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": "c", "output": "Done!"},
        tools=[APPLY_PATCH],
    )
    arguments = got[0]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(arguments) == {"input": patch}
    assert got[1] == {"role": "tool", "tool_call_id": "c", "content": "Done!"}


def test_s16_reasoning_is_replayed_only_when_configured() -> None:
    items = [
        user("go"),
        {"type": "reasoning", "summary": [], "encrypted_content": seal("plan A")},
        function_call("c1"),
        output("c1"),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan B"}]},
        {
            "type": "reasoning",
            "encrypted_content": "gAAAA-foreign",
            "content": [{"type": "reasoning_text", "text": "raw C"}],
        },
        assistant("done"),
    ]
    replay = ResponsesOptions(reasoning_content_in_history=True)
    got = messages(*items, options=replay)
    assert [(m["role"], m.get("reasoning_content")) for m in got] == [
        ("user", None),
        ("assistant", "plan A"),
        ("tool", None),
        ("assistant", "plan B\n\nraw C"),
    ]
    assert all("reasoning_content" not in m for m in messages(*items))


@pytest.mark.parametrize(
    "hosted",
    [
        {"type": "web_search"},
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"},
        {"type": "computer_use_preview", "display_width": 1, "display_height": 1},
        {"type": "mcp", "server_label": "x", "server_url": "https://mcp"},
        {"type": "local_shell"},
        {"type": "shell"},
        {"type": "apply_patch"},
        {"type": "tool_search", "execution": "server"},
        {"type": "some_future_tool"},
    ],
)
def test_s17_hosted_tools_dropped_by_default_or_rejected_with_param(hosted: dict) -> None:
    converted = convert(tools=[EXEC, hosted], tool_choice="auto")
    assert function_names(converted.body) == ["exec_command"]
    assert converted.echo["tools"] == [EXEC, hosted]
    with pytest.raises(UnsupportedTool) as caught:
        convert(STRICT, tools=[EXEC, hosted])
    assert caught.value.param == "tools[1].type"
    status, body = request_error(caught.value)
    assert status == 400
    assert body == {
        "error": {
            "message": f"Tool type '{hosted['type']}' is not supported by this gateway",
            "type": "invalid_request_error",
            "code": "unsupported_tool_type",
            "param": "tools[1].type",
        }
    }


def test_s17_only_hosted_tools_means_no_tools_and_no_choice() -> None:
    body = convert(
        tools=[{"type": "web_search"}], tool_choice="required", parallel_tool_calls=True
    ).body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)


def test_s17_forcing_a_hosted_tool_is_always_rejected() -> None:
    with pytest.raises(UnsupportedTool) as caught:
        convert(tools=[EXEC], tool_choice={"type": "file_search"})
    assert (caught.value.code, caught.value.param) == ("unsupported_tool_choice", "tool_choice")


def test_s17_hosted_tool_inside_a_namespace() -> None:
    group = {"type": "namespace", "name": "n", "tools": [{"type": "web_search"}, EXEC]}
    assert function_names(convert(tools=[group]).body) == ["exec_command"]
    with pytest.raises(UnsupportedTool, match="web_search") as caught:
        convert(STRICT, tools=[group])
    assert caught.value.param == "tools[0].tools[0].type"


def test_s18_previous_response_id_is_not_found() -> None:
    with pytest.raises(PreviousResponseNotFound) as caught:
        convert(previous_response_id="resp_123")
    assert request_error(caught.value) == (
        400,
        {
            "error": {
                "message": "Previous response with id 'resp_123' not found.",
                "type": "invalid_request_error",
                "code": "previous_response_not_found",
                "param": "previous_response_id",
            }
        },
    )
    assert convert(previous_response_id=None).body["messages"]  # explicit null is fine


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conversation", "conv_1"),
        ("conversation", {"id": "conv_1"}),
        ("prompt", {"id": "pmpt_1"}),
        ("background", True),
    ],
)
def test_s18_other_stored_state_is_an_unsupported_parameter(field: str, value: object) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        convert(**{field: value})
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", field)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            {
                "type": "json_schema",
                "name": "codex_output_schema",
                "strict": True,
                "schema": {"type": "object"},
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "codex_output_schema",
                    "schema": {"type": "object"},
                    "strict": True,
                },
            },
        ),
        (
            {"type": "json_schema", "schema": {"type": "object"}, "description": "d"},
            {
                "type": "json_schema",
                "json_schema": {"name": "output", "description": "d", "schema": {"type": "object"}},
            },
        ),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, None),
        ({"type": "grammar_from_the_future"}, None),
    ],
)
def test_s21_text_format_nests_for_chat(fmt: dict, expected: dict | None) -> None:
    body = convert(text={"format": fmt, "verbosity": "low"}).body
    assert body.get("response_format") == expected
    assert "verbosity" not in body


def test_s21_json_schema_without_schema_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        convert(text={"format": {"type": "json_schema", "name": "x"}})
    assert caught.value.param == "text.format.schema"


def test_s22_images_keep_their_place_among_text_parts() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    (got,) = messages(
        user(
            [
                {"type": "input_text", "text": "compare"},
                {"type": "input_image", "image_url": data_url, "detail": "high"},
                {"type": "input_text", "text": "with"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "original"},
            ]
        )
    )
    assert got["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
        {"type": "text", "text": "with"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file_1"}, "input[0].content[0].file_id"),
        ({"type": "input_image"}, "input[0].content[0].image_url"),
        ({"type": "input_file", "file_id": "file_1"}, "input[0].content[0].file_id"),
        ({"type": "input_file", "file_url": "https://x/a.pdf"}, "input[0].content[0].file_data"),
    ],
)
def test_s22_unresolvable_media_is_a_400_naming_the_part(part: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        messages(user([part]))
    assert caught.value.param == param and param.split(".")[-1] in str(caught.value)


def test_s22_files_and_audio() -> None:
    pdf = {
        "type": "input_file",
        "filename": "a.pdf",
        "file_data": "data:application/pdf;base64,JVBE",
    }
    audio = {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
    (got,) = messages(user([pdf, audio]))
    assert got["content"] == [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf["file_data"]}},
        audio,
    ]
    with pytest.raises(InvalidRequest, match="not supported"):
        messages(user([pdf]), options=ResponsesOptions(file_parts=False))


def test_s23_output_array_gives_tool_text_then_one_user_image_message() -> None:
    image = "data:image/png;base64,AAAA"
    got = messages(
        function_call("c1", "view_image"),
        function_call("c2", "exec_command"),
        output(
            "c1",
            [
                {"type": "input_text", "text": "the screenshot"},
                {"type": "input_image", "image_url": image},
            ],
        ),
        output(
            "c2",
            [{"type": "input_text", "text": "line 1"}, {"type": "input_text", "text": "line 2"}],
        ),
        user("what do you see?"),
    )
    assert [m["role"] for m in got] == ["assistant", "tool", "tool", "user", "user"]
    assert got[1]["content"] == "the screenshot\n(attachment below)"
    assert got[2]["content"] == "line 1\nline 2"
    assert got[3]["content"] == [
        {"type": "text", "text": "[attachment from tool result c1]"},
        {"type": "image_url", "image_url": {"url": image}},
    ]


TOOL_SEARCH = {"type": "tool_search", "execution": "client", "description": "Find tools."}


def test_s26_a_client_tool_search_is_offered_as_a_function() -> None:
    converted = convert(tools=[TOOL_SEARCH, {"type": "tool_search", "execution": "server"}])
    (function,) = converted.body["tools"]
    assert function["function"]["name"] == "tool_search"
    assert function["function"]["description"] == "Find tools."
    assert function["function"]["parameters"]["properties"]["query"] == {"type": "string"}
    assert converted.tools["tool_search"].search


def test_s26_a_tool_search_keeps_its_own_schema() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    converted = convert(
        tools=[{"type": "tool_search", "execution": "client", "parameters": schema}]
    )
    assert converted.body["tools"][0]["function"]["parameters"] == schema


@pytest.mark.parametrize(
    ("output", "told"),
    [
        ({"tools": [{"type": "function", "name": "calendar_create"}]}, "calendar_create"),
        ({"output": "calendar_create, calendar_list"}, "calendar_create, calendar_list"),
    ],
    ids=["codex-tools", "text-output"],
)
def test_s26_tool_search_items_pair_as_a_call_and_its_result(output: dict, told: str) -> None:
    got = messages(
        user("find a tool"),
        {
            "type": "tool_search_call",
            "call_id": "ts1",
            "arguments": {"query": "calendar"},
            "execution": "client",
            "status": "completed",
        },
        {"type": "tool_search_output", "call_id": "ts1", "execution": "client", **output},
        tools=[TOOL_SEARCH],
    )
    assert [m["role"] for m in got] == ["user", "assistant", "tool"]
    (call,) = got[1]["tool_calls"]
    assert call["id"] == "ts1" and call["function"]["name"] == "tool_search"
    assert orjson.loads(call["function"]["arguments"]) == {"query": "calendar"}
    assert got[2]["tool_call_id"] == "ts1" and told in got[2]["content"]


def test_s27_responses_lite_additional_tools_item() -> None:
    body = {
        "model": "m",
        "input": [
            {
                "type": "additional_tools",
                "role": "developer",
                "tools": [
                    {"type": "namespace", "name": "functions", "description": "", "tools": [EXEC]},
                    {
                        "type": "namespace",
                        "name": "collaboration",
                        "tools": [{"type": "function", "name": "wait"}],
                    },
                ],
            },
            developer("base prompt"),
            user("hi"),
        ],
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high", "context": "all_turns"},
    }
    converted = responses_to_chat_request(body, ResponsesOptions())
    assert function_names(converted.body) == ["exec_command", "wait"]
    assert converted.tools["exec_command"].namespace == "functions"
    assert converted.body["parallel_tool_calls"] is False
    assert converted.body["messages"] == [
        {"role": "system", "content": "base prompt"},
        {"role": "user", "content": "hi"},
    ]


def test_s28_leading_developer_run_merges_later_ones_are_notes() -> None:
    items = [
        developer("one"),
        {"role": "system", "content": "two"},
        user("hi"),
        assistant("hello"),
        developer("<context update>"),
        user("next"),
    ]
    got = messages(*items, instructions="zero")
    assert got == [
        {"role": "system", "content": "zero\n\none\n\ntwo"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Developer note: <context update>"},
        {"role": "user", "content": "next"},
    ]
    kept = messages(*items, options=ResponsesOptions(system_mid_conversation=True))
    assert kept[3] == {"role": "system", "content": "<context update>"}


def test_s28_notes_never_split_a_tool_run() -> None:
    got = messages(
        function_call("a"),
        function_call("b"),
        output("a"),
        developer("mid-run note"),
        output("b"),
        tools=[EXEC],
    )
    assert [m["role"] for m in got] == ["assistant", "tool", "tool", "user"]


# -- pairing invariants -----------------------------------------------------------------------


def test_interrupted_calls_get_a_result_and_orphan_outputs_become_text() -> None:
    got = messages(
        function_call("a"),
        function_call("b"),
        output("a", "done a"),
        user("stop, do something else"),  # b was interrupted
        output("b", "late b"),  # its output now has no call to follow
        output("", "no id"),  # cannot be paired with anything: dropped
    )
    assert got == [
        {"role": "assistant", "content": None, "tool_calls": got[0]["tool_calls"]},
        {"role": "tool", "tool_call_id": "a", "content": "done a"},
        {"role": "tool", "tool_call_id": "b", "content": "(no result)"},
        {"role": "user", "content": "stop, do something else"},
        {"role": "user", "content": "[tool result b]\nlate b"},
    ]


def test_repeated_call_ids_in_one_message_are_dropped() -> None:
    got = messages(function_call("a"), function_call("a"), output("a"))
    assert len(got[0]["tool_calls"]) == 1 and len(got) == 2


def test_easy_messages_strings_and_agents_sdk_shapes() -> None:
    body = {
        "model": "m",
        "instructions": "Be helpful.",
        "input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "tools": [
            {"type": "function", "name": "f", "description": "", "parameters": None, "strict": True}
        ],
    }
    converted = responses_to_chat_request(body, ResponsesOptions())
    assert converted.body["messages"] == [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert converted.body["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
        }
    ]


def test_instructions_as_items_and_string_input() -> None:
    got = convert(instructions=[developer("rules")], input="question").body["messages"]
    assert got == [{"role": "system", "content": "rules"}, {"role": "user", "content": "question"}]


# -- top-level fields -------------------------------------------------------------------------


def test_unknown_and_dropped_fields_never_reach_the_upstream() -> None:
    body = convert(
        store=True,
        metadata={"a": "b"},
        include=["message.output_text.logprobs"],
        truncation="auto",
        service_tier="flex",
        client_metadata={"x": 1},
        context_management=[{"type": "compaction"}],
        prompt_cache_retention="24h",
        max_tool_calls=3,
        stream_options={"include_obfuscation": False},
        a_field_from_2027={"anything": True},
    ).body
    assert set(body) == {"model", "messages", "max_tokens", "stream"}


@pytest.mark.parametrize(
    ("given", "options", "expected"),
    [
        (100, ResponsesOptions(), 100),
        (None, ResponsesOptions(), 32_768),
        (None, ResponsesOptions(default_max_output_tokens=None), None),
        (200_000, ResponsesOptions(max_tokens_cap=64_000), 64_000),
        (None, ResponsesOptions(max_tokens_field="max_completion_tokens"), 32_768),
    ],
)
def test_max_output_tokens(
    given: int | None, options: ResponsesOptions, expected: int | None
) -> None:
    body = convert(options, max_output_tokens=given).body
    assert body.get(options.max_tokens_field) == expected
    assert (
        "max_completion_tokens" not in body or options.max_tokens_field == "max_completion_tokens"
    )


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("minimal", "low"),
        ("none", "low"),
        ("medium", "medium"),
        ("xhigh", "high"),
        ("ultra", "high"),
        ("odd", None),
    ],
)
def test_reasoning_effort(effort: str, expected: str | None) -> None:
    assert convert(reasoning={"effort": effort}).body.get("reasoning_effort") == expected
    off = ResponsesOptions(send_reasoning_effort=False)
    assert "reasoning_effort" not in convert(off, reasoning={"effort": effort}).body


def test_upstream_user_is_stable_and_bounded() -> None:
    long_key = "k" * 100
    assert convert(prompt_cache_key="abc", user="u").body["user"] == "abc"
    assert convert(user="u").body["user"] == "u"
    assert convert(safety_identifier="s", user="u").body["user"] == "s"
    assert (
        convert(prompt_cache_key=long_key).body["user"]
        == hashlib.sha256(long_key.encode()).hexdigest()
    )
    session = responses_to_chat_request({"model": "m", "input": "x"}, ResponsesOptions(), "sess-1")
    assert session.body["user"] == "sess-1"
    assert "user" not in convert().body


def test_stream_flags_temperature_and_model_map() -> None:
    options = ResponsesOptions(model_map=ModelMap.parse("gw-*=real-model"), stream_usage=False)
    converted = convert(options, stream=True, temperature=0.5, top_p=1)
    assert converted.body["model"] == "real-model" and converted.requested_model == "gw-model"
    assert converted.body["stream"] is True and "stream_options" not in converted.body
    assert (converted.body["temperature"], converted.body["top_p"]) == (0.5, 1)
    assert convert(stream="yes").body["stream"] is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "required"),
        ("none", "none"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {"type": "custom", "name": "apply_patch"},
            {"type": "function", "function": {"name": "apply_patch"}},
        ),
        (
            {"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"},
            {"type": "function", "function": {"name": "spawn_agent"}},
        ),
        ({"type": "function", "name": "not_declared"}, None),
    ],
)
def test_tool_choice(choice: object, expected: object) -> None:
    assert convert(tools=TOOLS, tool_choice=choice).body.get("tool_choice") == expected


def test_allowed_tools_narrows_the_functions() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}, {"type": "web_search"}],
    }
    body = convert(tools=TOOLS, tool_choice=choice).body
    assert function_names(body) == ["get_weather"] and body["tool_choice"] == "required"


# -- refusals name the field ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"input": 5}, "input"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": [5]}, "input[0]"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name"),
        ({"instructions": 5}, "instructions"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["x"]}, "tools[0]"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "namespace", "name": "n"}]}, "tools[0].tools"),
        ({"tools": [EXEC], "tool_choice": 5}, "tool_choice"),
        ({"tools": [EXEC], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [EXEC], "tool_choice": {"type": "function"}}, "tool_choice.name"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": "9"}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"previous_response_id": 5}, "previous_response_id"),
    ],
)
def test_invalid_shapes_raise_naming_the_field(fields: dict, param: str) -> None:
    body = {"model": "m", "input": "x", **fields}
    with pytest.raises(InvalidRequest) as caught:
        responses_to_chat_request(body, ResponsesOptions())
    assert caught.value.param == param
    assert str(caught.value).startswith(param.split("[")[0])
    assert request_error(caught.value)[0] == 400


@pytest.mark.parametrize("body", [None, [], "x", 5])
def test_a_body_that_is_not_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        responses_to_chat_request(body, ResponsesOptions())


# -- property: any history converts into a well-paired conversation ---------------------------

_ids = st.sampled_from(["a", "b", "c"])
_text = st.text(max_size=8)
_item = st.one_of(
    st.builds(user, _text),
    st.builds(assistant, _text),
    st.builds(developer, _text),
    st.builds(function_call, _ids, st.sampled_from(["exec_command", "spawn_agent", "apply_patch"])),
    st.builds(output, _ids, _text | st.just([{"type": "input_image", "image_url": "data:,"}])),
    st.builds(output, _ids, _text, st.just("custom_tool_call_output")),
    st.fixed_dictionaries(
        {"type": st.just("reasoning"), "summary": st.just([{"type": "summary_text", "text": "t"}])}
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["item_reference", "compaction", "web_search_call"])}
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_item, max_size=14), st.booleans())
def test_any_history_is_well_paired(items: list[dict], mid_system: bool) -> None:
    """The §2.3 invariants the upstream (and Codex's own mock) enforce: a system message only
    first, every tool message right after the assistant run declaring its call, every declared
    call answered exactly once, no two assistant messages in a row."""
    options = ResponsesOptions(
        reasoning_content_in_history=True, system_mid_conversation=mid_system
    )
    try:
        got = messages(*items, options=options, tools=TOOLS)
    except InvalidRequest as error:
        assert error.param == "input"  # only an empty conversation is refused
        return
    open_calls: list[str] = []
    for position, message in enumerate(got):
        role = message["role"]
        if role == "system" and not mid_system:
            assert position == 0
        if role == "tool":
            assert message["tool_call_id"] in open_calls
            open_calls.remove(message["tool_call_id"])
            continue
        assert not open_calls, "a declared call was left unanswered"
        if role == "assistant":
            assert position == 0 or got[position - 1]["role"] != "assistant"
            open_calls = [call["id"] for call in message.get("tool_calls", [])]
            assert len(set(open_calls)) == len(open_calls)
            assert message["content"] or open_calls
    assert not open_calls
