"""Local input-token estimate (count_tokens, message_start); scenario 28."""

from __future__ import annotations

from proxy_service.convert.anthropic.token_count import count_tokens, estimate_json, estimate_text


def _tool(i: int) -> dict:
    return {
        "name": f"mcp__server__tool_{i}",
        "description": "Reads a file from the local filesystem and returns its content.",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["file_path"],
        },
    }


HISTORY = [
    {"role": "user", "content": "Please read main.py"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should read it.", "signature": ""},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "m.py"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)\n" * 50}
        ],
    },
]


def test_s28_counts_system_messages_and_tools() -> None:
    bare = {"model": "m", "messages": HISTORY}
    with_system = {**bare, "system": [{"type": "text", "text": "You are Claude Code. " * 40}]}
    with_tools = {**with_system, "tools": [_tool(i) for i in range(30)]}
    counts = [count_tokens(body) for body in (bare, with_system, with_tools)]
    assert 0 < counts[0] < counts[1] < counts[2]
    assert counts[2] - counts[1] > 30 * 30  # every tool costs its schema, not a token or two


def test_more_tools_cost_more() -> None:
    assert count_tokens({"tools": [_tool(i) for i in range(5)]}) < count_tokens(
        {"tools": [_tool(i) for i in range(10)]}
    )


def test_ascii_heuristic() -> None:
    assert estimate_text("a" * 35) == 10
    assert estimate_text("") == 0


def test_wide_characters_cost_a_token_each() -> None:
    assert estimate_text("你好世界") == 4  # 3-byte UTF-8 each
    assert estimate_text("😀😀") == 2  # 4-byte UTF-8
    assert estimate_text("café") < 2  # an accent is not a wide character


def test_lone_surrogate_does_not_raise() -> None:
    assert estimate_text("a\ud800b") > 0


def test_images_have_a_fixed_cost_and_base64_is_not_read_as_text() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 10**6},
    }
    tokens = count_tokens({"messages": [{"role": "user", "content": [image]}]})
    assert 1600 <= tokens < 1700


def test_documents_are_counted() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "A" * 200_000},
    }
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "x" * 350},
    }
    assert count_tokens({"messages": [{"role": "user", "content": [pdf]}]}) >= 3 * 1600
    assert count_tokens({"messages": [{"role": "user", "content": [text_doc]}]}) >= 100


def test_odd_shapes_never_raise_and_never_return_zero() -> None:
    assert count_tokens({}) == 1
    assert count_tokens({"messages": "nope", "tools": {"a": 1}, "system": 5}) == 1
    assert count_tokens({"messages": [None, {"content": [None, 3, "text"]}]}) >= 1
    assert count_tokens({"tools": [{"name": "t", "input_schema": {"big": 2**70}}]}) > 350


def test_estimate_json_matches_serialized_text() -> None:
    assert estimate_json({"a": "b"}) == estimate_text('{"a":"b"}')
    assert estimate_json("plain") == estimate_text("plain")
