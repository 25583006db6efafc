"""Upstream replies sent with a content coding although the proxy asked for identity.

Some upstreams (and the load balancers in front of them) compress anyway. Their bytes cannot go
to a client as they are (the proxy sends its own headers, without `content-encoding`), so they
are decoded as they arrive, in pieces of about PIECE_BYTES whatever the ratio, so a small bomb
cannot become one huge buffer. Data that is not valid in its coding, and a coding we do not
know, are the upstream's failure (502).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import brotli
import zstandard

from proxy_service.errors import UpstreamFailure

PIECE_BYTES = 256 << 10
ZSTD_SLICE_BYTES = 32
"""zstd's decompressor has no output bound: it is fed slices this small (a 128 KiB block takes
4 bytes, so at most 1 MiB comes out of one)."""


class ReplyDecoder:
    """One reply's content coding undone, chunk by chunk: `decode` each chunk, then `finish`."""

    def __init__(self, coding: str) -> None:
        self.coding = coding

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            yield from self._pieces(data)
        except UpstreamFailure:
            raise
        except Exception as error:  # each library has its own errors for corrupt data
            raise self._invalid(error) from None

    def finish(self) -> None:
        """Raise if the reply ended before its coded data did."""
        if not self._complete():
            raise self._invalid("truncated data")

    def _invalid(self, why: object) -> UpstreamFailure:
        return UpstreamFailure(f"upstream reply is not valid {self.coding} data ({why})")

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        raise NotImplementedError

    def _complete(self) -> bool:
        raise NotImplementedError


class _Zlib(ReplyDecoder):
    def __init__(self, coding: str, wbits: int) -> None:
        super().__init__(coding)
        self._wbits = wbits
        self._decompressor = zlib.decompressobj(wbits)

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        while True:
            out = self._decompressor.decompress(data, PIECE_BYTES)
            if out:
                yield out
            data = self._decompressor.unconsumed_tail
            if self._decompressor.eof and self._decompressor.unused_data:
                data = self._decompressor.unused_data  # another gzip member follows
                self._decompressor = zlib.decompressobj(self._wbits)
            elif not data and len(out) < PIECE_BYTES:
                return

    def _complete(self) -> bool:
        return self._decompressor.eof


class _Brotli(ReplyDecoder):
    def __init__(self) -> None:
        super().__init__("br")
        self._decompressor = brotli.Decompressor()

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        out = self._decompressor.process(data, output_buffer_limit=PIECE_BYTES)
        while out:  # the limit is a hint (pieces reach about twice it): pull until dry
            yield out
            out = self._decompressor.process(b"", output_buffer_limit=PIECE_BYTES)

    def _complete(self) -> bool:
        return self._decompressor.is_finished()


class _Zstd(ReplyDecoder):
    def __init__(self) -> None:
        super().__init__("zstd")
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        view = memoryview(data)
        while view:
            if self._decompressor.eof:  # frames one after another
                view = memoryview(bytes(self._decompressor.unused_data) + bytes(view))
                self._decompressor = zstandard.ZstdDecompressor().decompressobj()
            if out := self._decompressor.decompress(view[:ZSTD_SLICE_BYTES]):
                yield out
            view = view[ZSTD_SLICE_BYTES:]

    def _complete(self) -> bool:
        return self._decompressor.eof


DECODERS: dict[str, Callable[[], ReplyDecoder]] = {
    "gzip": lambda: _Zlib("gzip", 16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib("x-gzip", 16 + zlib.MAX_WBITS),
    "deflate": lambda: _Zlib("deflate", zlib.MAX_WBITS),
    "br": _Brotli,
    "zstd": _Zstd,
}
IDENTITY = ("", "identity")


def _coding(content_encoding: str | None) -> str:
    return (content_encoding or "").strip().lower()


def known_encoding(content_encoding: str | None) -> bool:
    """Whether a reply's `content-encoding` is one we undo (a stack of several is not: no
    upstream has a reason to send one)."""
    coding = _coding(content_encoding)
    return coding in IDENTITY or coding in DECODERS


def reply_decoder(content_encoding: str | None) -> ReplyDecoder | None:
    """The decoder of a known `content-encoding`; None for identity."""
    coding = _coding(content_encoding)
    return None if coding in IDENTITY else DECODERS[coding]()
