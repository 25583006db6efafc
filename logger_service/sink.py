"""events.jsonl: appended in whole lines, flushed to disk, never a request_id twice, rotated.

Every append runs under an exclusive flock of the file, so a second logger replica cannot
interleave partial lines. Under that lock the sink first makes sure it holds the file now at the
path (another replica may have rotated it: it learns the old file's last ids, then opens the new
one), cuts a partial last line a failed write left behind (that entry was never acknowledged, so
it is delivered again), and rotates: when the file reached `rotate_bytes`, or was last written on
an earlier UTC day, it is renamed to `events-<UTC time>.jsonl`. A line is never split, and each
file holds the lines appended during one UTC day at most. Before writing, the sink reads whatever
other writers appended since its last look, so the set of recent request_ids covers the file
tail, across rotations too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from logger_service.durable import fsync_directory, write_all
from logger_service.eventfiles import rotated_files, rotation_target

RECENT_IDS = 200_000
TAIL_SCAN_BYTES = 32 << 20
DAY_SECONDS = 86400


class EventSink:
    def __init__(self, path: Path, rotate_bytes: int | None = None) -> None:
        self.path = path
        self._rotate_bytes = rotate_bytes
        self._fd = -1
        self._seen_until: int | None = None
        """Offset up to which the file's request_ids are known; None: not looked yet."""
        self._left: int | None = None
        """Inode of the file held before this one: files rotated after it are still unread."""
        self._just_opened = False
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._busy = threading.Lock()
        """Held by an append (run in a thread) and by close, which must not pull the file
        from under an append still running after its caller was cancelled."""

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_path(left=None)
        with self._locked():
            self._catch_up()

    def close(self) -> None:
        with self._busy:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def append(self, lines: list[tuple[str, bytes]]) -> int:
        """Write the lines whose request_id is new, fsync, and return how many were written.

        Ids are remembered once written: after a failed write, the next append learns the
        lines that made it from the file and writes the others again."""
        with self._busy, self._locked():
            self._catch_up()
            fresh: dict[str, bytes] = {}
            for request_id, line in lines:
                if request_id not in self._recent:
                    fresh.setdefault(request_id, line)
            if fresh:
                write_all(self._fd, b"".join(fresh.values()))
                os.fsync(self._fd)
                for request_id in fresh:
                    self._remember(request_id)
            self._seen_until = os.fstat(self._fd).st_size
        return len(fresh)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock of the file now at the path, rotated first if due."""
        while True:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            if self._holds_path():
                if self._just_opened:
                    self._learn_rotated_after(self._left)
                    self._just_opened = False
                self._cut_partial_line()
                if not self._rotation_due():
                    break
                self._rotate()
            self._catch_up()
            # A file rotated away before we first locked it: what others rotated before it
            # is still unlearned, so keep looking from the file held before it.
            left = self._left if self._just_opened else os.fstat(self._fd).st_ino
            os.close(self._fd)
            self._open_path(left)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open_path(self, left: int | None) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._seen_until = None
        self._left, self._just_opened = left, True
        fsync_directory(self.path.parent)

    def _learn_rotated_after(self, inode: int | None) -> None:
        """The ids of the files rotated after the one we left (other replicas wrote and rotated
        them meanwhile); at open, or if that file is gone, the newest rotated file's tail."""
        rotated = rotated_files(self.path)
        with os.scandir(self.path.parent) as entries:
            inodes = {entry.name: entry.inode() for entry in entries}
        held = [index for index, path in enumerate(rotated) if inodes.get(path.name) == inode]
        for path in rotated[held[-1] + 1 :] if held else rotated[-1:]:
            with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
                fd = file.fileno()
                size = os.fstat(fd).st_size
                self._learn(fd, _line_start_near(fd, size - TAIL_SCAN_BYTES), size)

    def _holds_path(self) -> bool:
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fd)
        return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)

    def _rotation_due(self) -> bool:
        held = os.fstat(self._fd)
        if held.st_size == 0:
            return False
        if self._rotate_bytes is not None and held.st_size >= self._rotate_bytes:
            return True
        return held.st_mtime // DAY_SECONDS < time.time() // DAY_SECONDS

    def _rotate(self) -> None:
        """Rename the (locked, whole-lined) file; writers find the path's new file under lock."""
        os.rename(self.path, rotation_target(self.path, time.time()))
        fsync_directory(self.path.parent)

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
        if self._seen_until is not None:
            self._seen_until = min(self._seen_until, keep)

    def _catch_up(self) -> None:
        """Learn the request_ids of lines appended after `_seen_until` (by us or others)."""
        size = os.fstat(self._fd).st_size
        if self._seen_until is None:
            self._seen_until = _line_start_near(self._fd, size - TAIL_SCAN_BYTES)
        self._learn(self._fd, self._seen_until, size)
        self._seen_until = size

    def _learn(self, fd: int, start: int, end: int) -> None:
        if end <= start:
            return
        for line in os.pread(fd, end - start, start).splitlines():
            request_id = _request_id_of(line)
            if request_id is not None:
                self._remember(request_id)

    def _remember(self, request_id: str) -> None:
        self._recent[request_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)


def _line_start_near(fd: int, offset: int) -> int:
    """The start of the first whole line at or after `offset` (0 for a small file)."""
    if offset <= 0:
        return 0
    newline = os.pread(fd, 1 << 20, offset - 1).find(b"\n")
    return offset + newline if newline >= 0 else offset


def _request_id_of(line: bytes) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    request_id = record.get("request_id") if isinstance(record, dict) else None
    return request_id if isinstance(request_id, str) else None
