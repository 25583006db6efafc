"""The event files of a data directory in the order their lines were written: the rotated
`events-<UTC time>[-n].jsonl` by name, then `events.jsonl`; with event shards, the same for
each shard k's `events-<k>.jsonl` (shard_event_paths finds them).

Reads stop at the last newline, so a line still being written is never seen in part.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

ROTATED_SUFFIX = re.compile(r"-(\d{8}T\d{6})(?:-(\d+))?\.jsonl$")
STAMP_FORMAT = "%Y%m%dT%H%M%S"
BLOCK_BYTES = 8 << 20
FIRST_LINE_PROBE = 64 << 10


SHARD_FILE = re.compile(r"events(?:-(\d{1,4}))?(?:-\d{8}T\d{6}(?:-\d+)?)?\.jsonl")
"""Any event file of any shard: `events[-<shard>][-<UTC time>[-n]].jsonl`."""


def shard_event_paths(data_dir: Path) -> list[Path]:
    """The current file's path of every shard with a file (current or rotated) in `data_dir`:
    `events.jsonl` for shard 0, `events-<k>.jsonl` for shard k."""
    shards = set()
    for path in data_dir.glob("events*.jsonl"):
        match = SHARD_FILE.fullmatch(path.name)
        if match is not None:
            shards.add(int(match[1] or 0))
    return [data_dir / ("events.jsonl" if k == 0 else f"events-{k}.jsonl") for k in sorted(shards)]


def rotated_files(events_path: Path) -> list[Path]:
    """Rotated files, oldest first."""
    stem = events_path.stem
    found = events_path.parent.glob(f"{stem}-*.jsonl")
    return sorted((p for p in found if ROTATED_SUFFIX.fullmatch(p.name[len(stem) :])), key=_order)


def rotation_target(events_path: Path, now_s: float) -> Path:
    """A new name for the current file, sorting after every rotated one even if the clock went
    back (a second rotation within one second gets `-2`, `-3`...)."""
    stamp = datetime.fromtimestamp(now_s, UTC).strftime(STAMP_FORMAT)
    rotated = rotated_files(events_path)
    if rotated:
        last_stamp, last_number = _order(rotated[-1])
        if last_stamp >= stamp:
            return events_path.with_name(f"{events_path.stem}-{last_stamp}-{last_number + 1}.jsonl")
    return events_path.with_name(f"{events_path.stem}-{stamp}.jsonl")


def rotated_at(path: Path) -> float:
    """Unix time of a rotated file's rotation, from its name: none of its lines is later."""
    stamp, _ = _order(path)
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC).timestamp()


def expired_files(events_path: Path, retention_days: int, now_s: float) -> list[Path]:
    cutoff = now_s - retention_days * 86400
    return [path for path in rotated_files(events_path) if rotated_at(path) < cutoff]


def _order(rotated: Path) -> tuple[str, int]:
    """(UTC time, number) from a rotated file's name."""
    match = ROTATED_SUFFIX.search(rotated.name)
    assert match is not None, rotated
    return match[1], int(match[2] or 1)


def line_blocks(file: BinaryIO, start: int = 0, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines from byte `start`, each ending in a newline (a block is longer
    than `block_bytes` only to finish a line); a partial last line is left out."""
    file.seek(start)
    pending = bytearray()
    while chunk := file.read(block_bytes):
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield bytes(pending[:cut])
            del pending[:cut]


def first_line(file: BinaryIO) -> bytes | None:
    """The file's first whole line, None while it has none."""
    block = next(line_blocks(file, 0, FIRST_LINE_PROBE), None)
    return None if block is None else block[: block.index(b"\n") + 1]


class EventFileSet:
    """The event files in writing order, each opened on first use and then kept open: an open
    file stays the same file whatever a rotation renames meanwhile.

    The current file is opened before the rotated ones are listed, so a rotation in between
    shows it under its new name only: no file is missed or seen twice."""

    def __init__(self, events_path: Path, stack: ExitStack) -> None:
        self._stack = stack
        self._files: dict[int, BinaryIO] = {}
        try:
            current = stack.enter_context(events_path.open("rb"))
        except FileNotFoundError:
            current = None
        self.paths: list[Path | None] = list(rotated_files(events_path))
        """Rotated files by name; None for the current file."""
        if current is not None and not _renamed_into(current, self.paths):
            self._files[len(self.paths)] = current
            self.paths.append(None)

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, index: int) -> BinaryIO | None:
        """The file, None if it was deleted (retention) before we got to it."""
        if index not in self._files:
            path = self.paths[index]
            assert path is not None, "the current file is opened first"
            try:
                self._files[index] = self._stack.enter_context(path.open("rb"))
            except FileNotFoundError:
                return None
        return self._files[index]


def _renamed_into(current: BinaryIO, rotated: list[Path | None]) -> bool:
    """Was the file opened as the current one rotated since (so it is listed already)?"""
    names = {path.name for path in rotated if path is not None}
    if not names:
        return False
    inode = os.fstat(current.fileno()).st_ino
    with os.scandir(Path(current.name).parent) as entries:
        return any(entry.name in names and entry.inode() == inode for entry in entries)
