"""RESPONSES_MODE=passthrough's pure pieces: the tap that reads usage on the side of bytes it
must not change, the usage renaming and the estimates for replies without usage."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.convert.responses.passthrough import (
    ResponsesStreamTap,
    error_event,
    estimate,
    usage_of,
)
from tests.fake_upstream import (
    RESPONSES_RECORDED_USAGE,
    named_sse,
    response_object,
    responses_events,
)


def wire(events: list[dict], crlf: bool = False) -> bytes:
    data = named_sse(events)
    return data.replace(b"\n", b"\r\n") if crlf else data


def tapped(data: bytes, cuts: list[int]) -> tuple[bytes, ResponsesStreamTap]:
    tap = ResponsesStreamTap()
    pieces, start = [], 0
    for cut in [*sorted(cuts), len(data)]:
        pieces.append(tap.feed(data[start:cut]))
        start = cut
    pieces.append(tap.flush())
    return b"".join(pieces), tap


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_tap_changes_no_byte_and_reads_the_usage_wherever_chunks_split(data):
    stream = wire(responses_events("m"))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    out, tap = tapped(stream, cuts)
    assert out == stream
    assert (
        tap.usage == RESPONSES_RECORDED_USAGE
        and tap.upstream_id == "resp_fake_1"
        and tap.model == "m"
    )
    assert tap.error is None


def test_crlf_streams_are_read_too_and_relayed_with_lf_line_ends():
    out, tap = tapped(wire(responses_events("m"), crlf=True), [7, 300])
    assert tap.usage == RESPONSES_RECORDED_USAGE and out == wire(responses_events("m"))


@pytest.mark.parametrize("terminal", ["response.incomplete", "response.failed"])
def test_usage_comes_from_any_terminal_event(terminal):
    events = responses_events("m")
    final = {**events[-1]["response"], "status": terminal.split(".")[1]}
    if terminal == "response.failed":
        final["error"] = {"code": "server_error", "message": "upstream broke"}
    events[-1] = {**events[-1], "type": terminal, "response": final}
    _, tap = tapped(wire(events), [])
    assert tap.usage == RESPONSES_RECORDED_USAGE
    assert tap.error == ("upstream broke" if terminal == "response.failed" else None)


def test_a_stream_without_a_terminal_event_has_no_usage():
    _, tap = tapped(wire(responses_events("m")[:-1]), [50])
    assert tap.usage is None and tap.upstream_id == "resp_fake_1"


def test_an_error_event_is_noted():
    events = [*responses_events("m")[:3], {"type": "error", "code": "x", "message": "boom"}]
    _, tap = tapped(wire(events), [])
    assert tap.error == "boom"


@pytest.mark.parametrize(
    ("usage", "recorded"),
    [
        (None, None),
        ("12", None),
        ({}, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}),
        (
            {"input_tokens": 4, "output_tokens": 2},
            {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6, "cached_tokens": 0},
        ),
        (
            {
                "input_tokens": 4.0,
                "output_tokens": -3,
                "input_tokens_details": {"cached_tokens": 1},
            },
            {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4, "cached_tokens": 1},
        ),
        (
            {"input_tokens": 2**60, "output_tokens": True, "input_tokens_details": "x"},
            {
                "prompt_tokens": 2**53,
                "completion_tokens": 0,
                "total_tokens": 2**53,
                "cached_tokens": 0,
            },
        ),
    ],
)
def test_usage_of_every_shape(usage, recorded):
    assert usage_of(usage) == recorded


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "Hello there, how are you today?"},
        {"model": "m", "input": [{"role": "user", "content": "Hello there"}], "tools": []},
        {"model": "m", "input": [{"type": "unknown-item"}]},
        {"input": "no model: the bridge refuses it, the estimate does not"},
    ],
)
def test_estimates_are_never_zero(body):
    prompt, output = estimate(body, wire(responses_events("m")))
    assert prompt >= 1 and output >= 2


def test_the_output_estimate_of_a_buffered_answer_counts_its_text():
    _, output = estimate({"model": "m", "input": "x"}, orjson.dumps(response_object("m")))
    assert output >= 2
    assert estimate({"model": "m", "input": "x"}, b"not json, no events")[1] == 0


def test_the_error_event_is_a_responses_error_event():
    frame = error_event(502, "upstream broke mid-stream", None)
    assert frame.startswith(b"event: error\ndata: ") and frame.endswith(b"\n\n")
    event = orjson.loads(frame.split(b"data: ", 1)[1])
    assert event == {
        "type": "error",
        "code": "server_error",
        "message": "upstream broke mid-stream",
        "param": None,
    }
