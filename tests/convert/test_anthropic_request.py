"""Anthropic request -> OpenAI request body (spec §2); scenarios 10-17, 25-27, 32-35."""

from __future__ import annotations

import copy
import hashlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.convert.anthropic import request as anthropic_request
from proxy_service.convert.anthropic.request import (
    ConversionOptions,
    InvalidRequest,
    anthropic_to_openai_request,
)
from proxy_service.convert.model_map import ModelMap

OPTIONS = ConversionOptions()


def convert(options: ConversionOptions = OPTIONS, **fields: object):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [], **fields}
    return anthropic_to_openai_request(body, options)


def messages(*items: dict, **fields: object) -> list[dict]:
    return convert(messages=list(items), **fields).body["messages"]


def user(content: object) -> dict:
    return {"role": "user", "content": content}


def assistant(content: object) -> dict:
    return {"role": "assistant", "content": content}


def tool_use(call_id: str, name: str = "Read", **input_: object) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": input_}


def tool_result(call_id: str, content: object = "ok", **extra: object) -> dict:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def text(value: str, **extra: object) -> dict:
    return {"type": "text", "text": value, **extra}


def png(data: str = "iVBORw0KGgo=") -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def assert_tool_adjacency(out: list[dict]) -> None:
    """Every assistant tool_calls message is followed by exactly its tool messages."""
    for i, message in enumerate(out):
        if message.get("tool_calls"):
            ids = {call["id"] for call in message["tool_calls"]}
            following = out[i + 1 : i + 1 + len(ids)]
            assert [m["role"] for m in following] == ["tool"] * len(ids)
            assert {m["tool_call_id"] for m in following} == ids
        if message["role"] == "tool":
            assert out[i - 1]["role"] in ("tool", "assistant")


# -- top level --------------------------------------------------------------------------------


def test_basic_fields_and_allowlist_s15() -> None:
    """s15: unknown and Anthropic-only fields never reach the upstream (effort is mapped)."""
    result = convert(
        messages=[user("hi")],
        stream=True,
        temperature=0.2,
        top_p=0.9,
        top_k=5,
        stop_sequences=["END", "", 3],
        context_management={"edits": []},
        output_config={"effort": "high"},
        diagnostics={"x": 1},
        service_tier="auto",
        container="c",
        mcp_servers=[],
        inference_geo="us",
        cache_control={"type": "ephemeral"},
        betas=["x"],
    )
    assert result.body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1024,
        "stop": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert result.stream is True
    assert result.stop_sequences == ("END",)
    assert result.requested_model == result.upstream_model == "claude-sonnet-4-5"
    assert result.estimated_input_tokens > 0


def test_model_map_and_requested_model() -> None:
    options = ConversionOptions(model_map=ModelMap.parse("*sonnet*=big-model"))
    result = convert(options, messages=[user("hi")])
    assert result.body["model"] == result.upstream_model == "big-model"
    assert result.requested_model == "claude-sonnet-4-5"


def test_stream_usage_option_and_non_stream() -> None:
    assert "stream_options" not in convert(ConversionOptions(stream_usage=False), stream=True).body
    body = convert(stream=False).body
    assert body["stream"] is False
    assert "stream_options" not in body


def test_s35_max_tokens_clamp() -> None:
    assert (
        convert(ConversionOptions(max_tokens_cap=8192), max_tokens=32000).body["max_tokens"] == 8192
    )
    assert convert(ConversionOptions(max_tokens_cap=8192), max_tokens=100).body["max_tokens"] == 100
    assert convert(max_tokens=32000).body["max_tokens"] == 32000


def test_at_most_four_stop_strings_upstream_but_all_kept_for_matching() -> None:
    result = convert(stop_sequences=["a", "b", "c", "d", "e"])
    assert result.body["stop"] == ["a", "b", "c", "d"]
    assert result.stop_sequences == ("a", "b", "c", "d", "e")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ({"max_tokens": 1, "messages": []}, "model"),
        ({"model": 3, "max_tokens": 1, "messages": []}, "model"),
        ({"model": "m", "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": True, "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": "5", "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": 1}, "messages"),
        ({"model": "m", "max_tokens": 1, "messages": {"role": "user"}}, "messages"),
        ({"model": "m", "max_tokens": 1, "messages": ["hi"]}, "messages.0: must be an object"),
        ({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}, "messages.0.content"),
        ({"model": "m", "max_tokens": 1, "messages": [user(None)]}, "messages.0.content"),
        ({"model": "m", "max_tokens": 1, "messages": [user({"a": 1})]}, "messages.0.content"),
    ],
)
def test_invalid_bodies_raise(body: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        anthropic_to_openai_request(body, OPTIONS)


def test_s27_long_user_id_is_hashed() -> None:
    long_id = "user_" + "a" * 195
    assert (
        convert(metadata={"user_id": long_id}).body["user"]
        == hashlib.sha256(long_id.encode()).hexdigest()
    )
    assert convert(metadata={"user_id": "short"}).body["user"] == "short"
    assert "user" not in convert(metadata={"user_id": ""}).body
    assert "user" not in convert(metadata="x").body


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 2048}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "enabled"}, None, "medium"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "disabled"}, {"effort": "high"}, None),
        (None, {"effort": "high"}, None),
    ],
)
def test_thinking_to_reasoning_effort(
    thinking: dict | None, output_config: dict | None, effort: str | None
) -> None:
    fields = {k: v for k, v in (("thinking", thinking), ("output_config", output_config)) if v}
    assert convert(**fields).body.get("reasoning_effort") == effort


def test_reasoning_effort_can_be_disabled_for_non_reasoning_models() -> None:
    options = ConversionOptions(send_reasoning_effort=False)
    assert "reasoning_effort" not in convert(options, thinking={"type": "adaptive"}).body


def test_output_format_to_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = convert(output_config={"format": {"type": "json_schema", "schema": schema}}).body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert "response_format" not in convert(output_config={"format": {"type": "text"}}).body


# -- system -----------------------------------------------------------------------------------


def test_s13_system_blocks_billing_header_and_cache_control() -> None:
    def system(cch: str) -> list[dict]:
        return [
            text(f"x-anthropic-billing-header: cc_version=2.1.37; cc_entrypoint=cli; cch={cch};"),
            text("You are Claude Code.", cache_control={"type": "ephemeral"}),
            text("   "),
            text("Be brief.", cache_control={"type": "ephemeral", "ttl": "1h"}),
        ]

    first = convert(system=system("a1b2c"), messages=[user("hi")])
    second = convert(system=system("f9e8d"), messages=[user("hi")])
    assert first.body["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code.\n\nBe brief.",
    }
    assert orjson.dumps(first.body) == orjson.dumps(second.body)
    assert b"cache_control" not in orjson.dumps(first.body)


def test_system_string_and_empty_system() -> None:
    assert messages(user("hi"), system="Be nice")[0] == {"role": "system", "content": "Be nice"}
    assert messages(user("hi"), system="")[0]["role"] == "user"
    assert messages(user("hi"), system=[text("")])[0]["role"] == "user"


def test_s14_mid_conversation_system_messages() -> None:
    """s14: system entries become user notes and never split assistant tool_calls from results."""
    out = messages(
        user("fix the bug"),
        {"role": "system", "content": "Available agents: a, b"},
        assistant([text("Looking."), tool_use("toolu_1", file_path="a.py")]),
        {"role": "system", "content": [text("Skills: x")]},
        user([tool_result("toolu_1", "code"), text("go on")]),
        {"role": "system", "content": "trailing note"},
    )
    assert [(m["role"], m.get("content")) for m in out] == [
        ("user", "fix the bug"),
        ("user", "System note: Available agents: a, b"),
        ("assistant", "Looking."),
        ("tool", "code"),
        ("user", "go on"),
        ("user", "System note: Skills: x"),
        ("user", "System note: trailing note"),
    ]
    assert_tool_adjacency(out)
    assert all(m["role"] != "system" for m in out)


# -- tool results -----------------------------------------------------------------------------


def test_s10_two_results_and_text_keep_order() -> None:
    out = messages(
        user("start"),
        assistant([tool_use("toolu_A", path="a"), tool_use("toolu_B", path="b")]),
        user([tool_result("toolu_A", "A!"), tool_result("toolu_B", "B!"), text("and now?")]),
    )
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_A",
                "type": "function",
                "function": {"name": "Read", "arguments": '{"path":"a"}'},
            },
            {
                "id": "toolu_B",
                "type": "function",
                "function": {"name": "Read", "arguments": '{"path":"b"}'},
            },
        ],
    }
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_A", "content": "A!"},
        {"role": "tool", "tool_call_id": "toolu_B", "content": "B!"},
        {"role": "user", "content": "and now?"},
    ]


def test_s11_list_content_is_one_message_and_errors_are_flagged() -> None:
    out = messages(
        user("go"),
        assistant([tool_use("toolu_1"), tool_use("toolu_2")]),
        user(
            [
                tool_result("toolu_1", [text("line one"), text("line two")]),
                tool_result("toolu_2", "command not found", is_error=True),
            ]
        ),
    )
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "line one\nline two"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: command not found"},
    ]


def test_empty_tool_result_content() -> None:
    out = messages(
        user("go"), assistant([tool_use("toolu_1")]), user([tool_result("toolu_1", None)])
    )
    assert out[-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": ""}


def test_s12_image_in_tool_result_moves_to_a_user_message() -> None:
    out = messages(
        user("show me"),
        assistant([tool_use("toolu_img", file_path="a.png")]),
        user([tool_result("toolu_img", [text("Read image"), png("QUJD")]), text("what is it?")]),
    )
    assert out[2] == {
        "role": "tool",
        "tool_call_id": "toolu_img",
        "content": "Read image\n(attachment below)",
    }
    assert out[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "[attachment from tool result toolu_img]"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            {"type": "text", "text": "what is it?"},
        ],
    }


def test_s32_orphans_interrupted_call_and_unknown_result() -> None:
    out = messages(
        user("go"),
        assistant([text("calling"), tool_use("toolu_lost"), tool_use("toolu_kept")]),
        user([tool_result("toolu_kept", "ok"), text("I interrupted one")]),
        assistant("fine"),
        user([tool_result("toolu_ghost", "stale"), text("next")]),
        assistant([tool_use("toolu_last")]),
    )
    assert_tool_adjacency(out)
    assert out[2:5] == [
        {"role": "tool", "tool_call_id": "toolu_kept", "content": "ok"},
        {"role": "tool", "tool_call_id": "toolu_lost", "content": "(no result)"},
        {"role": "user", "content": "I interrupted one"},
    ]
    assert out[6] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "[tool result toolu_ghost]\nstale"},
            {"type": "text", "text": "next"},
        ],
    }
    assert out[-1] == {"role": "tool", "tool_call_id": "toolu_last", "content": "(no result)"}


def test_s32_consecutive_assistants_and_duplicate_results() -> None:
    out = messages(
        user("go"),
        assistant([tool_use("toolu_1")]),
        assistant("second thoughts"),
        user([tool_result("toolu_1", "late"), tool_result("toolu_1", "twice")]),
    )
    assert_tool_adjacency(out)
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "(no result)"}
    assert out[-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "[tool result toolu_1]\nlate"},
            {"type": "text", "text": "[tool result toolu_1]\ntwice"},
        ],
    }


# -- assistant history ------------------------------------------------------------------------


def test_s33_history_hygiene() -> None:
    out = messages(
        user("a"),
        assistant([{"type": "thinking", "thinking": "hmm", "signature": "sig"}]),
        user("b"),
        assistant([text("")]),
        user("c"),
        user([text("  ")]),
        user("d"),
        assistant([text("part one"), tool_use("toolu_9"), text("part two")]),
        user([tool_result("toolu_9")]),
    )
    assert [m["role"] for m in out] == ["user", "user", "user", "user", "assistant", "tool"]
    assert out[4]["content"] == "part one\n\npart two"


def test_trailing_text_only_assistant_prefill_is_dropped() -> None:
    assert messages(user("hi"), assistant("The answer is")) == [{"role": "user", "content": "hi"}]


def test_s25_thinking_history_as_reasoning_content() -> None:
    history = (
        user("go"),
        assistant(
            [
                {"type": "thinking", "thinking": "plan ", "signature": ""},
                {"type": "thinking", "thinking": "more", "signature": "foreign-sig"},
                {"type": "redacted_thinking", "data": "xxx"},
                tool_use("toolu_1"),
            ]
        ),
        user([tool_result("toolu_1")]),
        assistant([tool_use("toolu_2")]),
        user([tool_result("toolu_2")]),
    )
    plain = convert(messages=list(history)).body["messages"]
    assert all("reasoning_content" not in m for m in plain)
    flagged = convert(
        ConversionOptions(reasoning_content_in_history=True), messages=list(history)
    ).body["messages"]
    assert flagged[1]["reasoning_content"] == "plan more"
    assert flagged[3]["reasoning_content"] == ""  # present even when empty on tool-call turns
    assert b"signature" not in orjson.dumps(flagged)


def test_tool_use_input_encodings() -> None:
    out = messages(
        user("go"),
        assistant(
            [
                {"type": "tool_use", "id": "t1", "name": "A"},
                {"type": "tool_use", "id": "t2", "name": "B", "input": '{"raw":1}'},
                {"type": "tool_use", "id": "", "name": "C", "input": {}},
                {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}},
            ]
        ),
        user([tool_result("t1"), tool_result("t2")]),
    )
    calls = out[1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ["{}", '{"raw":1}']


# -- user content -----------------------------------------------------------------------------


def test_s34_image_sources_and_documents() -> None:
    jpeg = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "Zg=="},
    }
    webp = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/webp", "data": "Zg=="},
    }
    url = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    pdf = {
        "type": "document",
        "title": "spec.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        "cache_control": {"type": "ephemeral"},
    }
    out = messages(user([text("look"), jpeg, webp, url, file_image, pdf]))
    assert out[0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,Zg=="}},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,Zg=="}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "text", "text": "[file image not forwarded: file_1]"},
        {
            "type": "file",
            "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
        },
    ]
    placeholder = convert(ConversionOptions(pdf_as_file_part=False), messages=[user([pdf])])
    assert placeholder.body["messages"][0]["content"] == "[base64 document not forwarded: spec.pdf]"


def test_text_documents_search_results_and_unknown_blocks() -> None:
    out = messages(
        user(
            [
                {
                    "type": "document",
                    "title": "Notes",
                    "context": "from the wiki",
                    "source": {"type": "text", "media_type": "text/plain", "data": "body"},
                },
                {"type": "document", "source": {"type": "content", "content": [text("inner")]}},
                {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
                {
                    "type": "search_result",
                    "title": "T",
                    "source": "https://s.test",
                    "content": [text("found")],
                },
                {"type": "container_upload", "file_id": "f"},
                {"type": "future_block", "text": "rendered"},
                {"type": "thinking", "thinking": "no"},
                "bare string",
                42,
            ]
        )
    )
    assert [part["text"] for part in out[0]["content"]] == [
        "Notes\n\nfrom the wiki\n\nbody",
        "inner",
        "[url document not forwarded: https://x.test/a.pdf]",
        "T\nhttps://s.test\nfound",
        "rendered",
        "bare string",
    ]


def test_single_text_part_collapses_to_a_string() -> None:
    assert messages(user([text("only", cache_control={"type": "ephemeral"})])) == [
        {"role": "user", "content": "only"}
    ]


# -- tools ------------------------------------------------------------------------------------


def test_s16_tool_fields_are_stripped() -> None:
    tools = [
        {
            "type": "custom",
            "name": "Read",
            "description": "Read a file",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$comment": "top",
                "type": "object",
                "properties": {
                    "$comment": {"type": "string", "$comment": "a property named $comment"},
                    "path": {"type": "string", "format": "uri"},
                },
                "additionalProperties": False,
            },
            "cache_control": {"type": "ephemeral"},
            "defer_loading": True,
            "input_examples": [{"path": "a"}],
            "strict": True,
            "eager_input_streaming": True,
        },
        {"name": "NoSchema"},
        {"name": "ArraySchema", "input_schema": {"type": "array"}},
    ]
    result = convert(tools=tools)
    assert result.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "$comment": {"type": "string"},
                        "path": {"type": "string", "format": "uri"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        {
            "type": "function",
            "function": {"name": "NoSchema", "parameters": {"type": "object", "properties": {}}},
        },
        {
            "type": "function",
            "function": {"name": "ArraySchema", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert "$schema" in tools[0]["input_schema"]  # the client's body is never mutated


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Read"},
            {"tool_choice": {"type": "function", "function": {"name": "Read"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
        (
            {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "Read"}},
                "parallel_tool_calls": False,
            },
        ),
        ({"type": "none", "disable_parallel_tool_use": True}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "web_search"}, {}),
        ({"type": "mystery"}, {}),
        (None, {}),
    ],
)
def test_s17_tool_choice_matrix(choice: dict | None, expected: dict) -> None:
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    body = convert(tools=tools, tool_choice=choice).body
    got = {k: body[k] for k in ("tool_choice", "parallel_tool_calls") if k in body}
    assert got == expected


def test_s17_only_server_tools_means_no_tools_at_all() -> None:
    body = convert(
        messages=[user("search the web")],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
        tool_choice={"type": "tool", "name": "web_search", "disable_parallel_tool_use": True},
    ).body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


def test_s26_long_and_invalid_tool_names_are_hashed_and_restorable() -> None:
    long_name = "mcp__claude_ai_Some_Very_Long_Server_Name__some_extremely_long_tool_name_here"
    dotted = "server.tool:v1"
    result = convert(
        tools=[{"name": long_name}, {"name": dotted}, {"name": "Read"}],
        tool_choice={"type": "tool", "name": long_name},
        messages=[
            user("go"),
            assistant([tool_use("toolu_1", name=long_name)]),
            user([tool_result("toolu_1")]),
        ],
    )
    names = [tool["function"]["name"] for tool in result.body["tools"]]
    assert all(len(n) <= 64 and n.replace("_", "").replace("-", "").isalnum() for n in names)
    assert names[2] == "Read"
    assert result.tool_names == {names[0]: long_name, names[1]: dotted}
    assert result.body["tool_choice"]["function"]["name"] == names[0]
    assert result.body["messages"][1]["tool_calls"][0]["function"]["name"] == names[0]
    again = convert(tools=[{"name": long_name}])
    assert again.body["tools"][0]["function"]["name"] == names[0]  # stable across requests


def test_duplicate_tools_are_sent_once() -> None:
    body = convert(tools=[{"name": "Read"}, {"name": "Read", "description": "again"}]).body
    assert len(body["tools"]) == 1


# -- determinism ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
_block = st.one_of(
    st.builds(text, st.text(max_size=20)),
    st.builds(tool_use, st.sampled_from(["t1", "t2"]), st.sampled_from(["Read", "a.b"])),
    st.builds(tool_result, st.sampled_from(["t1", "t2", "t3"]), st.text(max_size=10)),
    st.dictionaries(st.sampled_from(["type", "text", "source", "content"]), _json, max_size=3),
)
_message = st.builds(
    lambda role, content: {"role": role, "content": content},
    st.sampled_from(["user", "assistant", "system"]),
    st.text(max_size=10) | st.lists(_block, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_message, max_size=8),
    st.lists(st.dictionaries(st.sampled_from(["name", "type", "input_schema"]), _json), max_size=3),
)
def test_conversion_is_deterministic_and_never_crashes(
    history: list[dict], tools: list[dict]
) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": history, "tools": tools}
    snapshot = copy.deepcopy(body)
    first = anthropic_to_openai_request(body, OPTIONS)
    second = anthropic_to_openai_request(copy.deepcopy(body), OPTIONS)
    assert orjson.dumps(first.body) == orjson.dumps(second.body)
    assert body == snapshot  # input untouched
    assert_tool_adjacency(first.body["messages"])


_SCHEMA_KEYS = st.sampled_from(
    ["$schema", "$comment", "$ref", "type", "properties", "items", "description", "anyOf", "x"]
)
_SCHEMA_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(["object", "string", "$x", "a$"])
)
_SCHEMAS = st.dictionaries(
    _SCHEMA_KEYS,
    st.recursive(
        _SCHEMA_LEAVES,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(_SCHEMA_KEYS, inner, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(_SCHEMAS)
def test_tool_parameters_are_the_deep_cleaned_schema_whatever_its_shape(schema):
    """The shallow-copy shortcut for schemas with `$` only at the top gives exactly what the
    deep walk gives (nested `$schema`/`$comment` dropped, property names kept), and neither
    changes the client's body."""
    before = copy.deepcopy(schema)
    tool = {"name": "t", "input_schema": schema}
    parameters = convert(tools=[tool]).body["tools"][0]["function"]["parameters"]
    expected = anthropic_request._clean_schema(before)
    expected["type"] = "object"
    if not isinstance(expected.get("properties"), dict):
        expected["properties"] = {}
    assert parameters == expected
    assert schema == before


@pytest.mark.parametrize("nested", ["$schema", "$comment"])
def test_keywords_dropped_below_the_top_of_a_schema_too(nested):
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"$schema": {"type": "string", nested: "gone"}},
    }
    tool = {"name": "t", "input_schema": schema}
    parameters = convert(tools=[tool]).body["tools"][0]["function"]["parameters"]
    assert parameters == {"type": "object", "properties": {"$schema": {"type": "string"}}}
