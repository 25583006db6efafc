"""Every line of events.jsonl is at most LOG_MAX_RECORD_BYTES when truncation is on, whatever
the event's shape, and what a huge or pathological event costs to record is bounded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_service import records
from shared.settings import Settings
from tests.poison import proxy_event
from tests.processes import ADMIN_TOKEN
from tests.usage_data import PRICES

MAX_BYTES = 4096
BOUNDED = Settings(_env_file=None, admin_token=ADMIN_TOKEN, log_max_record_bytes=MAX_BYTES)
FULL_TRACE = Settings(_env_file=None, admin_token=ADMIN_TOKEN, full_trace_logging=True)
METADATA = ("protocol", "client_app", "user_id", "key_id", "upstream_id", "model", "error")


def line_of(event: dict[str, Any], config: Settings = BOUNDED) -> tuple[str, bytes]:
    return records.record_line("3-0", {b"e": orjson.dumps(event)}, config, PRICES)


def record_of(event: dict[str, Any], config: Settings = BOUNDED) -> dict[str, Any]:
    _, line = line_of(event, config)
    assert len(line) - 1 <= config.log_max_record_bytes or config.full_trace_logging
    return orjson.loads(line)


def nested(depth: int, key: str = "k") -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {key: value}
    return value


SHAPES = {
    "long object keys": {"k" * 100_000: 1, "x" * 70_000: {"y" * 90_000: "z"}},
    "many keys": {f"key{i}": i for i in range(50_000)},
    "deep nesting": nested(200, key="level" * 10),
    "huge list of small items": [0] * 500_000,
    "lists of lists": [[i] * 1000 for i in range(300)],
    "long string": "s" * 3_000_000,
    "non-ASCII and escapes": '日本\x00"\\' * 200_000,
}


@pytest.mark.parametrize("field", ["prompt", "response", *METADATA, "usage", "extra"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_no_field_of_any_shape_makes_a_line_too_long(field, shape):
    record = record_of(proxy_event("req_shape", **{field: shape}))
    assert record["request_id"] == "req_shape"
    assert field == "key_id" or record["key_id"] == "key_poison"


def test_thousands_of_extra_fields_are_counted_not_kept():
    extras = {f"extra_{i}": "v" * 100 for i in range(20_000)}
    record = record_of(proxy_event("req_extras", **extras))
    assert record["…[omitted]"] == f"{20_000 - records.MAX_EXTRA_FIELDS} fields"
    assert record["usage"] == proxy_event("x")["usage"]


def test_a_long_request_id_is_cut_alike_on_every_delivery_and_distinct_from_others():
    first, _ = line_of(proxy_event("r" * 100_000 + "1"))
    again, _ = line_of(proxy_event("r" * 100_000 + "1"))
    other, _ = line_of(proxy_event("r" * 100_000 + "2"))
    assert first == again != other and len(first) <= records.MAX_REQUEST_ID_CHARS


def test_full_trace_logging_keeps_every_shape_whole():
    event = proxy_event("req_full", prompt=SHAPES["many keys"], model="m" * 100_000)
    record = record_of(event, FULL_TRACE)
    assert record["prompt"] == event["prompt"] and record["model"] == event["model"]


def test_eleven_million_empty_objects_are_recorded_without_being_parsed(monkeypatch):
    """The 31 MiB body of `[{}, {}, ...]`: its line is bounded, keeps what the rollup counts,
    and nothing parses the body (which would build 11 million dicts, ~1 GB, for seconds)."""
    body = b"[" + b"{}," * 11_000_000 + b"{}]"
    entry = orjson.dumps(proxy_event("req_objects", prompt=orjson.Fragment(body)))
    parsed: list[int] = []
    loads = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda data: parsed.append(len(data)) or loads(data))
    request_id, line = records.record_line("4-0", {b"e": entry}, BOUNDED, PRICES)
    assert request_id == "req_objects" and len(line) <= MAX_BYTES
    assert max(parsed) < records.PARSE_CHECK_BYTES
    record = loads(line)
    assert "JSON values" in record["unprocessed"] and record["usage"] == proxy_event("x")["usage"]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3000),
    lambda children: (
        st.lists(children, max_size=60)
        | st.dictionaries(st.text(max_size=300), children, max_size=30)
    ),
    max_leaves=400,
)
SSE = st.lists(JSON_VALUES, max_size=30).map(
    lambda chunks: "".join(f"data: {orjson.dumps(chunk).decode()}\n\n" for chunk in chunks)
)


@settings(max_examples=120, deadline=None)
@given(
    prompt=JSON_VALUES,
    response=JSON_VALUES,
    stream=st.one_of(st.none(), SSE),
    metadata=st.dictionaries(st.sampled_from([*METADATA, "usage", "extra"]), JSON_VALUES),
    protocol=st.sampled_from(["openai_chat", "anthropic_messages", "openai_responses"]),
)
def test_no_line_exceeds_the_bound_whatever_the_json(prompt, response, stream, metadata, protocol):
    event = proxy_event("req_any", prompt=prompt, response=response, **metadata)
    event["protocol"] = metadata.get("protocol", protocol)
    if stream is not None:
        event["response_stream"] = stream
    request_id, line = line_of(event)
    assert request_id == "req_any" and len(line) - 1 <= MAX_BYTES
    orjson.loads(line)
