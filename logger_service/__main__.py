"""`python -m logger_service` runs the worker (exit 0 after SIGTERM, 1 when a loop it cannot do
without failed); `--check` exits 0 if it is alive and can write its files."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from logger_service.worker import LoggerFailed, UsageLogger
from shared import redis_names
from shared.logger_status import running_loggers
from shared.redis_client import REDIS_ERRORS, connect
from shared.settings import get_settings, service_settings
from shared.version import version


async def serve() -> None:
    settings = service_settings()
    redis = connect(settings, timeout=5)
    logger = UsageLogger(settings, redis)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, logger.stop)
    try:
        await logger.run()
    except LoggerFailed:
        raise SystemExit(1) from None  # the Supervisor logged which loop failed, and why
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await logger.health.withdraw()
        await redis.aclose()


async def check() -> int:
    """Exit code for a HEALTHCHECK: 0 when a logger refreshed the heartbeat recently (events
    are moving) and this one reports no disk error."""
    settings = get_settings()
    redis = connect(settings, timeout=2)
    try:
        alive = await redis.exists(redis_names.LOGGER_HEARTBEAT)
        own = (await running_loggers(redis)).get(settings.logger_consumer)
    except REDIS_ERRORS:
        return 1
    finally:
        await redis.aclose()
    return 0 if alive and own is not None and own.disk_error is None else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m logger_service", description=__doc__)
    parser.add_argument("--check", action="store_true", help="health check, exit 0 or 1")
    parser.add_argument("--version", action="version", version=f"b23-llm-proxy {version()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.check:
        sys.exit(asyncio.run(check()))
    asyncio.run(serve())


if __name__ == "__main__":
    main()
