"""`@pytest.mark.alone`: a test that runs while no other test of the run does.

The suite runs on pytest-xdist workers (see pyproject.toml), several tests at once on a machine
with few cores. A test whose assertion is a wall-clock latency (a replica serves /healthz
within 1 s while another request parses 64 MB, a change is in force on the other replica
within 1 s) or a process's memory under a flood would measure its neighbours as much as the
code. `xdist_group` cannot help: it only keeps tests on one worker, the other workers go on.

So every worker takes a turn per test, through two flocks on files shared by the run's workers:
an ordinary test holds the room shared, an `alone` test holds it exclusively, and the gate in
front of the room, held by whoever waits for the room exclusively, keeps new ordinary tests
from starving it. The turn spans the whole test protocol (module and session fixtures set up
or torn down with the test included), and an `alone` worker keeps the room across consecutive
`alone` tests. Without workers (`pytest -n 0`, `-p no:xdist`) nothing is locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import pytest

MARK = "alone"


class Turns:
    def __init__(self, folder: Path) -> None:
        self._gate: IO[bytes] = (folder / "b23-tests-gate.lock").open("ab")
        self._room: IO[bytes] = (folder / "b23-tests-room.lock").open("ab")
        self._held: str | None = None
        """None, "shared" or "alone"."""

    def enter(self, alone: bool) -> None:
        wanted = "alone" if alone else "shared"
        if self._held == wanted:
            return
        self.leave()
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        except BaseException:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
            raise
        if not alone:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._held = wanted

    def leave(self) -> None:
        if self._held is None:
            return
        fcntl.flock(self._room, fcntl.LOCK_UN)
        if self._held == "alone":
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._held = None

    def close(self) -> None:
        self.leave()
        self._gate.close()
        self._room.close()


def is_alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker(MARK) is not None


def turns_for(config: pytest.Config) -> Turns | None:
    """The run's turns on an xdist worker of a run with several; None otherwise. The files are
    in the run's base temporary folder, the parent of each worker's (`popen-gw0`, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2:
        return None
    basetemp = Path(config.option.basetemp or "")
    if basetemp.name != f"popen-{worker}" or not basetemp.parent.is_dir():
        raise pytest.UsageError(f"xdist worker {worker} with basetemp {basetemp}: no run folder")
    return Turns(basetemp.parent)
