"""The dashboard's reads from Redis (the proxy never reads the event files): usage cells, what
each key has used of its limits, and the metering pipeline's health."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from proxy_service.allowances import many_token_limits
from proxy_service.routes.usage import read_cells
from proxy_service.ui import overview
from proxy_service.ui.overview import Cells, query
from proxy_service.ui.recent import recent_rows
from proxy_service.ui.views import LIMIT_FIELDS, TOKEN_COLUMNS
from shared import redis_names
from shared.keys import KeyRecord
from shared.logger_status import files_report, running_loggers
from shared.usage import LATENCY_PREFIX, Tally

LATENCY_FIELD = LATENCY_PREFIX.encode()


async def usage_cells(
    redis: Redis,
    since_seconds: int,
    now: datetime,
    filters: Mapping[str, str] | None = None,
    group_by: str = "day",
    shards: int = 1,
) -> Cells:
    """The cells from `since` to now that answer a `group_by` question under `filters`, read
    and decoded once for the folds of that question: a question about at most one dimension
    reads its day projection (a few cells a day), not every group's cells."""
    cells = await read_cells(redis, query(since_seconds, now, group_by, filters), shards)
    return [(cell, counts_only(fields)) for cell, fields in cells]


def counts_only(fields: Mapping[bytes, bytes]) -> Tally:
    """A cell's counters without its latency histogram, which no card or table of these
    pages shows: folding a cell then costs its 13 counters, not its dozens of buckets."""
    return Tally.from_fields({k: v for k, v in fields.items() if k[:1] != LATENCY_FIELD})


async def limits_of(
    redis: Redis, records: Sequence[KeyRecord], now: datetime
) -> dict[str, dict[str, dict[str, Any]]]:
    """key_id -> each token or request limit's limit, used and remaining (keys without a limit
    cost no call)."""
    limited = [r for r in records if any(getattr(r, name) for name in LIMIT_FIELDS)]
    return await many_token_limits(redis, limited, now) if limited else {}


async def pipeline_health(redis: Redis, shards: int = 1) -> dict[str, Any]:
    """Stream backlog over the shards (entries, of them not yet read by a logger), loggers
    reporting, the loggers' file status, and how long ago the last request was counted."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(redis_names.LOGGER_HEARTBEAT)
        for shard in range(shards):
            pipe.xlen(redis_names.events_stream(shard))
            pipe.xrevrange(redis_names.recent_requests(shard), count=1)
        heartbeat, *per_shard = await pipe.execute()
    entries = sum(per_shard[0::2])
    newest = [window[0][0] for window in per_shard[1::2] if window]
    lags = [await _unread(redis, redis_names.events_stream(shard)) for shard in range(shards)]
    last_counted = None
    if newest:
        entry_ms = max(int(_text(entry_id).split("-")[0]) for entry_id in newest)
        last_counted = max(0.0, time.time() - entry_ms / 1000)
    return {
        "stream_entries": entries,
        "unread": None if None in lags else sum(lags),
        "logger_alive": bool(heartbeat),
        "loggers": sorted(await running_loggers(redis)),
        "files": await files_report(redis),
        "last_counted_seconds_ago": last_counted,
    }


async def _unread(redis: Redis, stream: str) -> int | None:
    """Entries of the stream the loggers' group has not read (None: not known)."""
    try:
        for group in await redis.xinfo_groups(stream):
            if group["name"] in (redis_names.LOGGER_GROUP, redis_names.LOGGER_GROUP.encode()):
                return group.get("lag")
    except ResponseError:  # no stream yet
        pass
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def key_usage(
    redis: Redis, key_id: str, now: datetime, recent: int, shards: int = 1
) -> dict[str, Any]:
    """What the key page and /me show of one key's use: the cards, the daily chart and its
    table, the per-model table of 30 days, and its last `recent` requests."""
    since = overview.month_start(now)
    filters = {"key_id": key_id}
    cells = await usage_cells(redis, since, now, filters, shards=shards)
    by_model = await usage_cells(redis, since, now, filters, "model", shards)
    daily = overview.daily(cells, now, since, filters)
    rows = await recent_rows(redis, filters, before=None, limit=recent, shards=shards)
    return {
        "windows": overview.cards(cells, now, filters),
        "daily": daily,
        "tokens_chart": overview.chart(daily, overview.CHART_TOKENS),
        "token_columns": TOKEN_COLUMNS,
        "models": overview.report(by_model, query(since, now, "model", filters))["groups"],
        "recent": rows.rows,
    }
