"""bench/bodies.py: real-size bodies of the sizes asked for, the same every run, and accepted by
the converters the proxy runs them through."""

from __future__ import annotations

import json

import pytest

from bench.bodies import PRESETS, SHAPES, Shape, body, preset, render, sized
from proxy_service.convert.anthropic.request import ConversionOptions, anthropic_to_openai_request
from proxy_service.convert.responses.request import ResponsesOptions, responses_to_chat_request


@pytest.mark.parametrize("name", [n for n, spec in PRESETS.items() if spec.size])
def test_presets_are_within_ten_percent_of_their_size(name):
    assert abs(len(preset(name)) - PRESETS[name].size) <= PRESETS[name].size * 0.10


@pytest.mark.parametrize("kind", ["anthropic", "responses", "chat"])
@pytest.mark.parametrize("size", [100_000, 200_000, 500_000])
def test_sized_reaches_any_size_above_a_first_turn(kind, size):
    data = render(sized(kind, size))
    assert abs(len(data) - size) <= size * 0.10


def test_claude_code_first_turn_is_mostly_its_24_tool_schemas():
    value = sized("anthropic", 78_000)
    assert len(value["tools"]) == 24
    assert 0.75 <= len(render({"t": value["tools"]})) / len(render(value)) <= 0.9
    assert all("cache_control" in block for block in value["system"])


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_text():
    assert preset("anthropic-stream-370k") == preset("anthropic-stream-370k")
    assert render(sized("chat", 77_000, seed=1)) != render(sized("chat", 77_000, seed=2))


@pytest.mark.parametrize("turns", [0, 1, 7, 40])
def test_history_grows_by_tool_round_trips(turns):
    shape = SHAPES["anthropic"]
    messages = body("anthropic", Shape(**{**_fields(shape), "turns": turns}))["messages"]
    assert len(messages) == 1 + 2 * turns
    uses = [b for m in messages for b in m["content"] if b["type"] == "tool_use"]
    results = [b for m in messages for b in m["content"] if b["type"] == "tool_result"]
    assert [u["id"] for u in uses] == [r["tool_use_id"] for r in results]
    assert messages[-1]["role"] == "user"


@pytest.mark.parametrize("name", [n for n, s in PRESETS.items() if s.kind == "anthropic"])
def test_anthropic_presets_convert(name):
    converted = anthropic_to_openai_request(json.loads(preset(name)), ConversionOptions())
    assert len(converted.body["tools"]) == 24
    assert converted.stream is PRESETS[name].stream
    calls = [m for m in converted.body["messages"] if m.get("tool_calls")]
    tool_replies = [m for m in converted.body["messages"] if m["role"] == "tool"]
    assert len(calls) == len(tool_replies)


@pytest.mark.parametrize("name", [n for n, s in PRESETS.items() if s.kind == "responses"])
def test_responses_presets_convert_with_every_tool_kind(name):
    value = json.loads(preset(name))
    converted = responses_to_chat_request(value, ResponsesOptions())
    assert converted.stream
    if PRESETS[name].size:
        kinds = {tool["type"] for tool in value["tools"]}
        assert kinds == {"function", "namespace", "custom"}
        assert any(target.custom for target in converted.tools.values())
        assert any(target.namespace for target in converted.tools.values())
        calls = [m for m in converted.body["messages"] if m.get("tool_calls")]
        assert calls and len(calls) == sum(m["role"] == "tool" for m in converted.body["messages"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_no_body_fools_the_fake_upstreams_stream_test(name):
    """The fake upstreams decide SSE from `"stream": true` anywhere in the body."""
    data = preset(name)
    assert data.count(b'"stream":true') == (1 if PRESETS[name].stream else 0)


def _fields(shape: Shape) -> dict:
    return {name: getattr(shape, name) for name in shape.__slots__}
