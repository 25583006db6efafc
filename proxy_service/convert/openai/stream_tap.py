"""Watches an OpenAI chat completion stream on its way to the client.

Bytes go out as they arrive, cut only at event boundaries (an upstream writes whole events, so
nothing waits). Per chunk the tap does a few C-level byte searches; JSON is parsed only for the
first event (id, model) and for events that carry a usage object. The usage-only chunk the proxy
asked for on the client's behalf is dropped before it reaches the client.
"""

from __future__ import annotations

import re

import orjson

from proxy_service.convert.openai.usage import usage_record
from shared.sse import EventTooLarge

USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
EVENT_END = b"\n\n"


class OpenAIStreamTap:
    """A chat.completion.chunk stream; subclasses read other OpenAI event streams the same way
    (`_worth_inspecting` picks the events to parse, `_take` reads one)."""

    def __init__(self, drop_usage_chunk: bool) -> None:
        self._drop_usage_chunk = drop_usage_chunk
        self._pending: list[bytes] = []
        """The start of an event not complete yet, as it came (joined once, when it ends)."""
        self._pending_bytes = 0
        self._held_cr = False
        """A chunk ended in `\r`: it is held back, since a `\n` may follow in the next one."""
        self._max_event_bytes: int | None = None
        self._seen_first = False
        self.upstream_id: str | None = None
        self.model: str | None = None
        self.usage: dict[str, int] | None = None
        self.error: str | None = None

    def limit_event_bytes(self, limit: int) -> None:
        """Bound every event: `feed` raises EventTooLarge once one grows past `limit` bytes."""
        self._max_event_bytes = limit

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes to forward now: every complete event received so far. Each byte is
        searched once, so an event split over many chunks costs no more than a whole one."""
        chunk = self._normalised(chunk)
        first = self._straddling_end(chunk)
        if first < 0:
            found = chunk.find(EVENT_END)
            if found < 0:
                self._hold(chunk)
                return b""
            first = found + 2
        self._check_size(self._pending_bytes + first)
        end = max(first, chunk.rfind(EVENT_END) + 2)
        complete = b"".join([*self._pending, chunk[:end]]) if self._pending else chunk[:end]
        self._pending, self._pending_bytes = [], 0
        if end < len(chunk):
            self._hold(chunk[end:])
        if self._worth_inspecting(complete):
            complete = self._inspect(complete)
        return complete

    def _normalised(self, chunk: bytes) -> bytes:
        """`\r\n` as `\n`, also when the pair is split between two chunks."""
        if self._held_cr:
            chunk, self._held_cr = b"\r" + chunk, False
        if chunk.endswith(b"\r"):
            chunk, self._held_cr = chunk[:-1], True
        return chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk

    def _straddling_end(self, chunk: bytes) -> int:
        """Where in `chunk` an event ends whose blank line began in the pending bytes (they end
        in `\n` and the chunk starts with one): 1; else -1."""
        if self._pending and self._pending[-1].endswith(b"\n") and chunk.startswith(b"\n"):
            return 1
        return -1

    def _hold(self, part: bytes) -> None:
        self._pending.append(part)
        self._pending_bytes += len(part)
        self._check_size(self._pending_bytes)

    def _check_size(self, event_bytes: int) -> None:
        if self._max_event_bytes is not None and event_bytes > self._max_event_bytes:
            raise EventTooLarge(self._max_event_bytes)

    def _worth_inspecting(self, complete: bytes) -> bool:
        """Whether any of these events may tell something (C-level searches, no parsing)."""
        return not self._seen_first or bool(USAGE_OBJECT.search(complete)) or b'"error"' in complete

    def flush(self) -> bytes:
        """Whatever trailing bytes the upstream sent without a final blank line."""
        rest = b"".join(self._pending) + (b"\r" if self._held_cr else b"")
        self._pending, self._pending_bytes, self._held_cr = [], 0, False
        return self._inspect(rest + EVENT_END) if rest.strip() else b""

    def _inspect(self, complete: bytes) -> bytes:
        kept = []
        for event in complete.split(EVENT_END):
            if not event:
                continue
            payload = _data_of(event)
            if payload is None or payload == b"[DONE]" or not self._take(payload):
                kept.append(event)
        return EVENT_END.join(kept) + EVENT_END if kept else b""

    def _take(self, payload: bytes) -> bool:
        """Record what the event tells; True when it is the usage-only chunk to drop."""
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(chunk, dict):
            return False
        if not self._seen_first:
            self._seen_first = True
            self.upstream_id = chunk.get("id") if isinstance(chunk.get("id"), str) else None
            self.model = chunk.get("model") if isinstance(chunk.get("model"), str) else None
        if "error" in chunk:
            error = chunk["error"]
            self.error = str(error.get("message") if isinstance(error, dict) else error)
        usage = usage_record(chunk.get("usage"))
        if usage is None:
            return False
        self.usage = usage
        return self._drop_usage_chunk and not chunk.get("choices")


def _data_of(event: bytes) -> bytes | None:
    """The joined data lines of one SSE event (None for comments-only events)."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None
