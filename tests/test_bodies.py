"""The request body checks: nesting on parsed bodies, at every depth around its limits, and the
count of values made on the bytes before parsing, against a reference count. Pure."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.bodies import (
    ORJSON_MAX_DEPTH,
    count_json_values,
    json_values_within,
    nesting_within,
)


def nested(levels: int, kind: str) -> Any:
    value: Any = "leaf"
    for level in range(levels):
        value = [value] if kind == "list" or (kind == "mixed" and level % 2) else {"k": value}
    return value


@pytest.mark.parametrize("limit", [8, 64, 128, 200])
@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
def test_exactly_the_limit_passes(limit: int, kind: str):
    assert nesting_within(nested(limit, kind), limit)
    assert not nesting_within(nested(limit + 1, kind), limit)


@pytest.mark.parametrize("levels", [ORJSON_MAX_DEPTH, ORJSON_MAX_DEPTH + 1, 1000])
def test_what_orjson_cannot_write_is_refused(levels: int):
    assert not nesting_within(nested(levels, "mixed"), 128)


def test_a_wide_body_is_not_deep_and_the_check_leaves_no_trace():
    body = {"messages": [{"content": [{"text": "x"}] * 500}] * 50, "tools": [{}] * 100}
    assert nesting_within(body, 8)
    assert nesting_within({"a": 1}, 8)  # the shared wrapper was emptied after the last call


# --- the value count made before parsing ---------------------------------------------------


def values_in(value: Any) -> int:
    """The reference count: every value of the parsed tree, object keys not counted."""
    if isinstance(value, dict):
        return 1 + sum(map(values_in, value.values()))
    if isinstance(value, list):
        return 1 + sum(map(values_in, value))
    return 1


TRICKY_TEXT = st.text(alphabet='ab,{}[]":\\ \n\té\u2028😀', max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TRICKY_TEXT, inner, max_size=5),
    max_leaves=40,
)
WRITERS = (
    orjson.dumps,
    lambda value: json.dumps(value).encode(),
    lambda value: json.dumps(value, indent=2, ensure_ascii=False).encode(),
    lambda value: json.dumps(value, separators=(" , ", " :\n ")).encode(),
)


@given(
    value=JSON_VALUES, writer=st.sampled_from(WRITERS), window=st.sampled_from([1, 2, 3, 7, 4096])
)
@settings(max_examples=400, deadline=None)
def test_the_count_is_exact_whatever_the_strings_hold_and_wherever_windows_end(
    value: Any, writer, window: int
):
    raw = writer(value)
    assert count_json_values(raw, stop_above=10**9, window=window) == values_in(value)


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b",".join([b"{}"] * 5000) + b"]",
        b"[" + b", ".join([b"[ ]"] * 5000) + b"]",
        b"[" + b",".join([b'"x,{[\\\\"'] * 5000) + b"]",
        b'{"a":[' + b",".join([b"0"] * 5000) + b"]}",
        orjson.dumps({"messages": [{"role": "user", "content": ", [{" * 500}] * 1000}),
    ],
    ids=["empty-objects", "spaced-empty-arrays", "strings-of-commas", "numbers", "messages"],
)
def test_exactly_the_limit_passes_and_one_more_is_refused(body: bytes):
    values = values_in(orjson.loads(body))
    assert json_values_within(body, values)
    assert not json_values_within(body, values - 1)


def test_text_full_of_commas_and_brackets_inside_strings_passes():
    """What a long coding session looks like: far more `,{[` bytes than values."""
    body = orjson.dumps({"messages": [{"content": "f(a, [b], {c}), " * 200_000}]})
    assert 1 + sum(body.count(c) for c in (b",", b"{", b"[")) > 1_000_000
    assert json_values_within(body, 1_000_000)


def test_a_body_of_millions_of_values_is_refused_early_and_small():
    """The count stops once past the limit: 31 MiB of empty objects costs a few windows."""
    body = b"[" + b"{}," * 10_999_999 + b"{}]"
    assert not json_values_within(body, 1_000_000)
    assert count_json_values(body, stop_above=1_000_000) < 1_200_000
