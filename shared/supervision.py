"""Background tasks that cannot die unseen.

Every long-running loop of a process (the proxy's publisher and key sync, the logger's event,
key file, rollup and tidy loops) runs under one Supervisor. A loop that raises is logged in one
line (never a traceback of thousands of frames), counted, and then either restarted after a
short pause (`restart=True`: the proxy keeps serving and says so in /readyz) or reported as
fatal (`restart=False`: the process ends, so its container is restarted instead of staying up
doing nothing). `status()` is what health endpoints show.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 0.5
MAX_ERROR_CHARS = 300
STOP_TIMEOUT_SECONDS = 5.0


def describe_failure(error: BaseException) -> str:
    """`Type: message (file:line)`, short: enough to find the bug, small enough for one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "…"
    return text + where


@dataclass(slots=True)
class TaskState:
    running: bool = True
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None


class Supervisor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, TaskState] = {}
        self.fatal = asyncio.Event()
        """Set when a loop started with restart=False failed: the process should end."""

    def start(self, name: str, loop: Callable[[], Awaitable[None]], *, restart: bool) -> None:
        """Run `loop()` as a task named `name`; a loop that returns is done, one that raises
        is restarted or reported as fatal."""
        self._states[name] = TaskState()
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._guard(name, loop, restart), name=name
        )

    async def _guard(self, name: str, loop: Callable[[], Awaitable[None]], restart: bool) -> None:
        state = self._states[name]
        while True:
            try:
                await loop()
                state.running = False
                return
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as error:
                state.failures += 1
                state.last_error = describe_failure(error)
                state.last_failure_at = time.time()
                if not restart:
                    state.running = False
                    log.critical("%s failed, stopping the process: %s", name, state.last_error)
                    self.fatal.set()
                    return
                log.error("%s failed, restarting it: %s", name, state.last_error)
            await asyncio.sleep(RESTART_DELAY_SECONDS)

    def status(self) -> dict[str, dict[str, object]]:
        return {
            name: {
                "running": state.running,
                "failures": state.failures,
                "last_error": state.last_error,
            }
            for name, state in self._states.items()
        }

    @property
    def all_running(self) -> bool:
        return all(state.running for state in self._states.values())

    async def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Cancel every task and wait for them to end, at most `timeout` seconds: a client
        library that swallows a cancellation (redis-py can, inside a pipeline) must not hang
        the shutdown. Tasks still running then are named in the log and left behind."""
        for task in self._tasks.values():
            task.cancel()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks.values(), timeout=timeout)
        for task in pending:
            log.error("%s did not stop within %gs of its cancellation", task.get_name(), timeout)
