"""Byte accounting of usage events, without a server: encoding in parts, compaction, the bound."""

from __future__ import annotations

import orjson
import pytest

from proxy_service.event_bounds import (
    ENTRY_OVERHEAD_BYTES,
    HEAVY_FIELDS,
    BoundedEvents,
    EncodedEvent,
    encode_event,
)

USAGE = {"prompt_tokens": 20_000, "completion_tokens": 300, "total_tokens": 20_300}


def event(index: int, prompt_chars: int = 0, **extra) -> dict:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * prompt_chars}]}
    return {
        "request_id": f"r{index}",
        "protocol": "anthropic_messages",
        "model": "claude-sonnet",
        "status_code": 200,
        "error": None,
        "prompt": body if prompt_chars else None,
        "response": None,
        "usage": USAGE,
        **extra,
    }


SHAPES = [
    event(0),
    event(1, 100),
    event(2, 80_000, response={"choices": [{"message": {"content": "y" * 5000}}]}),
    event(3, 300_000, response_stream="data: {}\n\n" * 1000),
    event(4, 10, prompt=orjson.Fragment(b'{"raw":[1,2]}')),
    {"request_id": "only"},
]


@pytest.mark.parametrize("shape", SHAPES)
def test_an_encoded_event_is_the_event_with_request_id_first(shape: dict):
    """Null prompt or response fields are left out: the logger fills in every README field."""
    encoded = encode_event(shape)
    data = encoded.data()
    assert data.startswith(b'{"request_id":')
    present = {k: v for k, v in shape.items() if not (k in HEAVY_FIELDS and v is None)}
    assert orjson.loads(data) == orjson.loads(orjson.dumps(present))
    assert 0 <= len(data) - (encoded.size - ENTRY_OVERHEAD_BYTES) < 64


@pytest.mark.parametrize("shape", SHAPES[2:4])
def test_a_compacted_event_keeps_every_small_field_and_says_what_it_left_out(shape: dict):
    encoded = encode_event(shape)
    full = orjson.loads(encoded.data())
    heavy = {name: len(orjson.dumps(shape[name])) for name in encoded.heavy}
    assert encoded.compact("a reason")
    compact = orjson.loads(encoded.data())
    assert compact.pop("compacted") is True
    assert compact.pop("prompt") == {"omitted": f"{heavy['prompt']} bytes: a reason"}
    response_bytes = heavy.get("response", 0) + heavy.get("response_stream", 0)
    if response_bytes:
        assert compact.pop("response") == {"omitted": f"{response_bytes} bytes: a reason"}
    kept = {k: v for k, v in full.items() if k not in ("prompt", "response", "response_stream")}
    assert compact == kept
    assert compact["usage"] == USAGE
    assert encoded.size < 1000 < sum(heavy.values())
    assert not encoded.compact("again")


def test_an_event_without_prompt_or_response_is_already_compact():
    encoded = encode_event(event(0))
    assert encoded.compacted and not encoded.compact("why")
    assert "compacted" not in orjson.loads(encoded.data())


def fill(bound: BoundedEvents, sizes: list[int]) -> list[EncodedEvent]:
    dropped = []
    for index, size in enumerate(sizes):
        dropped.extend(bound.append(encode_event(event(index, size))))
        assert bound.bytes <= bound.limit
        assert bound.bytes == sum(entry.size for entry in bound.entries)
    return dropped


@pytest.mark.parametrize("sizes", [[100_000] * 40, [50_000, 400_000, 200_000] * 12])
def test_past_the_bound_the_oldest_are_compacted_and_none_dropped(sizes: list[int]):
    bound = BoundedEvents(1 << 20, "full")
    assert fill(bound, sizes) == []
    flags = [entry.compacted for entry in bound.entries]
    assert any(flags) and not all(flags)
    first_full = flags.index(False)
    assert all(flags[:first_full]) and not any(flags[first_full:]), "oldest compacted first"
    assert bound.compacted == first_full and bound.dropped == 0
    assert [entry.request_id for entry in bound.entries] == [f"r{i}" for i in range(len(sizes))]


def test_only_when_all_are_compacted_is_the_oldest_dropped():
    bound = BoundedEvents(1 << 16, "full")
    dropped = fill(bound, [20_000] * 300)
    assert all(entry.compacted for entry in bound.entries)
    assert bound.dropped == len(dropped) > 0
    assert [entry.request_id for entry in dropped] == [f"r{i}" for i in range(len(dropped))]
    assert len(bound) + len(dropped) == 300
    assert bound.entries[-1].request_id == "r299"


def test_an_event_larger_than_the_bound_is_compacted_alone():
    bound = BoundedEvents(1 << 20, "full")
    fill(bound, [100_000] * 5)
    bound.append(encode_event(event(5, 5_000_000)))
    assert [entry.compacted for entry in bound.entries] == [False] * 5 + [True]


def test_prepended_events_count_and_are_the_first_compacted():
    bound = BoundedEvents(1 << 20, "full")
    fill(bound, [100_000] * 5)
    older = [encode_event(event(100 + i, 100_000)) for i in range(6)]
    assert bound.prepend(older) == []
    assert [entry.request_id for entry in bound.entries][:6] == [f"r{100 + i}" for i in range(6)]
    assert bound.bytes <= bound.limit
    assert bound.entries[0].compacted and not bound.entries[-1].compacted


@pytest.mark.parametrize(
    ("sizes", "count", "max_bytes", "taken"),
    [
        ([1000] * 10, 4, 1 << 20, 4),
        ([100_000] * 10, 100, 350_000, 3),
        ([2_000_000, 10], 100, 350_000, 1),
        ([], 10, 1000, 0),
    ],
)
def test_take_is_bounded_by_count_and_bytes(sizes, count, max_bytes, taken):
    bound = BoundedEvents(1 << 30, "full")
    fill(bound, sizes)
    before = bound.bytes
    batch = bound.take(count, max_bytes)
    assert len(batch) == taken
    assert bound.bytes == before - sum(entry.size for entry in batch)
