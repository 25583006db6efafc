"""The nesting check on parsed request bodies, at every depth around its limits. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from proxy_service.bodies import ORJSON_MAX_DEPTH, nesting_within


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
