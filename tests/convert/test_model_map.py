"""ModelMap: MODEL_MAP parsing and first-match-wins resolution."""

from __future__ import annotations

import pytest

from proxy_service.convert.model_map import ModelMap

SETTING = "claude-3-5-haiku-20241022=small,*haiku*=small-model,*sonnet*=big,*=default-model"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("claude-3-5-haiku-20241022", "small"),  # exact rule listed before the glob
        ("claude-haiku-4-5", "small-model"),
        ("CLAUDE-Sonnet-4-5", "big"),  # case-insensitive
        ("claude-opus-4-1", "default-model"),  # `*` is the default
    ],
)
def test_resolve_first_match_wins(name: str, expected: str) -> None:
    assert ModelMap.parse(SETTING).resolve(name) == expected


def test_empty_map_and_no_match_keep_the_name() -> None:
    assert ModelMap.parse("").resolve("claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert ModelMap.parse("*haiku*=small").resolve("gpt-4o") == "gpt-4o"


def test_exact_name_does_not_match_prefixes() -> None:
    model_map = ModelMap.parse("claude-sonnet-4=big")
    assert model_map.resolve("claude-sonnet-4") == "big"
    assert model_map.resolve("claude-sonnet-4-5") == "claude-sonnet-4-5"


def test_whitespace_and_trailing_comma_are_tolerated() -> None:
    model_map = ModelMap.parse(" *opus* = big-model ,\n *=fallback ,")
    assert model_map.resolve("claude-opus-4") == "big-model"
    assert model_map.resolve("x") == "fallback"


def test_question_mark_and_character_class() -> None:
    model_map = ModelMap.parse("gpt-4?=four,model-[ab]=ab")
    assert model_map.resolve("gpt-4o") == "four"
    assert model_map.resolve("model-b") == "ab"
    assert model_map.resolve("model-c") == "model-c"


@pytest.mark.parametrize(
    "text",
    ["haiku", "=target", "pattern=", "*haiku*=small *sonnet*=big", "a=b=c", "a b=c"],
)
def test_bad_syntax_raises_with_the_rule(text: str) -> None:
    with pytest.raises(ValueError, match="MODEL_MAP rule 1"):
        ModelMap.parse(text)


def test_error_names_the_offending_rule_position() -> None:
    with pytest.raises(ValueError, match=r"rule 2 'oops'"):
        ModelMap.parse("a=b,oops")
