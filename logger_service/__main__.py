"""`python -m logger_service` runs the worker; `--check` exits 0 if a logger is alive."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from redis.asyncio import Redis
from redis.exceptions import RedisError

from logger_service.worker import UsageLogger
from shared import redis_names
from shared.settings import get_settings


async def serve() -> None:
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    logger = UsageLogger(settings, redis)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, logger.stop)
    try:
        await logger.run()
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(redis_names.LOGGER_HEARTBEAT)  # a stopped logger is not healthy
        await redis.aclose()


async def check() -> int:
    """Exit code for a HEALTHCHECK: 0 when a logger refreshed its heartbeat recently."""
    redis = Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return 0 if await redis.exists(redis_names.LOGGER_HEARTBEAT) else 1
    except (RedisError, OSError):
        return 1
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m logger_service", description=__doc__)
    parser.add_argument("--check", action="store_true", help="health check, exit 0 or 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.check:
        sys.exit(asyncio.run(check()))
    asyncio.run(serve())


if __name__ == "__main__":
    main()
