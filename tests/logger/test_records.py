"""From a stream entry to its line: every entry gives exactly one line, whatever is in it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_service import records
from logger_service.tallies import tally_block
from shared.events import EVENT_FIELDS
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

SETTINGS = Settings(_env_file=None, admin_token=ADMIN_TOKEN)


def test_an_event_that_fails_processing_is_written_unprocessed(monkeypatch):
    def broken(event: dict) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(records, "build_record", broken)
    event = {"request_id": "r1", "user_id": "u", "response_stream": "data: x\n\n"}
    request_id, line = records.record_line("1-0", {b"e": orjson.dumps(event)}, SETTINGS)
    record = orjson.loads(line)
    assert request_id == "r1" and record["user_id"] == "u"
    assert record["unprocessed"] == "RuntimeError: a bug"
    assert orjson.loads(record["raw"]) == event


def test_a_malformed_entry_is_written_with_its_raw_text():
    request_id, line = records.record_line("7-1", {b"e": b"not json"}, SETTINGS)
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
    request_id, line = records.record_line("5-0", {b"e": poison.entry}, config)
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
    _, line = records.record_line("5-0", {b"e": poison.entry}, SETTINGS)
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
        "9-1", {b"e": entry}, FULL_TRACE if full_trace else SETTINGS
    )
    record = orjson.loads(line)
    assert line.count(b"\n") == 1 and record["request_id"] == returned
    if isinstance(request_id, str):
        assert returned == request_id
    else:
        assert returned == "malformed-9-1"
