"""The HTTP/1.1 server side of `python -m proxy_service`: request heads bounded in bytes and time.

uvicorn's httptools protocol reads a request head for as long as it takes and however large it
grows: a connection that never finishes its headers stays open for ever (1,100 of them use up
the default 1,024 open files and no new request gets in), and httptools joins a header value
received in pieces by copying it again for every piece (quadratic). `HeadBoundedProtocol`
collects each head itself, in one buffer, and hands it to the parser whole once its blank line
is in; a head past MAX_HEADER_BYTES gets a 431, one not complete HEADER_READ_TIMEOUT after the
connection opened (or after the previous response ended, on a keep-alive connection) is closed,
with a 408 when part of it had arrived. Bodies go to the parser as they come, as before.

A head pipelined behind another request, in the same read as that request's end, starts in the
parser rather than the buffer: it is bounded from its next read on (pipelining is rare; nginx
and the SDKs never do it).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from proxy_service.errors import anthropic_error_body, openai_error_body, protocol_of

log = logging.getLogger("uvicorn.error")

BLANK_LINE = b"\r\n\r\n"
LINGER_SECONDS = 2.0
"""After a 431, how long what the client still sends is read and dropped before closing: closing
with unread bytes makes the kernel reset the connection, which can destroy the answer."""


@dataclass(frozen=True, slots=True)
class HeadBounds:
    max_bytes: int
    """Request line plus headers plus the blank line."""
    read_timeout: float


class HeadBoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each request head buffered, bounded and timed."""

    def __init__(self, *args: Any, bounds: HeadBounds, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = bounds
        self.head = bytearray()
        """The head received so far, while one is awaited."""
        self.awaiting_head = True
        self.parser_in_head = False
        """The parser has begun a head (a pipelined one) it has not finished."""
        self.fed_tail = b""
        """The last bytes the parser was given, where a pipelined head's blank line may begin."""
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False

    # Connection and parser events
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.parser_in_head = True

    def on_headers_complete(self) -> None:
        self.parser_in_head = self.awaiting_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.awaiting_head = True

    def on_response_complete(self) -> None:
        idle_after = not self.pipeline  # else a queued request starts now, its head complete
        super().on_response_complete()
        if idle_after and self.awaiting_head and not self.transport.is_closing():
            self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering after a 431: read and dropped
        if not self.awaiting_head:
            self._feed(data)
            return
        scanned = len(self.head)
        self.head += data
        end = self._blank_line_at(scanned)
        if end == -1 and len(self.head) <= self.bounds.max_bytes:
            self._unset_keepalive_if_required()  # as uvicorn does on any byte
            return
        if end == -1 or end + len(BLANK_LINE) > self.bounds.max_bytes:
            self._refuse_head()
            return
        head = bytes(self.head)
        self.head.clear()
        self._feed(head)

    # Internals
    def _blank_line_at(self, scanned: int) -> int:
        """Where the blank line ending the head starts in the buffer, or -1. Only the new
        bytes are searched (and the 3 before them), so the whole wait is linear."""
        end = self.head.find(BLANK_LINE, max(0, scanned - 3))
        if end == -1 and self.parser_in_head:
            straddling = self.fed_tail + bytes(self.head[:3])
            return 0 if BLANK_LINE in straddling else -1
        return end

    def _feed(self, data: bytes) -> None:
        super().data_received(data)
        self.fed_tail = data[-3:] if self.parser_in_head else b""

    def _refuse_head(self) -> None:
        """431, then the connection is closed: a parser cannot skip the rest of a head."""
        self.refused = True
        self._stop_head_timer()
        message = f"request line and headers over {self.bounds.max_bytes} bytes"
        self._answer_and_close(431, message, "request_header_fields_too_large")
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.head_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.bounds.read_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or not self.awaiting_head or self.transport.is_closing():
            return  # a response is on its way: the timer starts again when it ends
        if self.head or self.parser_in_head:
            message = f"request headers not complete within {self.bounds.read_timeout:g} s"
            self._answer_and_close(408, message, "request_timeout")
        self.transport.close()

    def _answer_and_close(self, status: int, message: str, code: str) -> None:
        """An error in the protocol the request line names (the headers are not known)."""
        if protocol_of(self._requested_path(), {}) == "anthropic":
            body = anthropic_error_body(status, message)
        else:
            body = openai_error_body(status, message, code)
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))

    def _requested_path(self) -> str:
        line_end = self.head.find(b"\r\n", 0, self.bounds.max_bytes)
        parts = bytes(self.head[: line_end if line_end != -1 else 0]).split(b" ")
        return parts[1].decode("latin-1") if len(parts) == 3 else ""


def raise_open_file_limit() -> int:
    """The soft open-file limit raised to the hard one, and logged: every client connection,
    stream and upstream connection is a file, and the usual soft default (1,024) is reached by
    about a thousand idle clients, past which no connection is accepted. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            log.warning("open-file limit left at %d: %s", soft, error)
            return soft
        log.info("open-file limit raised from %d to %d (the hard limit)", soft, hard)
        return hard
    log.info("open-file limit: %d", soft)
    return soft
