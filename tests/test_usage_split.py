"""The usage split (shared/usage_split.py) as pure functions: every upstream usage shape the
gateway meets, junk, and the properties records rely on: the categories add up to the upstream's
total input, a record's normalised figures split like the upstream's own, and a streamed and a
buffered reply with the same upstream usage give the same record and the same client usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy_service.convert.anthropic.request import ConversionOptions, anthropic_to_openai_request
from proxy_service.convert.anthropic.response import openai_to_anthropic_message, usage_from_openai
from proxy_service.convert.anthropic.stream import AnthropicStreamTranslator
from proxy_service.convert.openai.stream_tap import OpenAIStreamTap
from proxy_service.convert.openai.usage import usage_record
from proxy_service.convert.responses import (
    ResponsesOptions,
    ResponsesStreamTranslator,
    chat_to_response,
    responses_to_chat_request,
)
from proxy_service.convert.responses.response import responses_usage
from shared.usage_split import (
    CATEGORIES,
    MAX_TOKEN_COUNT,
    largest_count,
    normalised_usage,
    split_usage,
    token_count,
    total_input,
)
from tests.convert.chat_chunks import chunk, content, finish, sse
from tests.convert.frames import parse_frames, run

MAX = MAX_TOKEN_COUNT


def split(**counts: int) -> dict[str, int]:
    """A split with the given categories, the rest 0."""
    assert set(counts) <= set(CATEGORIES)
    return {name: counts.get(name, 0) for name in CATEGORIES}


# -- every shape an upstream sends ------------------------------------------------------------

SHAPES: list[tuple[str, Any, dict[str, int]]] = [
    (
        "openai, no details",
        {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        split(input=100, output=20),
    ),
    (
        "openai, cached_tokens 0",
        {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
        split(input=100, output=20),
    ),
    (
        "openai, details null",
        {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": None},
        split(input=100, output=20),
    ),
    (
        "openai, cached_tokens: prompt_tokens includes them",
        {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 80},
        },
        split(input=20, cache_read=80, output=20),
    ),
    (
        "openai, every prompt token cached",
        {
            "prompt_tokens": 100,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
        split(cache_read=100, output=1),
    ),
    (
        "openai-compatible, cache_write_tokens in details (OpenRouter)",
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 50},
        },
        split(input=20, cache_read=30, cache_write_5m=50, output=5),
    ),
    (
        "openai-compatible, cache_creation_tokens in details",
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 30, "cache_creation_tokens": 50},
        },
        split(input=20, cache_read=30, cache_write_5m=50, output=5),
    ),
    (
        "openai-compatible, top-level cache_write_tokens",
        {"prompt_tokens": 100, "completion_tokens": 5, "cache_write_tokens": 40},
        split(input=60, cache_write_5m=40, output=5),
    ),
    (
        "openai, reasoning_tokens a part of completion_tokens",
        {
            "prompt_tokens": 10,
            "completion_tokens": 50,
            "completion_tokens_details": {"reasoning_tokens": 30, "accepted_prediction_tokens": 0},
        },
        split(input=10, output=50, reasoning=30),
    ),
    (
        "reasoning above output is cut to output",
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "completion_tokens_details": {"reasoning_tokens": 9},
        },
        split(input=10, output=5, reasoning=5),
    ),
    (
        "deepseek: hit + miss = prompt_tokens",
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "total_tokens": 110,
            "prompt_cache_hit_tokens": 60,
            "prompt_cache_miss_tokens": 40,
        },
        split(input=40, cache_read=60, output=10),
    ),
    (
        "deepseek with prompt_tokens_details too",
        {
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 60},
            "prompt_cache_hit_tokens": 60,
            "prompt_cache_miss_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
        split(input=40, cache_read=60, output=10, reasoning=4),
    ),
    (
        "deepseek, hit 0 beside cached_tokens (a placeholder, the largest wins)",
        {
            "prompt_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 60},
            "prompt_cache_hit_tokens": 0,
        },
        split(input=40, cache_read=60),
    ),
    (
        "responses api: input_tokens includes the cache",
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 80},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 10},
            "total_tokens": 130,
        },
        split(input=20, cache_read=80, output=30, reasoning=10),
    ),
    (
        "responses api with cache_write_tokens",
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 20},
            "output_tokens": 3,
        },
        split(input=50, cache_read=30, cache_write_5m=20, output=3),
    ),
    (
        "anthropic, no cache",
        {"input_tokens": 10, "output_tokens": 5},
        split(input=10, output=5),
    ),
    (
        "anthropic: input_tokens excludes reads and writes",
        {
            "input_tokens": 4,
            "cache_read_input_tokens": 30940,
            "cache_creation_input_tokens": 1200,
            "output_tokens": 200,
        },
        split(input=4, cache_read=30940, cache_write_5m=1200, output=200),
    ),
    (
        "anthropic with the TTL split",
        {
            "input_tokens": 3,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
            "output_tokens": 50,
        },
        split(input=3, cache_read=1000, cache_write_5m=200, cache_write_1h=300, output=50),
    ),
    (
        "anthropic, every write 1 h (Claude Code)",
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500},
        },
        split(input=3, cache_write_1h=500),
    ),
    (
        "anthropic, split all zeros beside a write total: the total counts as 5 min",
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        },
        split(input=3, cache_write_5m=500),
    ),
    (
        "anthropic, the split without the total",
        {
            "input_tokens": 3,
            "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
        },
        split(input=3, cache_write_5m=20, cache_write_1h=30),
    ),
    (
        "anthropic, cache_creation not an object",
        {"input_tokens": 3, "cache_creation_input_tokens": 7, "cache_creation": [1, 2]},
        split(input=3, cache_write_5m=7),
    ),
    (
        "anthropic, only cache_read_input_tokens",
        {"input_tokens": 3, "cache_read_input_tokens": 0, "output_tokens": 1},
        split(input=3, output=1),
    ),
    (
        "litellm #11364: cached_tokens 0 beside top-level cache_read_input_tokens",
        {
            "prompt_tokens": 30946,
            "completion_tokens": 200,
            "total_tokens": 31146,
            "prompt_tokens_details": {"cached_tokens": 0},
            "cache_read_input_tokens": 30940,
            "cache_creation_input_tokens": 0,
        },
        split(input=6, cache_read=30940, output=200),
    ),
    (
        "litellm, writes counted in prompt_tokens and given in three places",
        {
            "prompt_tokens": 32144,
            "completion_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 30940, "cache_creation_tokens": 1200},
            "cache_read_input_tokens": 30940,
            "cache_creation_input_tokens": 1200,
        },
        split(input=4, cache_read=30940, cache_write_5m=1200, output=200),
    ),
    (
        "openai-shaped whose cache exceeds prompt_tokens: read as Anthropic's convention",
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
        split(input=10, cache_read=100, output=2),
    ),
    (
        "openai names with anthropic's cache fields exceeding prompt_tokens",
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 50,
        },
        split(input=10, cache_read=100, cache_write_5m=50, output=2),
    ),
    (
        "a record's normalised figures",
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "total_tokens": 105,
            "cached_tokens": 30,
            "cache_write_tokens": 50,
            "cache_write_1h_tokens": 20,
            "reasoning_tokens": 2,
        },
        split(input=20, cache_read=30, cache_write_5m=30, cache_write_1h=20, output=5, reasoning=2),
    ),
    (
        "an estimated record",
        {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "cached_tokens": 0,
            "estimated": True,
        },
        split(input=7, output=3),
    ),
]


@pytest.mark.parametrize(("usage", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_every_upstream_shape(usage: dict, expected: dict[str, int]) -> None:
    got = split_usage(usage)
    assert got == expected
    assert list(got) == list(CATEGORIES)
    # What the record keeps splits the same, and its prompt_tokens is the total input.
    record = usage_record(usage)
    assert record is not None
    assert split_usage(record) == expected
    assert record["prompt_tokens"] == total_input(expected)
    assert record["completion_tokens"] == expected["output"]
    assert record["cached_tokens"] == expected["cache_read"]


@pytest.mark.parametrize(
    "usage", [None, {}, [], (), "usage", 42, 1.5, True, [("prompt_tokens", 3)]]
)
def test_missing_usage_splits_to_zeros(usage: object) -> None:
    assert split_usage(usage) == split()
    if isinstance(usage, dict):
        assert normalised_usage(usage) == {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
        }
    else:
        assert normalised_usage(usage) is None
        assert usage_record(usage) is None


def test_usage_record_is_none_for_anything_but_an_object() -> None:
    assert usage_record(None) is None
    assert usage_record([1, 2]) is None
    assert usage_record("x") is None
    assert usage_record({}) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cached_tokens": 0,
    }


def test_normalised_figures_keep_only_nonzero_extras() -> None:
    assert normalised_usage({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}) == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "cached_tokens": 0,
    }
    anthropic = {
        "input_tokens": 3,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 300},
        "output_tokens": 50,
    }
    assert normalised_usage(anthropic) == {
        "prompt_tokens": 1503,  # in OpenAI's convention: the total input
        "completion_tokens": 50,
        "total_tokens": 1553,
        "cached_tokens": 1000,
        "cache_write_tokens": 500,
        "cache_write_1h_tokens": 300,
    }
    reasoning = {
        "prompt_tokens": 1,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 4},
    }
    assert normalised_usage(reasoning) == {
        "prompt_tokens": 1,
        "completion_tokens": 9,
        "total_tokens": 10,
        "cached_tokens": 0,
        "reasoning_tokens": 4,
    }


def test_upstream_total_tokens_is_kept_when_a_count() -> None:
    figures = normalised_usage({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 99})
    assert figures is not None and figures["total_tokens"] == 99
    for junk in (None, "3", -1, 0, float("nan"), True):
        figures = normalised_usage(
            {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": junk}
        )
        assert figures is not None and figures["total_tokens"] == 3


# -- junk values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (0, 0),
        (7, 7),
        (-5, 0),
        (7.9, 7),
        (-0.5, 0),
        (1e300, MAX),
        (-1e300, 0),
        (2**80, MAX),
        (MAX, MAX),
        (MAX + 1, MAX),
        (True, None),
        (False, None),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        ("12", None),
        (None, None),
        ([3], None),
        ({"n": 3}, None),
    ],
)
def test_token_count(value: object, count: int | None) -> None:
    got = token_count(value)
    assert got == count
    assert got is None or type(got) is int


def test_largest_count_skips_non_counts() -> None:
    assert largest_count() == 0
    assert largest_count(None, "9", True, float("nan")) == 0
    assert largest_count(0, 5, None, 3) == 5
    assert largest_count(-3, 2.5) == 2


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": -5, "completion_tokens": -1}, split()),
        ({"prompt_tokens": True, "completion_tokens": False}, split()),
        ({"prompt_tokens": "100", "completion_tokens": "5"}, split()),
        ({"prompt_tokens": float("nan"), "completion_tokens": float("inf")}, split()),
        ({"prompt_tokens": 10.7, "completion_tokens": 2.2}, split(input=10, output=2)),
        ({"prompt_tokens": 2**70, "completion_tokens": 2**70}, split(input=MAX, output=MAX)),
        (
            {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": -40}},
            split(input=100),
        ),
        (
            {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": True}},
            split(input=100),
        ),
        (
            {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": "40"}},
            split(input=100),
        ),
        ({"prompt_tokens": 100, "prompt_tokens_details": "cached"}, split(input=100)),
        ({"prompt_tokens": 100, "prompt_tokens_details": [40]}, split(input=100)),
        (
            {"prompt_tokens": 10, "completion_tokens_details": {"reasoning_tokens": float("nan")}},
            split(input=10),
        ),
        # prompt_tokens not a count: input_tokens is the next name for the total.
        ({"prompt_tokens": None, "input_tokens": 50}, split(input=50)),
        ({"prompt_tokens": "x", "input_tokens": 50, "output_tokens": 3}, split(input=50, output=3)),
        # A huge cache beside a huge prompt: clamped, never above the bound.
        (
            {"prompt_tokens": 2**60, "prompt_tokens_details": {"cached_tokens": 2**60}},
            split(cache_read=MAX),
        ),
    ],
)
def test_junk_values(usage: dict, expected: dict[str, int]) -> None:
    assert split_usage(usage) == expected
    assert split_usage(normalised_usage(usage)) == expected


def test_huge_anthropic_counts_are_clamped_to_a_total_input_within_the_bound() -> None:
    usage = {
        "input_tokens": 2**60,
        "cache_read_input_tokens": 2**60,
        "cache_creation_input_tokens": 2**60,
        "cache_creation": {"ephemeral_5m_input_tokens": 2**60, "ephemeral_1h_input_tokens": 2**60},
        "output_tokens": 2**60,
    }
    got = split_usage(usage)
    assert all(0 <= got[name] <= MAX for name in CATEGORIES)
    assert total_input(got) <= MAX
    figures = normalised_usage(usage)
    assert figures is not None and all(0 <= v <= MAX for v in figures.values())
    assert split_usage(figures) == got


def test_total_input_of_a_partial_split_counts_what_is_there() -> None:
    assert (
        total_input(split(input=1, cache_read=2, cache_write_5m=3, cache_write_1h=4, output=99))
        == 10
    )
    assert total_input({"input": 5}) == 5
    assert total_input({}) == 0


# -- properties: the categories add up --------------------------------------------------------

COUNT = st.integers(min_value=0, max_value=2**40)


@st.composite
def openai_usage(draw: st.DrawFn) -> tuple[dict, dict[str, int]]:
    """A consistent OpenAI-shaped usage (chat, DeepSeek, LiteLLM, OpenRouter), and its facts:
    prompt_tokens, cache read, cache write, completion, reasoning."""
    prompt = draw(COUNT)
    read = draw(st.integers(0, prompt))
    write = draw(st.integers(0, prompt - read))
    completion = draw(COUNT)
    reasoning = draw(st.integers(0, completion))
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if draw(st.booleans()):
        usage["total_tokens"] = prompt + completion
    details: dict[str, Any] = {}
    match draw(st.sampled_from(["details", "litellm", "both", "deepseek", "none"])):
        case "details":
            details["cached_tokens"] = read
        case "litellm":  # cached_tokens 0 beside the real figure (LiteLLM #11364)
            details["cached_tokens"] = 0
            usage["cache_read_input_tokens"] = read
        case "both":
            details["cached_tokens"] = read
            usage["cache_read_input_tokens"] = read
        case "deepseek":
            usage["prompt_cache_hit_tokens"] = read
            usage["prompt_cache_miss_tokens"] = prompt - read
            if draw(st.booleans()):
                details["cached_tokens"] = read
        case _:
            if read:
                details["cached_tokens"] = read
    where = draw(st.sampled_from(["cache_write_tokens", "cache_creation_tokens", "top", "litellm"]))
    if write or draw(st.booleans()):
        match where:
            case "top":
                usage["cache_write_tokens"] = write
            case "litellm":
                usage["cache_creation_input_tokens"] = write
            case _:
                details[where] = write
    if details or draw(st.booleans()):
        usage["prompt_tokens_details"] = details
    if reasoning or draw(st.booleans()):
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    facts = {
        "total": prompt,
        "read": read,
        "write": write,
        "output": completion,
        "reasoning": reasoning,
    }
    return usage, facts


@st.composite
def responses_api_usage(draw: st.DrawFn) -> tuple[dict, dict[str, int]]:
    total = draw(COUNT)
    read = draw(st.integers(0, total))
    write = draw(st.integers(0, total - read))
    output = draw(COUNT)
    reasoning = draw(st.integers(0, output))
    details: dict[str, Any] = {"cached_tokens": read}
    if write or draw(st.booleans()):
        details["cache_write_tokens"] = write
    usage = {
        "input_tokens": total,
        "input_tokens_details": details,
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total + output,
    }
    facts = {"total": total, "read": read, "write": write, "output": output, "reasoning": reasoning}
    return usage, facts


@st.composite
def anthropic_usage(draw: st.DrawFn) -> tuple[dict, dict[str, int]]:
    """Anthropic's usage: input_tokens without the cache; facts also give the 1 h writes."""
    uncached, read, output = draw(COUNT), draw(COUNT), draw(COUNT)
    write_5m, write_1h = draw(COUNT), draw(COUNT)
    usage: dict[str, Any] = {"input_tokens": uncached, "output_tokens": output}
    match draw(st.sampled_from(["total and split", "total only", "split only", "none"])):
        case "total and split":
            usage["cache_creation_input_tokens"] = write_5m + write_1h
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            }
        case "total only":  # no TTL split: all of it counts as 5 min
            write_5m, write_1h = write_5m + write_1h, 0
            usage["cache_creation_input_tokens"] = write_5m
        case "split only":
            usage["cache_creation"] = {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            }
        case _:
            write_5m = write_1h = 0
            usage["cache_creation_input_tokens"] = 0
    usage["cache_read_input_tokens"] = read
    facts = {
        "total": uncached + read + write_5m + write_1h,
        "uncached": uncached,
        "read": read,
        "write": write_5m + write_1h,
        "write_1h": write_1h,
        "output": output,
        "reasoning": 0,
    }
    return usage, facts


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2**12),
    st.sampled_from([MAX - 1, MAX, MAX + 1, 2**63, 2**64 + 1, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.just([1]),
)
USAGE_NAMES = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "prompt_cache_hit_tokens",
    "prompt_cache_miss_tokens",
    "reasoning_tokens",
]
DETAIL_NAMES = [
    "cached_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
]
DETAILS = st.one_of(JUNK, st.dictionaries(st.sampled_from(DETAIL_NAMES), JUNK, max_size=4))
JUNK_USAGE = st.builds(
    lambda top, nested: {**top, **nested},
    st.dictionaries(st.sampled_from(USAGE_NAMES), JUNK, max_size=8),
    st.dictionaries(
        st.sampled_from(
            [
                "prompt_tokens_details",
                "input_tokens_details",
                "completion_tokens_details",
                "output_tokens_details",
                "cache_creation",
            ]
        ),
        DETAILS,
        max_size=3,
    ),
)
"""Any mix of the names splits read, with any values: what a broken upstream may send."""

CONSISTENT = st.one_of(openai_usage(), responses_api_usage(), anthropic_usage())
ANY_USAGE = st.one_of(CONSISTENT.map(lambda pair: pair[0]), JUNK_USAGE)


def check_facts(usage: dict, facts: dict[str, int]) -> dict[str, int]:
    got = split_usage(usage)
    assert total_input(got) == facts["total"]
    assert got["cache_read"] == facts["read"]
    assert got["cache_write_5m"] + got["cache_write_1h"] == facts["write"]
    assert got["output"] == facts["output"]
    assert got["reasoning"] == facts["reasoning"]
    return got


@given(openai_usage())
def test_openai_shaped_categories_add_up_to_prompt_tokens(
    pair: tuple[dict, dict[str, int]],
) -> None:
    usage, facts = pair
    got = check_facts(usage, facts)
    assert got["input"] == facts["total"] - facts["read"] - facts["write"]
    assert got["cache_write_1h"] == 0  # OpenAI-shaped writes carry no TTL: 5 min


@given(responses_api_usage())
def test_responses_api_categories_add_up_to_input_tokens(pair: tuple[dict, dict[str, int]]) -> None:
    usage, facts = pair
    got = check_facts(usage, facts)
    assert got["input"] == facts["total"] - facts["read"] - facts["write"]


@given(anthropic_usage())
def test_anthropic_categories_add_up_to_input_plus_cache(pair: tuple[dict, dict[str, int]]) -> None:
    usage, facts = pair
    got = check_facts(usage, facts)
    assert got["input"] == facts["uncached"] == usage["input_tokens"]
    assert got["cache_write_1h"] == facts["write_1h"]


@given(ANY_USAGE)
@example({"prompt_tokens": 1, "cached_tokens": MAX})
@example({"input_tokens": 5, "cache_read_input_tokens": MAX, "cache_creation_input_tokens": 9})
def test_any_usage_splits_into_bounded_counts(usage: dict) -> None:
    got = split_usage(usage)
    assert list(got) == list(CATEGORIES)
    assert all(type(v) is int and 0 <= v <= MAX for v in got.values())
    assert got["reasoning"] <= got["output"]
    assert total_input(got) <= MAX


@given(ANY_USAGE)
@example({"prompt_tokens": 2, "cached_tokens": MAX})
@example({"input_tokens": 5, "cache_read_input_tokens": MAX, "cache_creation_input_tokens": 9})
def test_normalised_usage_splits_exactly_like_the_upstream_usage(usage: dict) -> None:
    figures = normalised_usage(usage)
    assert figures is not None
    assert all(type(v) is int and 0 <= v <= MAX for v in figures.values())
    got = split_usage(usage)
    assert split_usage(figures) == got
    assert figures["prompt_tokens"] == total_input(got)
    assert figures["completion_tokens"] == got["output"]
    assert figures["cached_tokens"] == got["cache_read"]
    assert normalised_usage(figures) == figures  # a record read back is the record


# -- properties: a streamed and a buffered reply give the same split --------------------------

JSON_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
)
JSON_JUNK_USAGE = st.builds(
    lambda top, details: {**top, **({"prompt_tokens_details": details} if details else {})},
    st.dictionaries(st.sampled_from(USAGE_NAMES), JSON_JUNK, max_size=6),
    st.dictionaries(st.sampled_from(DETAIL_NAMES), JSON_JUNK, max_size=3),
)
UPSTREAM_USAGE = st.one_of(
    openai_usage().map(lambda pair: pair[0]),
    anthropic_usage().map(lambda pair: pair[0]),
    responses_api_usage().map(lambda pair: pair[0]),
    JSON_JUNK_USAGE,
)
"""What a Chat Completions upstream may put in `usage`: its own names, an Anthropic-speaking
upstream's, or junk (JSON-serialisable: both paths read the same bytes)."""
REPORTED = st.one_of(
    openai_usage().map(lambda pair: pair[0]),
    JSON_JUNK_USAGE.map(lambda u: {**u, "prompt_tokens": 9, "completion_tokens": 4}),
)
"""Usage with prompt_tokens and completion_tokens: the client usage has no estimate in it."""

ANTHROPIC_REQUEST = anthropic_to_openai_request(
    {
        "model": "claude-proxy-test",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    },
    ConversionOptions(),
)
RESPONSES_REQUEST = responses_to_chat_request(
    {"model": "gw-model", "input": "hi", "stream": True}, ResponsesOptions()
)
CUTS = st.lists(st.integers(min_value=0, max_value=4000), max_size=6)


def replies(usage: dict) -> tuple[bytes, dict]:
    """The same answer with the same upstream usage, streamed (SSE bytes, the usage in the
    include_usage trailer) and buffered (the chat.completion as the proxy parses it)."""
    stream = sse(
        content("Hel"),
        content("lo there"),
        finish("stop"),
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage},
    )
    body = orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "up",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )
    return stream, orjson.loads(body)


def tap_usage(stream: bytes, cuts: list[int]) -> dict | None:
    tap = OpenAIStreamTap(drop_usage_chunk=True)
    last = 0
    for cut in sorted({min(c, len(stream)) for c in cuts}):
        tap.feed(stream[last:cut])
        last = cut
    tap.feed(stream[last:])
    tap.flush()
    return tap.usage


@settings(max_examples=150, deadline=None)
@given(UPSTREAM_USAGE, CUTS)
def test_chat_passthrough_stream_and_buffered_record_the_same(usage: dict, cuts: list[int]) -> None:
    stream, answer = replies(usage)
    buffered = usage_record(answer["usage"])
    streamed = tap_usage(stream, cuts)
    assert streamed == buffered
    assert streamed is not None
    assert split_usage(streamed) == split_usage(answer["usage"])


def anthropic_stream(stream: bytes, cuts: list[int]) -> tuple[dict, dict[str, int]]:
    translator = AnthropicStreamTranslator(ANTHROPIC_REQUEST, "msg_test")
    events = parse_frames(run(translator, stream, sorted(min(c, len(stream)) for c in cuts)))
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert not translator.usage_estimated
    return delta["usage"], translator.usage


def responses_stream(stream: bytes, cuts: list[int]) -> tuple[dict, dict[str, int]]:
    translator = ResponsesStreamTranslator(RESPONSES_REQUEST)
    events = parse_frames(run(translator, stream, sorted(min(c, len(stream)) for c in cuts)))
    assert events[-1]["type"] == "response.completed"
    assert not translator.usage_estimated
    return events[-1]["response"]["usage"], translator.usage


@settings(max_examples=100, deadline=None)
@given(UPSTREAM_USAGE, CUTS)
def test_translated_streams_record_what_the_buffered_answers_record(
    usage: dict, cuts: list[int]
) -> None:
    stream, answer = replies(usage)
    buffered = usage_record(answer["usage"])
    _, anthropic_record = anthropic_stream(stream, cuts)
    _, responses_record = responses_stream(stream, cuts)
    assert anthropic_record == buffered
    assert responses_record == buffered


@settings(max_examples=100, deadline=None)
@given(REPORTED, CUTS)
def test_translated_streams_show_the_client_what_the_buffered_answers_show(
    usage: dict, cuts: list[int]
) -> None:
    stream, answer = replies(usage)
    got = split_usage(answer["usage"])

    anthropic_streamed, _ = anthropic_stream(stream, cuts)
    anthropic_buffered = openai_to_anthropic_message(answer, ANTHROPIC_REQUEST, "msg_test")["usage"]
    assert (
        anthropic_streamed
        == anthropic_buffered
        == {
            "input_tokens": got["input"],
            "cache_creation_input_tokens": got["cache_write_5m"] + got["cache_write_1h"],
            "cache_read_input_tokens": got["cache_read"],
            "output_tokens": got["output"],
        }
    )

    responses_streamed, _ = responses_stream(stream, cuts)
    responses_buffered = chat_to_response(answer, RESPONSES_REQUEST)["usage"]
    assert responses_streamed == responses_buffered
    assert responses_streamed["input_tokens"] == total_input(got)
    assert responses_streamed["input_tokens_details"] == {
        "cached_tokens": got["cache_read"],
        "cache_write_tokens": got["cache_write_5m"] + got["cache_write_1h"],
    }
    assert responses_streamed["output_tokens"] == got["output"]
    assert responses_streamed["output_tokens_details"] == {"reasoning_tokens": got["reasoning"]}


@pytest.mark.parametrize("usage", [s[1] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_every_shape_streamed_and_buffered_gives_the_same_record(usage: dict) -> None:
    stream, answer = replies(usage)
    buffered = usage_record(answer["usage"])
    assert buffered == usage_record(usage)
    assert tap_usage(stream, [len(stream) // 2]) == buffered
    anthropic_client, anthropic_record = anthropic_stream(stream, [])
    responses_client, responses_record = responses_stream(stream, [])
    assert anthropic_record == responses_record == buffered
    assert anthropic_client == openai_to_anthropic_message(answer, ANTHROPIC_REQUEST, "m")["usage"]
    assert responses_client == chat_to_response(answer, RESPONSES_REQUEST)["usage"]


@given(openai_usage())
def test_client_usage_in_each_protocol_splits_like_the_upstream_usage(
    pair: tuple[dict, dict[str, int]],
) -> None:
    """What a client is shown, read back in its own protocol's convention, is the same split."""
    usage, _ = pair
    got = split_usage(usage)
    anthropic = usage_from_openai(usage)
    assert split_usage(anthropic) == {**got, "reasoning": 0}
    responses = responses_usage(usage, estimated_input=0, estimated_output=0)
    assert split_usage(responses) == {
        **got,
        "cache_write_5m": got["cache_write_5m"] + got["cache_write_1h"],
        "cache_write_1h": 0,
    }


def test_keepalive_chunks_with_usage_on_every_chunk_keep_the_last() -> None:
    """Some upstreams repeat a growing usage on every chunk: the last one is the reply's."""
    first = {"prompt_tokens": 10, "completion_tokens": 1}
    last = {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    stream = sse(
        chunk({"content": "a"}, usage=first),
        chunk({"content": "b"}, "stop", usage=last),
    )
    assert tap_usage(stream, []) == usage_record(last)
    translator = AnthropicStreamTranslator(ANTHROPIC_REQUEST, "msg_test")
    run(translator, stream)
    assert translator.usage == usage_record(last)
