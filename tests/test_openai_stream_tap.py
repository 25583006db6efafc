"""The passthrough tap: bytes forwarded unchanged but for the usage chunk the proxy added."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy_service.convert.openai.stream_tap import OpenAIStreamTap
from tests.fake_upstream import USAGE, default_chunks


def stream_bytes(include_usage: bool = True) -> bytes:
    chunks = default_chunks("m", include_usage)
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def run(tap: OpenAIStreamTap, data: bytes, cuts: list[int]) -> bytes:
    out, last = [], 0
    for cut in sorted(set(cuts)):
        out.append(tap.feed(data[last:cut]))
        last = cut
    out.append(tap.feed(data[last:]))
    out.append(tap.flush())
    return b"".join(out)


def test_usage_chunk_dropped_when_client_did_not_ask_and_captured():
    tap = OpenAIStreamTap(drop_usage_chunk=True)
    out = run(tap, stream_bytes(), [])
    assert out == stream_bytes(include_usage=False)
    assert tap.usage == {**USAGE, "cached_tokens": 0}
    assert tap.upstream_id == "chatcmpl-fake-2" and tap.model == "m"


def test_bytes_unchanged_when_client_asked_for_usage():
    tap = OpenAIStreamTap(drop_usage_chunk=False)
    assert run(tap, stream_bytes(), []) == stream_bytes()
    assert tap.usage is not None


@given(st.lists(st.integers(min_value=0, max_value=len(stream_bytes())), max_size=30))
def test_any_split_gives_the_same_bytes_and_usage(cuts):
    tap = OpenAIStreamTap(drop_usage_chunk=True)
    assert run(tap, stream_bytes(), cuts) == stream_bytes(include_usage=False)
    assert tap.usage == {**USAGE, "cached_tokens": 0}


def test_crlf_events_and_unterminated_tail():
    data = stream_bytes().replace(b"\n", b"\r\n").removesuffix(b"\r\n\r\n")
    tap = OpenAIStreamTap(drop_usage_chunk=True)
    out = run(tap, data, [7, 100])
    assert out == stream_bytes(include_usage=False)


def test_error_chunk_is_recorded():
    tap = OpenAIStreamTap(drop_usage_chunk=True)
    tap.feed(b'data: {"error": {"message": "boom"}}\n\n')
    assert tap.error == "boom"
