"""`python -m proxy_service`: the proxy on HOST:PORT, with a graceful shutdown that exits 0.

`uvicorn proxy_service.main:app` works too, but plain uvicorn re-raises SIGTERM after its
shutdown, so the process ends "killed by SIGTERM" (status 143) even when every request finished,
and it has none of the request-head bounds of proxy_service/server.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
from collections.abc import Iterator

import uvicorn

from proxy_service.container_hints import warn_about_loopback_upstream
from proxy_service.server import HeadBoundedProtocol, HeadBounds, raise_open_file_limit
from shared.settings import service_settings
from shared.version import version


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
    parser = argparse.ArgumentParser(prog="python -m proxy_service", description=__doc__)
    parser.add_argument("--version", action="version", version=f"b23-llm-proxy {version()}")
    parser.parse_args()
    settings = service_settings()
    bounds = HeadBounds(settings.max_header_bytes, settings.header_read_timeout)
    config = uvicorn.Config(
        "proxy_service.main:app",
        host=settings.host,
        port=settings.port,
        http=functools.partial(HeadBoundedProtocol, bounds=bounds),  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        access_log=False,
        log_level="info",
    )
    raise_open_file_limit()  # after the Config: uvicorn's logging is set up then
    warn_about_loopback_upstream(settings.upstream_base_url)
    GracefulServer(config).run()


if __name__ == "__main__":
    main()
