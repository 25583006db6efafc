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

USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
EVENT_END = b"\n\n"


class OpenAIStreamTap:
    """A chat.completion.chunk stream; subclasses read other OpenAI event streams the same way
    (`_worth_inspecting` picks the events to parse, `_take` reads one)."""

    def __init__(self, drop_usage_chunk: bool) -> None:
        self._drop_usage_chunk = drop_usage_chunk
        self._pending = b""
        self._seen_first = False
        self.upstream_id: str | None = None
        self.model: str | None = None
        self.usage: dict[str, int] | None = None
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Return the bytes to forward now: every complete event received so far."""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(EVENT_END)
        if cut < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: cut + 2], data[cut + 2 :]
        if self._worth_inspecting(complete):
            complete = self._inspect(complete)
        return complete

    def _worth_inspecting(self, complete: bytes) -> bool:
        """Whether any of these events may tell something (C-level searches, no parsing)."""
        return not self._seen_first or bool(USAGE_OBJECT.search(complete)) or b'"error"' in complete

    def flush(self) -> bytes:
        """Whatever trailing bytes the upstream sent without a final blank line."""
        rest, self._pending = self._pending, b""
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
