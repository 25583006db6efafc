"""Every reader of upstream SSE (the passthrough tap, the decoder the translators read with)
gives the same result however the bytes are split, and bounds an event in bytes."""

from __future__ import annotations

import gzip
import zlib

import brotli
import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.convert.anthropic.request import ConversionOptions, anthropic_to_openai_request
from proxy_service.convert.anthropic.stream import AnthropicStreamTranslator
from proxy_service.convert.openai.stream_tap import OpenAIStreamTap
from proxy_service.reply_encodings import PIECE_BYTES, reply_decoder
from shared.sse import EventTooLarge, SSEDecoder
from tests.fake_upstream import chunk

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
EVENTS = [
    chunk("m", {"role": "assistant", "content": ""}),
    chunk("m", {"content": "héllo " * 40}),
    chunk("m", {"content": "wörld"}),
    chunk("m", {}, "stop"),
    {**chunk("m", {}), "choices": [], "usage": USAGE},
]


def stream_bytes(line_end: bytes) -> bytes:
    """The events as an upstream writes them, with a comment, a multi-line event and [DONE]."""
    frames = [b": keep-alive" + line_end * 2]
    frames += [b"data: " + orjson.dumps(event) + line_end * 2 for event in EVENTS]
    frames.append(b"event: note" + line_end + b"data: a" + line_end + b"data: b" + line_end * 2)
    frames.append(b"data: [DONE]" + line_end * 2)
    return b"".join(frames)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def tap_output(parts: list[bytes], drop_usage: bool) -> tuple[bytes, dict | None]:
    tap = OpenAIStreamTap(drop_usage_chunk=drop_usage)
    out = b"".join(tap.feed(part) for part in parts) + tap.flush()
    return out, tap.usage


cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40)


@settings(max_examples=150, deadline=None)
@given(cuts=cuts, line_end=st.sampled_from([b"\n", b"\r\n"]), drop_usage=st.booleans())
def test_the_tap_reads_events_split_anywhere_as_whole(cuts, line_end, drop_usage):
    data = stream_bytes(line_end)
    whole = tap_output([data], drop_usage)
    assert tap_output(split(data, cuts), drop_usage) == whole
    assert whole[1] is not None and whole[1]["total_tokens"] == 5
    assert (b'"usage"' in whole[0]) is not drop_usage
    assert whole[0].count(b"\n\n") == len(EVENTS) + 3 - drop_usage


@settings(max_examples=150, deadline=None)
@given(cuts=cuts, line_end=st.sampled_from([b"\n", b"\r\n"]))
def test_the_decoder_reads_events_split_anywhere_as_whole(cuts, line_end):
    data = stream_bytes(line_end)
    decoder = SSEDecoder(max_event_bytes=1 << 20)
    events = [event for part in split(data, cuts) for event in decoder.feed(part)]
    assert events == SSEDecoder().feed(data)
    assert [event.data for event in events][-2:] == [b"a\nb", b"[DONE]"]
    assert len(events) == len(EVENTS) + 2


LIMIT = 64 << 10


@pytest.mark.parametrize("piece", [1, 1000, 16 << 10, LIMIT + 1])
def test_an_event_past_the_bound_is_refused_by_the_tap(piece):
    tap = OpenAIStreamTap(drop_usage_chunk=False)
    tap.limit_event_bytes(LIMIT)
    assert tap.feed(b"data: " + orjson.dumps(EVENTS[0]) + b"\n\n")  # whole events pass
    fed = 0
    with pytest.raises(EventTooLarge):
        while fed <= 2 * LIMIT + piece:
            tap.feed(b"x" * piece)
            fed += piece
    assert LIMIT - piece < fed <= LIMIT + piece


def test_an_event_just_under_the_bound_passes_the_tap():
    tap = OpenAIStreamTap(drop_usage_chunk=False)
    tap.limit_event_bytes(LIMIT)
    event = b"data: " + b"x" * (LIMIT - 8) + b"\n\n"
    assert b"".join(tap.feed(event[i : i + 1000]) for i in range(0, len(event), 1000)) == event


@pytest.mark.parametrize(
    "shape",
    [lambda n: b"data: " + b"x" * n, lambda n: b"data: x\n" * (n // 8)],
    ids=["one-line", "many-lines"],
)
def test_an_event_past_the_bound_is_refused_by_the_decoder(shape):
    decoder = SSEDecoder(max_event_bytes=LIMIT)
    data = shape(2 * LIMIT)
    with pytest.raises(EventTooLarge):
        for start in range(0, len(data), 4096):
            decoder.feed(data[start : start + 4096])
    assert start < LIMIT + 4096


def test_the_translators_bound_their_upstream_events():
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    converted = anthropic_to_openai_request(body, ConversionOptions())
    translator = AnthropicStreamTranslator(converted, "msg_1")
    translator.limit_event_bytes(LIMIT)
    assert translator.feed(b"data: " + orjson.dumps(EVENTS[0]) + b"\n\n")
    with pytest.raises(EventTooLarge):
        for _ in range(3):
            translator.feed(b"data: " + b"x" * LIMIT)


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda raw: brotli.compress(raw, quality=1),
    "zstd": lambda raw: zstandard.ZstdCompressor().compress(raw),
}


@pytest.mark.parametrize("coding", ENCODERS)
def test_a_decoded_reply_comes_in_bounded_pieces_however_it_is_split(coding):
    """A small bomb (64 MiB of zeros) decodes in pieces of about PIECE_BYTES (zstd: at most
    1 MiB, from one small slice of input), not in one 64 MiB piece."""
    data = b"\0" * (64 << 20)
    encoded = ENCODERS[coding](data)
    decoder = reply_decoder(coding)
    assert decoder is not None
    total, largest = 0, 0
    for start in range(0, len(encoded), 16 << 10):
        for piece in decoder.decode(encoded[start : start + (16 << 10)]):
            total += len(piece)
            largest = max(largest, len(piece))
    decoder.finish()
    assert total == len(data)
    assert largest <= max(2 * PIECE_BYTES, 1 << 20)
