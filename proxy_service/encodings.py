"""Request bodies sent compressed (`content-encoding`), decoded before anything reads them.

Codex CLI compresses its `/v1/responses` bodies with zstd; other clients use gzip, deflate or
br. Every decoder is bounded: it stops at MAX_REQUEST_BYTES of output, so a small bomb cannot
grow into gigabytes. Corrupt data is a 400, an encoding we do not know a 415, output past the
limit a 413, each in the route's protocol shape.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import brotli
import zstandard

from proxy_service.errors import InvalidRequest, ProxyError, RequestTooLarge

ZSTD_SLICE_BYTES = 256


class UnsupportedEncoding(ProxyError):
    status = 415
    code = "unsupported_content_encoding"


def decoded_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """`raw` with every listed content coding undone, last applied first."""
    if not encoding:
        return raw
    for coding in reversed([part.strip().lower() for part in encoding.split(",")]):
        if coding in ("", "identity"):
            continue
        decode = DECODERS.get(coding)
        if decode is None:
            raise UnsupportedEncoding(
                f"content-encoding {coding!r} is not supported (zstd, gzip, deflate, br)"
            )
        try:
            raw = decode(raw, limit)
        except ProxyError:
            raise
        except Exception as error:  # each library has its own error types for corrupt data
            raise InvalidRequest(f"request body is not valid {coding} data ({error})") from None
    return raw


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"decoded request body over {limit} bytes")


def _zstd(raw: bytes, limit: int) -> bytes:
    """Fed in small slices, so no one slice can expand past a few MiB before the size check
    (zstd's decompressor has no output bound of its own); frames one after another are fine."""
    parts, size = [], 0
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    view = memoryview(raw)
    while view:
        parts.append(decompressor.decompress(view[:ZSTD_SLICE_BYTES]))
        view = view[ZSTD_SLICE_BYTES:]
        size += len(parts[-1])
        if size > limit:
            raise _too_large(limit)
        if decompressor.eof and (view or decompressor.unused_data):
            rest = bytes(decompressor.unused_data) + bytes(view)
            decompressor = zstandard.ZstdDecompressor().decompressobj()
            view = memoryview(rest)
    if not decompressor.eof:
        raise ValueError("truncated data")
    return b"".join(parts)


def _zlib(wbits: int) -> Callable[[bytes, int], bytes]:
    def decode(raw: bytes, limit: int) -> bytes:
        decompressor = zlib.decompressobj(wbits)
        out = decompressor.decompress(raw, limit + 1)
        if len(out) > limit:
            raise _too_large(limit)
        if not decompressor.eof:
            raise ValueError("truncated data")
        return out

    return decode


def _brotli(raw: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out = decompressor.process(raw, output_buffer_limit=limit + 1)
    if len(out) > limit:
        raise _too_large(limit)
    if not decompressor.is_finished():
        raise ValueError("truncated data")
    return out


DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "zstd": _zstd,
    "gzip": _zlib(16 + zlib.MAX_WBITS),
    "x-gzip": _zlib(16 + zlib.MAX_WBITS),
    "deflate": _zlib(zlib.MAX_WBITS),
    "br": _brotli,
}
