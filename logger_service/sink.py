"""events.jsonl: appended in whole lines, flushed to disk, never a request_id twice.

Every append runs under an exclusive flock, so a second logger replica cannot interleave partial
lines. Before writing, the sink reads whatever other writers appended since its last look, so the
set of recent request_ids covers the whole file tail. At open it cuts a partial last line a crash
left behind (that entry was never acknowledged, so it is delivered again).
"""

from __future__ import annotations

import fcntl
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

RECENT_IDS = 200_000
TAIL_SCAN_BYTES = 32 << 20


class EventSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._seen_until = 0
        self._recent: OrderedDict[str, None] = OrderedDict()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with self._locked():
            self._cut_partial_line()
            size = os.fstat(self._fd).st_size
            self._seen_until = self._line_start_near(size - TAIL_SCAN_BYTES)
            self._catch_up(size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def append(self, lines: list[tuple[str, bytes]]) -> int:
        """Write the lines whose request_id is new, fsync, and return how many were written."""
        with self._locked():
            self._catch_up(os.fstat(self._fd).st_size)
            fresh = []
            for request_id, line in lines:
                if request_id not in self._recent:
                    self._remember(request_id)
                    fresh.append(line)
            if fresh:
                os.write(self._fd, b"".join(fresh))
                os.fsync(self._fd)
            self._seen_until = os.fstat(self._fd).st_size
        return len(fresh)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _cut_partial_line(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        window = min(size, 1 << 20)
        while True:
            tail = os.pread(self._fd, window, size - window)
            newline = tail.rfind(b"\n")
            if newline >= 0 or window == size:
                break
            window = min(size, window * 2)
        keep = size - window + newline + 1 if newline >= 0 else 0
        os.ftruncate(self._fd, keep)

    def _line_start_near(self, offset: int) -> int:
        """The start of the first whole line at or after `offset` (0 for a small file)."""
        if offset <= 0:
            return 0
        newline = os.pread(self._fd, 1 << 20, offset - 1).find(b"\n")
        return offset + newline if newline >= 0 else offset

    def _catch_up(self, size: int) -> None:
        """Learn the request_ids of lines appended after `_seen_until` (by us or others)."""
        if size <= self._seen_until:
            return
        data = os.pread(self._fd, size - self._seen_until, self._seen_until)
        for line in data.splitlines():
            request_id = _request_id_of(line)
            if request_id is not None:
                self._remember(request_id)
        self._seen_until = size

    def _remember(self, request_id: str) -> None:
        self._recent[request_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)


def _request_id_of(line: bytes) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    request_id = record.get("request_id") if isinstance(record, dict) else None
    return request_id if isinstance(request_id, str) else None
