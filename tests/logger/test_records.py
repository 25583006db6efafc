"""From a stream entry to its line: every entry gives exactly one line, whatever is in it."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_service import records
from logger_service.tallies import tally_block
from shared.events import EVENT_FIELDS
from shared.prices import cost_of
from shared.settings import Settings
from shared.truncate import MARKER_LENGTH
from tests.poison import (
    SPLICE,
    UNPROCESSABLE,
    USAGE_OVERFLOW,
    Poison,
    deep_in,
    deep_json,
    encode,
    proxy_event,
)
from tests.processes import ADMIN_TOKEN
from tests.usage_data import PRICES

SETTINGS = Settings(_env_file=None, admin_token=ADMIN_TOKEN)


def test_an_event_that_fails_processing_is_written_unprocessed(monkeypatch):
    def broken(event: dict) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(records, "build_record", broken)
    event = {"request_id": "r1", "user_id": "u", "response_stream": "data: x\n\n"}
    request_id, line = records.record_line("1-0", {b"e": orjson.dumps(event)}, SETTINGS, PRICES)
    record = orjson.loads(line)
    assert request_id == "r1" and record["user_id"] == "u"
    assert record["unprocessed"] == "RuntimeError: a bug"
    assert orjson.loads(record["raw"]) == event


def test_a_malformed_entry_is_written_with_its_raw_text():
    request_id, line = records.record_line("7-1", {b"e": b"not json"}, SETTINGS, PRICES)
    record = orjson.loads(line)
    assert request_id == "malformed-7-1" and record["raw"] == "not json"


FULL_TRACE = Settings(_env_file=None, admin_token=ADMIN_TOKEN, full_trace_logging=True)


def counted(line: bytes) -> dict:
    cells: dict = {}
    tally_block(line, cells)
    return {
        name: sum(t.counts[name] for t in cells.values()) for name in ("requests", "input_tokens")
    }


@pytest.mark.parametrize("poison", [*UNPROCESSABLE, USAGE_OVERFLOW], ids=lambda poison: poison.name)
@pytest.mark.parametrize("config", [SETTINGS, FULL_TRACE], ids=["truncated", "full trace"])
def test_any_entry_gives_one_line_with_its_own_request_id(poison: Poison, config: Settings):
    """Nested past orjson's limits anywhere, or odd values: a line that parses, with the event's
    request_id (so a re-delivery is deduped), the raw text when unprocessed (whole with full
    trace), and the usage the rollup counts."""
    request_id, line = records.record_line("5-0", {b"e": poison.entry}, config, PRICES)
    assert request_id == poison.request_id.format(entry_id="5-0")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    assert record["request_id"] == request_id
    assert ("unprocessed" in record) == poison.unprocessed
    if poison.unprocessed:
        raw = record["raw"]
        if config.full_trace_logging:
            assert raw == poison.entry.decode()
        else:
            assert len(raw) <= config.max_log_field_size + MARKER_LENGTH
    if poison.prompt_tokens is None:
        assert counted(line)["requests"] == 0
    else:
        assert counted(line) == {"requests": 1, "input_tokens": poison.prompt_tokens}


def test_the_fallback_keeps_the_top_level_fields_and_names_the_failure():
    poison = deep_in("prompt", 400)
    _, line = records.record_line("5-0", {b"e": poison.entry}, SETTINGS, PRICES)
    record = orjson.loads(line)
    expected = proxy_event(poison.request_id)
    for name in ("user_id", "key_id", "model", "started_at_ms", "status_code", "usage"):
        assert record[name] == expected[name]
    assert "prompt" not in record and "response" not in record
    assert record["unprocessed"] == "TypeError: Recursion limit reached"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


FIELDS = [*EVENT_FIELDS[1:], "response_stream", "extra"]
"""Every field but request_id, which each example sets."""


@settings(max_examples=150, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES),
    deep_field=st.sampled_from([None, *FIELDS]),
    depth=st.sampled_from([0, 253, 254, 255, 600, 1023, 1024, 1025, 1100]),
    request_id=st.one_of(st.text(max_size=20), st.integers(0, 2**63), st.none()),
    full_trace=st.booleans(),
)
def test_record_line_never_fails_whatever_the_event(
    fields, deep_field, depth, request_id, full_trace
):
    """Any JSON in any field, nested to any depth there: one line, with the event's own
    request_id whenever it has one."""
    event = {"request_id": request_id, **fields}
    if deep_field is not None:
        event[deep_field] = SPLICE
    entry = encode(event, deep_json(depth))
    returned, line = records.record_line(
        "9-1", {b"e": entry}, FULL_TRACE if full_trace else SETTINGS, PRICES
    )
    record = orjson.loads(line)
    assert line.count(b"\n") == 1 and record["request_id"] == returned
    if isinstance(request_id, str):
        assert returned == request_id
    else:
        assert returned == "malformed-9-1"


CACHED = {
    "prompt_tokens": 3000,
    "completion_tokens": 200,
    "total_tokens": 3200,
    "cached_tokens": 1000,
    "cache_write_tokens": 500,
    "cache_write_1h_tokens": 200,
    "reasoning_tokens": 50,
}
SPLIT = {
    "input": 1500,
    "cache_read": 1000,
    "cache_write_5m": 300,
    "cache_write_1h": 200,
    "output": 200,
    "reasoning": 50,
}
SONNET_USD = Decimal("0.0045") + Decimal("0.0003") + Decimal("0.001125") + Decimal("0.0012")
SONNET_USD += Decimal("0.003")  # 1500 x 3, 1000 x 0.3, 300 x 3.75, 200 x 6, 200 x 15 per M


def line_record(event: dict, config: Settings = SETTINGS, prices=PRICES) -> dict:
    _, line = records.record_line("2-0", {b"e": orjson.dumps(event)}, config, prices)
    return orjson.loads(line)


def test_a_record_carries_the_proxys_tokens_and_their_cost_worked_out_by_hand():
    record = line_record(proxy_event("r", model="claude-sonnet-4", usage=CACHED, tokens=SPLIT))
    assert record["tokens"] == SPLIT
    cost = record["cost"]
    assert (cost["status"], cost["priced_as"], cost["price_version"]) == (
        "priced",
        "claude-sonnet-4",
        PRICES.version,
    )
    assert Decimal(cost["usd"]) == SONNET_USD
    assert list(record)[list(record).index("usage") :][:3] == ["usage", "tokens", "cost"]


def test_an_older_proxys_event_is_split_from_its_usage_and_no_usage_is_no_tokens():
    old = line_record(proxy_event("r", model="claude-sonnet-4", usage=CACHED))
    assert old["tokens"] == SPLIT and Decimal(old["cost"]["usd"]) == SONNET_USD
    refused = line_record(proxy_event("r", model="claude-sonnet-4", usage=None, status_code=429))
    assert refused["tokens"] is None
    assert (refused["cost"]["status"], refused["cost"]["usd"]) == ("priced", "0")
    odd = line_record(proxy_event("r", tokens={"input": "x", "output": -3, "cache_read": 2.0}))
    assert odd["tokens"] == {**dict.fromkeys(SPLIT, 0), "cache_read": 2}


def test_free_and_unpriced_models_and_no_table_at_all():
    free = line_record(proxy_event("r", model="local-llm"))["cost"]
    assert (free["status"], free["usd"], free["priced_as"]) == ("free", "0", "local-*")
    unpriced = line_record(proxy_event("r", model="deepseek-chat"))["cost"]
    assert (unpriced["status"], unpriced["usd"]) == ("unpriced", None)
    no_model = line_record(proxy_event("r", model=["not", "a", "name"]))["cost"]
    assert no_model["status"] == "unpriced"
    no_table = line_record(proxy_event("r"), prices=None)["cost"]
    assert no_table == {"usd": None, "breakdown": None, "price_version": None, "status": "unpriced"}


@pytest.mark.parametrize("parse", [True, False], ids=["parsed around", "not parsed"])
def test_an_unprocessed_record_is_priced_from_the_fields_it_could_read(monkeypatch, parse):
    if not parse:
        monkeypatch.setattr(records, "_parsable", lambda fields: False)
    poison = deep_in("prompt", 1030)  # past what orjson reads: head and usage read around it
    event = orjson.loads(poison.entry.replace(deep_json(1030), b"1"))
    entry = poison.entry.replace(b'"model":"m"', b'"model":"claude-sonnet-4"')
    entry = entry.replace(orjson.dumps(event["usage"]), orjson.dumps(CACHED))
    _, line = records.record_line("5-0", {b"e": entry}, SETTINGS, PRICES)
    record = orjson.loads(line)
    assert "unprocessed" in record
    assert record["tokens"] == SPLIT and Decimal(record["cost"]["usd"]) == SONNET_USD


def test_a_bounded_line_keeps_tokens_and_cost_whole():
    """At the smallest LOG_MAX_RECORD_BYTES, with every category at its largest count, a tier
    and long metadata: the line is cut to its bound, but tokens and cost are kept as they are."""
    config = Settings(_env_file=None, admin_token=ADMIN_TOKEN, log_max_record_bytes=4096)
    huge = dict.fromkeys(SPLIT, 2**53)
    extras = {f"extra_{i}": "v" * 3000 for i in range(20)}
    event = proxy_event(
        "r", model="claude-sonnet-4", user_id="u" * 5000, prompt="p" * 50_000, tokens=huge
    )
    _, line = records.record_line("6-0", {b"e": orjson.dumps({**event, **extras})}, config, PRICES)
    record = orjson.loads(line)
    assert len(line) - 1 <= 4096 and record["user_id"] != event["user_id"]
    expected = cost_of(PRICES, "claude-sonnet-4", huge)
    assert record["tokens"] == huge and record["cost"] == expected
    assert expected["tier_above_input_tokens"] == 4000 and len(expected["breakdown"]) == 5
