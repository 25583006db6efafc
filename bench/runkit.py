"""Small helpers the metering benchmarks share: CPU pinning, a process's CPU time, and a tail of
events.jsonl that hands over each whole line once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """`argv` under `taskset -c cpus`; unchanged when no CPUs are given or taskset is missing."""
    if not cpus or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", cpus, *argv]


def pin_self(cpus: str | None) -> None:
    """Keep this process (the load side) off the CPUs of the system it measures."""
    if cpus:
        os.sched_setaffinity(0, parse_cpus(cpus))


def parse_cpus(cpus: str) -> set[int]:
    """A taskset-style list ("0", "1,3", "2-3") as a set of CPU numbers."""
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def other_cpus(cpus: str) -> str | None:
    """The CPUs not in `cpus`, taskset-style; None on a machine that has no others."""
    others = sorted(set(range(os.cpu_count() or 1)) - parse_cpus(cpus))
    return ",".join(map(str, others)) or None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LineTail:
    """Reads a growing file (that may not exist yet) and returns each whole line once.

    The benchmarks set EVENTS_ROTATE_BYTES far above what they write, so the file is never
    rotated under the tail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[bytes]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return lines
