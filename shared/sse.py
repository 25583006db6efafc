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


class EventTooLarge(ValueError):
    """An event longer than its reader's bound: the stream cannot be read on."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upstream event over {limit} bytes")
        self.limit = limit


class SSEDecoder:
    """Incremental decoder: `feed(chunk)` returns the events completed by that chunk.

    Work is linear in the bytes fed whatever the size of an event (each byte is searched once),
    and with `max_event_bytes` an event (its lines so far and the line being read) longer than
    that raises EventTooLarge instead of growing without bound."""

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._buffer = bytearray()
        self._event = b""
        self._data: list[bytes] = []
        self._event_bytes = 0
        """Bytes of the current event's complete lines."""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer
        start, search_from = 0, len(buffer)  # the buffer holds no newline between feeds
        buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            end = buffer.find(b"\n", search_from)
            if end < 0:
                break
            line = bytes(buffer[start:end])
            start = search_from = end + 1
            self._event_bytes += len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._interpret(line)
            if event is not None:
                events.append(event)
            self._check_size(0)
        del buffer[:start]
        self._check_size(len(buffer))
        return events

    def _check_size(self, partial_line: int) -> None:
        limit = self.max_event_bytes
        if limit is not None and self._event_bytes + partial_line > limit:
            raise EventTooLarge(limit)

    def flush(self) -> list[ServerSentEvent]:
        """Dispatch what a stream that ended without a final blank line left behind."""
        events = self.feed(b"\n") if self._buffer else []
        event = self._interpret(b"")
        return [*events, event] if event is not None else events

    def _interpret(self, line: bytes) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event, self._event_bytes = b"", 0
                return None
            event = ServerSentEvent(
                self._event.decode("utf-8", "replace") or "message", b"\n".join(self._data)
            )
            self._event, self._data, self._event_bytes = b"", [], 0
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
