"""`python -m proxy_service`: the proxy on HOST:PORT, with a graceful shutdown that exits 0.

`uvicorn proxy_service.main:app` works too, but plain uvicorn re-raises SIGTERM after its
shutdown, so the process ends "killed by SIGTERM" (status 143) even when every request finished.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from shared.settings import get_settings


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT stop accepting, let in-flight requests finish within the grace period,
    run the lifespan shutdown (which publishes pending usage events), then return normally."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in handled}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def main() -> None:
    settings = get_settings()
    config = uvicorn.Config(
        "proxy_service.main:app",
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        access_log=False,
        log_level="info",
    )
    GracefulServer(config).run()


if __name__ == "__main__":
    main()
