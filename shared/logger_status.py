"""The loggers' status reports (Redis hash LOGGER_STATUS, one field per logger consumer): what
is wrong with the files they own or read (keys.json, events, the price file) and which price
table they use, for the proxies' /readyz and the logger's --check."""

from __future__ import annotations

import time

from pydantic import BaseModel, ValidationError

from shared import redis_names
from shared.redis_client import REDIS_ERRORS, RedisClient

STATUS_FRESH_SECONDS = 10.0
"""A report older than this is a stopped logger's: ignored."""


class LoggerStatus(BaseModel):
    """One logger's report, rewritten every fraction of a second while it runs."""

    at: float
    """Unix time of the report."""
    keys_file_error: str | None = None
    """Why keys.json is not loaded (it does not parse); None when it is fine."""
    disk_error: str | None = None
    """Why a file cannot be written (full disk, ...); None since the last write succeeded."""
    price_version: str | None = None
    """The price table this logger prices records with; None without one (every model
    unpriced: PRICES_FILE unset, or never loaded)."""
    price_error: str | None = None
    """Why PRICES_FILE is not the table in force (the last good one is kept); None when it is."""


async def running_loggers(redis: RedisClient) -> dict[str, LoggerStatus]:
    """Consumer name -> report, for the loggers that reported recently."""
    now = time.time()
    reports = {}
    for consumer, raw in (await redis.hgetall(redis_names.LOGGER_STATUS)).items():
        try:
            status = LoggerStatus.model_validate_json(raw)
        except ValidationError:
            continue
        if now - status.at < STATUS_FRESH_SECONDS:
            reports[consumer.decode()] = status
    return reports


async def files_report(redis: RedisClient) -> dict[str, str | None] | None:
    """What /readyz shows: "ok" or the first logger's error, for keys.json, the disk and the
    price file, and the first logger's price table version; None when no logger reports (or
    Redis does not answer)."""
    try:
        reports = await running_loggers(redis)
    except REDIS_ERRORS:
        return None
    if not reports:
        return None
    ordered = [reports[name] for name in sorted(reports)]
    return {
        "keys_file": next((s.keys_file_error for s in ordered if s.keys_file_error), "ok"),
        "disk": next((s.disk_error for s in ordered if s.disk_error), "ok"),
        "prices": next((s.price_error for s in ordered if s.price_error), "ok"),
        "price_version": ordered[0].price_version,
    }
