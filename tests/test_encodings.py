"""Compressed request bodies: every coding decoded, bounded, and refused clearly when bad. Pure."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from proxy_service.encodings import UnsupportedEncoding, decoded_body
from proxy_service.errors import InvalidRequest, RequestTooLarge

ENCODERS = {
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
}
LIMIT = 1 << 20


@pytest.mark.parametrize("coding", sorted(ENCODERS))
@pytest.mark.parametrize("size", [0, 1, 70_000, LIMIT])
def test_each_coding_round_trips_up_to_the_limit(coding: str, size: int):
    data = (b'{"input": "' + os.urandom(size // 4).hex().encode())[:size]
    assert decoded_body(ENCODERS[coding](data), coding.upper(), LIMIT) == data


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_a_bomb_stops_at_the_limit(coding: str):
    bomb = ENCODERS[coding](b"\0" * (LIMIT + 1))
    assert len(bomb) < 20_000
    with pytest.raises(RequestTooLarge):
        decoded_body(bomb, coding, LIMIT)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_data_is_a_400(coding: str, damage: str):
    good = ENCODERS[coding](b'{"model": "m", "input": "hello"}' * 50)
    bad = b"not compressed at all" if damage == "garbage" else good[: len(good) // 2]
    with pytest.raises(InvalidRequest, match=coding):
        decoded_body(bad, coding, LIMIT)


@pytest.mark.parametrize("encoding", ["compress", "lzma", "zstd, snappy"])
def test_an_unknown_coding_is_a_415(encoding: str):
    with pytest.raises(UnsupportedEncoding) as raised:
        decoded_body(b"x", encoding, LIMIT)
    assert raised.value.status == 415


def test_stacked_codings_are_undone_last_first_and_identity_is_nothing():
    data = b'{"a": 1}'
    stacked = brotli.compress(gzip.compress(data))
    assert decoded_body(stacked, "gzip, br", LIMIT) == data
    assert decoded_body(data, "identity", LIMIT) == decoded_body(data, None, LIMIT) == data


@given(st.binary(max_size=200), st.sampled_from(sorted(ENCODERS)))
def test_any_bytes_give_data_or_a_clear_error(data: bytes, coding: str):
    with contextlib.suppress(InvalidRequest, RequestTooLarge):
        decoded_body(data, coding, LIMIT)
