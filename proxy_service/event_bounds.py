"""Usage events as the publisher holds them: encoded once, sized in bytes, compacted before any
is dropped.

An event is encoded as it is published, in two parts: the small fields (request_id, usage, every
metadata field) and the heavy ones (prompt, response, response_stream), each value encoded on its
own. The parts are spliced into one JSON object when written to Redis, so the heavy values are
encoded once, never copied into a second buffer, and can be left out (compacted) without parsing
anything again: a compacted event keeps every small field, says `"compacted": true`, and has in
place of prompt and response a marker `{"omitted": "<n> bytes: <why>"}`.

`BoundedEvents` is a FIFO held to a byte bound: past it the oldest full events are compacted,
and only when every event in it is compacted is the oldest dropped. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

HEAVY_FIELDS = ("prompt", "response", "response_stream")
"""Left out of a compacted event. The logger reads a `response_stream` only as text, so its
size is told in the `response` marker."""
ENTRY_OVERHEAD_BYTES = 256
"""Python's cost of holding one event besides its encoded bytes (the entry object, its bytes
and dict headers, the deque slot): counted, so a bound in bytes is one in memory too."""


@dataclass(slots=True)
class EncodedEvent:
    request_id: Any
    head: bytes
    """The small fields as JSON object members, without the braces."""
    heavy: dict[str, bytes]
    """Heavy field name -> its encoded value. A null one is left out: the logger fills in every
    README field, and a compacted event's markers then never repeat a key."""
    size: int = 0
    """Bytes this entry costs in memory (`ENTRY_OVERHEAD_BYTES` included)."""
    stream_id: tuple[int, int] = (0, 0)
    """Its entry id once published (`ms-seq` as numbers, which order as Redis orders ids)."""
    shard: int = 0
    """The event stream it goes to, chosen once (publisher.shard_of), so a replay goes to the
    same stream, and its line to the same file, where the logger drops it if already there."""

    def __post_init__(self) -> None:
        self.size = self._measure()

    @property
    def compacted(self) -> bool:
        return not self.heavy

    def data(self) -> bytes:
        """The event as one JSON object, small fields first (request_id leading)."""
        members = [self.head] if self.head else []
        members.extend(b'"%s":%s' % (name.encode(), value) for name, value in self.heavy.items())
        return b"{" + b",".join(members) + b"}"

    def compact(self, why: str) -> bool:
        """Leave out prompt and response, saying how big they were and why; False if there
        was nothing to leave out."""
        if not self.heavy:
            return False
        sizes = {name: len(value) for name, value in self.heavy.items()}
        prompt = sizes.get("prompt", 0)
        response = sizes.get("response", 0) + sizes.get("response_stream", 0)
        markers: dict[str, Any] = {}
        if prompt:
            markers["prompt"] = {"omitted": f"{prompt} bytes: {why}"}
        if response:
            markers["response"] = {"omitted": f"{response} bytes: {why}"}
        markers["compacted"] = True
        added = orjson.dumps(markers)[1:-1]
        self.head = self.head + b"," + added if self.head else added
        self.heavy = {}
        self.size = self._measure()
        return True

    def _measure(self) -> int:
        return ENTRY_OVERHEAD_BYTES + len(self.head) + sum(map(len, self.heavy.values()))


def encode_event(event: dict[str, Any]) -> EncodedEvent:
    """The event in its two parts; TypeError (orjson's) for a value that cannot be encoded."""
    small = {name: value for name, value in event.items() if name not in HEAVY_FIELDS}
    heavy = {
        name: orjson.dumps(event[name]) for name in HEAVY_FIELDS if event.get(name) is not None
    }
    return EncodedEvent(event.get("request_id"), orjson.dumps(small)[1:-1], heavy)


@dataclass
class BoundedEvents:
    """Events in order, at most `limit` bytes: past it the oldest full one is compacted (`why`
    says why in its markers), and once all are compacted the oldest is dropped. An event larger
    than the whole bound is compacted as it comes in, rather than every other one before it."""

    limit: int
    why: str
    entries: deque[EncodedEvent] = field(default_factory=deque)
    bytes: int = 0
    compacted: int = 0
    dropped: int = 0
    _full_from: int = 0
    """Every entry before this index is compacted: where the search for the oldest full one
    starts, so a long run of compacted events is walked once, not at every event."""

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: EncodedEvent) -> list[EncodedEvent]:
        """Add at the end; the events dropped to make room, oldest first."""
        self.entries.append(entry)
        self.bytes += entry.size
        if entry.size > self.limit:
            self._compact(entry)
        return self._enforce()

    def prepend(self, entries: list[EncodedEvent]) -> list[EncodedEvent]:
        """Put `entries` (in their order) before the others, as older; the events dropped."""
        self.entries.extendleft(reversed(entries))
        self.bytes += sum(entry.size for entry in entries)
        first_full = next((i for i, entry in enumerate(entries) if not entry.compacted), None)
        self._full_from = self._full_from + len(entries) if first_full is None else first_full
        return self._enforce()

    def take(self, count: int, max_bytes: int) -> list[EncodedEvent]:
        """Remove and return the oldest entries: `count` at most, and no more than `max_bytes`
        unless the first alone is larger."""
        taken: list[EncodedEvent] = []
        size = 0
        while self.entries and len(taken) < count:
            size += self.entries[0].size
            if taken and size > max_bytes:
                break
            taken.append(self.popleft())
        return taken

    def popleft(self) -> EncodedEvent:
        entry = self.entries.popleft()
        self.bytes -= entry.size
        self._full_from = max(0, self._full_from - 1)
        return entry

    def _compact(self, entry: EncodedEvent) -> None:
        before = entry.size
        if entry.compact(self.why):
            self.compacted += 1
            self.bytes -= before - entry.size

    def _enforce(self) -> list[EncodedEvent]:
        dropped = []
        entries = self.entries
        while self.bytes > self.limit and entries:
            while self._full_from < len(entries) and entries[self._full_from].compacted:
                self._full_from += 1
            if self._full_from < len(entries):
                self._compact(entries[self._full_from])
            else:
                dropped.append(self.popleft())
                self.dropped += 1
        return dropped
