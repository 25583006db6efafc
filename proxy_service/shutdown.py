"""Notices that the server began shutting down, so streams cut when the grace period ends
(uvicorn's --timeout-graceful-shutdown) are recorded as cut by the shutdown, not by the client."""

from __future__ import annotations

import signal
from types import FrameType


class ShutdownWatch:
    def __init__(self) -> None:
        self.draining = False

    def cut_reason(self, what: str = "stream") -> tuple[int, str]:
        """(status, error) for usage events of requests (or streams) cut before they ended."""
        if self.draining:
            return 503, f"{what} cut: proxy shutdown grace period ended"
        return 499, f"client disconnected mid-{what}"

    def install(self) -> None:
        """Chain in front of the server's own SIGTERM/SIGINT handlers (uvicorn's), if any;
        with no Python handler installed, leave the default behaviour alone."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if callable(previous):
                signal.signal(signum, self._chained(previous))

    def _chained(self, previous):  # type: ignore[no-untyped-def]
        def handler(signum: int, frame: FrameType | None) -> None:
            self.draining = True
            previous(signum, frame)

        return handler
