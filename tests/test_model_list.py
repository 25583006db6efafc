"""Pure pieces of /v1/models and /v1/embeddings: aliases, list shapes, paging, what the embeddings
record keeps, and the error codes of framework statuses."""

from __future__ import annotations

import base64
import struct
import typing

import orjson
import pytest

from proxy_service.convert.model_map import ModelMap
from proxy_service.convert.openai import embeddings
from proxy_service.convert.openai.model_list import (
    NotAModelList,
    anthropic_list,
    openai_list,
    upstream_models,
    with_aliases,
)
from proxy_service.errors import ProxyError, UpstreamFailure
from proxy_service.metering import REQUEST_ID_HEADERS
from shared.events import Protocol


def test_plain_patterns_are_aliases_and_globs_are_not():
    model_map = ModelMap.parse("Claude-Opus-5=big,claude-*=big,gpt-?o=x,o[13]=y,claude-opus-5=z")
    assert model_map.aliases == ("Claude-Opus-5",)
    assert ModelMap.parse("").aliases == ()


def test_aliases_come_first_unless_the_upstream_lists_them():
    models = upstream_models(orjson.dumps({"data": [{"id": "gpt-4o"}, {"id": "local"}]}))
    merged = with_aliases(models, ("claude-x", "gpt-4o"))
    assert [(m["id"], m["owned_by"]) for m in merged] == [
        ("claude-x", "b23-llm-proxy"),
        ("gpt-4o", ""),
        ("local", ""),
    ]
    assert openai_list(merged, codex_manifest=False) == {"object": "list", "data": merged}
    assert openai_list([], codex_manifest=True) == {"object": "list", "data": [], "models": []}


@pytest.mark.parametrize(
    "body",
    [b"<html>", b"[]", b'{"data": {}}', b'{"object": "list"}', b"null"],
)
def test_answers_that_are_no_model_list(body: bytes):
    with pytest.raises(NotAModelList):
        upstream_models(body)


def test_odd_upstream_entries_are_made_readable_or_left_out():
    body = {
        "data": [
            {"id": 5},
            "x",
            {"id": "a", "created": 2**62, "owned_by": 3, "extra": [[[]]]},
            {"id": "b", "created": True},
        ]
    }
    assert upstream_models(orjson.dumps(body)) == [
        {"id": "a", "object": "model", "created": 253402300799, "owned_by": ""},
        {"id": "b", "object": "model", "created": 0, "owned_by": ""},
    ]


def page(models: list[dict], **cursor) -> tuple[list[str], bool, str | None, str | None]:
    answer = anthropic_list(models, **cursor)
    return (
        [model["id"] for model in answer["data"]],
        answer["has_more"],
        answer["first_id"],
        answer["last_id"],
    )


def test_anthropic_pages_follow_after_id_and_before_id():
    models = [{"id": f"m{n}", "created": 1700000000} for n in range(5)]
    assert page(models, limit=2) == (["m0", "m1"], True, "m0", "m1")
    assert page(models, limit=2, after_id="m1") == (["m2", "m3"], True, "m2", "m3")
    assert page(models, limit=2, after_id="m3") == (["m4"], False, "m4", "m4")
    assert page(models, limit=2, before_id="m4") == (["m2", "m3"], True, "m2", "m3")
    assert page(models, limit=2, before_id="m1") == (["m0"], False, "m0", "m0")
    assert page(models, after_id="gone") == ([], False, None, None)
    [first] = anthropic_list(models, limit=1)["data"]
    assert first == {
        "type": "model",
        "id": "m0",
        "display_name": "m0",
        "created_at": "2023-11-14T22:13:20Z",
    }


def test_embedding_records_keep_the_shape_without_the_vectors():
    packed = base64.b64encode(struct.pack("<3f", 1.0, 2.0, 3.0)).decode()
    answer = {
        "object": "list",
        "data": [
            {"index": 0, "embedding": [0.5] * 1536},
            {"index": 1, "embedding": packed},
            {"index": 2},
            "odd",
        ],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    assert embeddings.logged_answer(answer) == {
        "object": "list",
        "data": [
            {"index": 0, "embedding": 1536},
            {"index": 1, "embedding": 3},
            {"index": 2},
            "odd",
        ],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    assert embeddings.logged_answer({"error": "x"}) == {"error": "x"}


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"input": "x" * 35}, 10),
        ({"input": ["x" * 7, "y" * 7]}, 4),
        ({"input": [1, 2, 3]}, 3),
        ({"input": [[1, 2], [3]]}, 3),
        ({}, 1),
    ],
)
def test_embedding_estimates_count_the_input_alone(body: dict, tokens: int):
    assert embeddings.estimate(body, b"vectors") == (tokens, 0)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_request"),
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "request_too_large"),
        (415, "invalid_request"),
        (422, "invalid_request"),
        (503, "unavailable"),
        (500, "internal_error"),
    ],
)
def test_errors_without_a_class_code_get_their_statuses(status: int, code: str):
    assert ProxyError.with_status(status, "x").code == code
    assert UpstreamFailure("x", status=504).code == "upstream_error"


def test_every_protocol_has_a_request_id_header():
    assert set(REQUEST_ID_HEADERS) == set(typing.get_args(Protocol))
