"""Estimates for OpenAI chat traffic the upstream reported no usage for, and count clamping."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_service.convert.openai.estimate import estimate_output, estimate_prompt
from proxy_service.convert.openai.usage import MAX_TOKEN_COUNT, token_count, usage_record


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)


def delta(**fields) -> dict:
    return {"choices": [{"index": 0, "delta": fields}]}


@pytest.mark.parametrize("chars", [35, 3_500, 350_000])
def test_prompt_estimate_grows_with_the_text(chars: int):
    body = {"messages": [{"role": "user", "content": "x" * chars}]}
    assert chars / 3.5 <= estimate_prompt(body) <= chars / 3.5 + 5


def test_prompt_estimate_counts_parts_images_tool_calls_and_tools():
    plain = estimate_prompt({"messages": [{"role": "user", "content": "hello"}]})
    parts = [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "x"}}]
    with_image = estimate_prompt({"messages": [{"role": "user", "content": parts}]})
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}" * 100}}
    with_call = estimate_prompt(
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
    )
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with_tools = estimate_prompt({"messages": [], "tools": [tool]})
    assert with_image >= plain + 1600
    assert with_call > 50
    assert with_tools > 350


JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(JSON)
def test_estimates_never_raise_and_are_positive(value):
    assert estimate_prompt({"messages": value, "tools": value}) >= 1
    assert estimate_output(orjson.dumps(value)) >= 0
    assert estimate_output(b"data: " + orjson.dumps(value) + b"\n\n") >= 0


@pytest.mark.parametrize("chars", [1, 70, 7_000])
def test_output_estimate_of_a_stream_and_of_a_body_agree(chars: int):
    text = "y" * chars
    streamed = sse(delta(role="assistant", content=""), delta(content=text), delta())
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})
    assert estimate_output(streamed) == estimate_output(body) >= chars / 3.5


def test_output_estimate_counts_reasoning_and_tool_arguments():
    call = {"index": 0, "function": {"name": "Bash", "arguments": '{"command": "ls -la"}' * 10}}
    streamed = sse(delta(reasoning_content="r" * 350), delta(tool_calls=[call]))
    assert estimate_output(streamed) >= 100 + 50


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (5, 5),
        (-3, 0),
        (2**64 + 1, MAX_TOKEN_COUNT),
        (1.8446744073709552e19, MAX_TOKEN_COUNT),
        (True, None),
        ("12", None),
        (None, None),
        (float("inf"), None),
    ],
)
def test_token_counts_are_clamped_ints(value, count):
    assert token_count(value) == count


def test_a_usage_record_always_serialises_whatever_the_counts():
    huge = 2**64 - 1  # orjson reads it as an int; two of them add past 64 bits
    record = usage_record({"prompt_tokens": huge, "completion_tokens": huge})
    assert record is not None and record["total_tokens"] == MAX_TOKEN_COUNT
    orjson.dumps(record)
