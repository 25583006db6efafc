"""Server-sent events on the byte level (https://html.spec.whatwg.org/#event-stream-interpretation).

The decoder works on bytes so a chunk split inside a UTF-8 character or a line is harmless: only
complete lines are ever interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its name (`message` when absent) and its joined data lines."""

    event: str
    data: bytes


class SSEDecoder:
    """Incremental decoder: `feed(chunk)` returns the events completed by that chunk."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        start = 0
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._interpret(line)
            if event is not None:
                events.append(event)
        del buffer[:start]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """Dispatch what a stream that ended without a final blank line left behind."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._interpret(b"")
        return [*events, event] if event is not None else events

    def _interpret(self, line: bytes) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event = b""
                return None
            event = ServerSentEvent(
                self._event.decode("utf-8", "replace") or "message", b"\n".join(self._data)
            )
            self._event, self._data = b"", []
            return event
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        return None


def encode_event(name: str, data: object) -> bytes:
    """One Anthropic-style frame: `event:` line equal to the payload's type, then `data:`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
