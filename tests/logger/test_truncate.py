"""Truncation rules of events.jsonl records, one test per rule."""

from __future__ import annotations

import orjson
import pytest

from shared import truncate
from shared.truncate import fit, truncate_record

BUDGET = 2000


def size(value) -> int:
    return len(orjson.dumps(value))


def record(prompt, response) -> dict:
    return {"request_id": "req_1", "prompt": prompt, "response": response}


def cut(prompt=None, response=None, **options) -> dict:
    settings = {"max_field_size": BUDGET, "max_chunks": 50, "full_trace": False, **options}
    return truncate_record(record(prompt, response), **settings)


def test_small_values_are_untouched():
    prompt = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert cut(prompt)["prompt"] == prompt


def test_long_string_is_cut_with_marker_giving_original_length_and_structure_kept():
    prompt = {"model": "m", "messages": [{"role": "user", "content": "x" * 10_000}]}
    out = cut(prompt)["prompt"]
    content = out["messages"][0]["content"]
    assert content.startswith("xxxx") and content.endswith("…[truncated, 10000 chars]")
    assert out["model"] == "m" and out["messages"][0]["role"] == "user"
    assert size(out) <= BUDGET


def test_several_long_strings_share_the_budget_and_short_ones_survive():
    prompt = {
        "system": "s" * 5000,
        "messages": [{"role": "user", "content": "u" * 8000}, {"role": "user", "content": "short"}],
    }
    out = cut(prompt)["prompt"]
    assert size(out) <= BUDGET
    assert out["messages"][1]["content"] == "short"
    assert "truncated, 5000 chars" in out["system"]
    assert "truncated, 8000 chars" in out["messages"][0]["content"]


def test_many_messages_keep_their_ends_with_an_omission_marker():
    prompt = {"messages": [{"role": "user", "content": f"message {i} " * 20} for i in range(300)]}
    out = cut(prompt)["prompt"]
    assert size(out) <= BUDGET
    messages = out["messages"]
    assert messages[2] == "…[296 items omitted]"
    assert messages[0]["content"].startswith("message 0 ")
    assert messages[-1]["content"].startswith("message 299 ")


def test_response_is_cut_like_the_prompt():
    response = {"choices": [{"message": {"content": "y" * 50_000}}]}
    out = cut(response=response)["response"]
    assert (
        size(out) <= BUDGET and "truncated, 50000 chars" in out["choices"][0]["message"]["content"]
    )


def test_stream_keeps_at_most_max_chunks_plus_the_assembled_result():
    chunks = [{"choices": [{"delta": {"content": "t"}}]} for _ in range(200)]
    response = {"chunk_count": 200, "assembled": {"content": "t" * 200}, "chunks": chunks}
    out = cut(response=response, max_chunks=5, max_field_size=10_000)["response"]
    assert out["assembled"] == {"content": "t" * 200}
    assert out["chunks"] == chunks[:5] and out["chunk_count"] == 200


def test_stream_response_fits_the_field_size_too():
    chunks = [{"choices": [{"delta": {"content": "word " * 30}}]} for _ in range(50)]
    response = {"chunk_count": 50, "assembled": {"content": "word " * 1500}, "chunks": chunks}
    out = cut(response=response)["response"]
    assert size(out) <= BUDGET * 1.1
    assert "truncated" in out["assembled"]["content"]


def test_full_trace_logging_keeps_everything():
    prompt = {"messages": [{"role": "user", "content": "x" * 100_000}]}
    chunks = [{"n": i} for i in range(500)]
    response = {"chunk_count": 500, "assembled": {}, "chunks": chunks}
    out = cut(prompt, response, full_trace=True)
    assert out["prompt"] == prompt and out["response"]["chunks"] == chunks


def test_non_ascii_text_and_plain_strings():
    text = "日本語のテキスト" * 2000
    out = fit(text, BUDGET)
    assert size(out) <= BUDGET and out.startswith("日本語") and "truncated" in out


def test_a_list_of_short_items_keeps_its_ends_whole():
    chunks = [{"choices": [{"delta": {"content": f"word {i} "}}]} for i in range(50)]
    assert fit(chunks, 500) == [*chunks[:2], "…[46 items omitted]", *chunks[-2:]]


@pytest.mark.parametrize("count", [1_000, 1_000_000])
@pytest.mark.parametrize("item", [{}, [], "x", 0], ids=["objects", "lists", "strings", "numbers"])
def test_the_work_follows_what_is_kept_not_the_size(monkeypatch, count, item):
    """A list of a million small items is measured as often as one of a thousand: the walk
    goes only into what is kept (what the 11 million empty objects of a 31 MiB body need)."""
    calls = []
    measure = truncate.size_of
    monkeypatch.setattr(truncate, "size_of", lambda value: calls.append(1) or measure(value))
    out = fit([item] * count, BUDGET)
    assert out[2] == f"…[{count - 4} items omitted]" and size(out) <= BUDGET
    assert len(calls) <= 12
