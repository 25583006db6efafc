"""GET /admin/usage: requests, tokens (by category), spend, errors and latency from the logger's
aggregates in Redis.

Proxies never read the data files: the logger keeps the aggregates (logger_service/rollup.py),
and this reads them in the layout of shared/usage_layout.py, the question itself being the same
UsageQuery the command-line report answers from the files.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from proxy_service.deps import AdminState
from proxy_service.errors import InvalidRequest
from shared.redis_client import RedisClient
from shared.redis_names import usage_groups, usage_watermark
from shared.usage import HOUR_MS, Cell, Tally
from shared.usage_layout import (
    Bucket,
    bucket_key,
    cell_key,
    covering,
    decode_group,
    first_hour,
)
from shared.usage_query import UsageQuery, build_query

router = APIRouter(prefix="/admin", tags=["admin"])

SNAPSHOT_ATTEMPTS = 3
CELLS_PER_READ = 2000


@router.get("/usage")
async def usage(
    state: AdminState,
    since: str | None = None,
    until: str | None = None,
    group_by: str | None = None,
    user_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    client_app: str | None = None,
) -> dict[str, Any]:
    """since/until: ISO-8601, unix seconds or an age (`7d`); group_by: day, user, key, model,
    client_app, or several joined by commas. Each group and the totals give the counters of
    shared/usage.py: `cost_usd` (exact, of the requests priced or free) and
    `unpriced_requests` (those whose model has no price, not in `cost_usd`) among them."""
    filters = {"user_id": user_id, "key_id": key_id, "model": model, "client_app": client_app}
    try:
        query = build_query(
            since=since,
            until=until,
            group_by=group_by,
            filters=filters,
            now_ms=time.time_ns() // 1_000_000,
        )
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    return await usage_report(state.redis, query, state.settings.event_shards)


async def usage_report(redis: RedisClient, query: UsageQuery, shards: int = 1) -> dict[str, Any]:
    """The answer of GET /admin/usage to `query` (the dashboard's Usage page shows the same)."""
    return query.report(query.fold(await read_cells(redis, query, shards), Tally.add_fields))


async def read_cells(
    redis: RedisClient, query: UsageQuery, shards: int = 1, chunk: int = CELLS_PER_READ
) -> list[tuple[Cell, dict[bytes, bytes]]]:
    """The cells (their Tally fields) of every bucket covering the query's hours whose group
    passes its filters, in every event shard's aggregates (a cell of the same hour and group
    may come from several: folding adds them)."""
    buckets = covering(query.first_hour, query.end_hour, time.time_ns() // 1_000_000 // HOUR_MS)
    projection = query.projection()
    if projection is not None:
        buckets = [
            (projection, index) if kind == "day" else (kind, index) for kind, index in buckets
        ]
    cells = []
    for shard in range(shards):
        cells += await _shard_cells(redis, query, buckets, shard, chunk)
    return cells


async def _shard_cells(
    redis: RedisClient, query: UsageQuery, buckets: list[Bucket], shard: int, chunk: int
) -> list[tuple[Cell, dict[bytes, bytes]]]:
    """One shard's cells: first its watermark and which groups each bucket has, then their
    counters, `chunk` hashes per round trip, then the watermark again: the logger moves it in
    the same transaction as the counters of the lines it passes, so if it has not moved, no
    counter changed during the read, and the answer adds up the lines before one watermark;
    if it moved, read again. Chunks, not one transaction: a month of a busy gateway is
    hundreds of thousands of cells, which one MULTI would hold Redis for seconds with (every
    proxy's requests waiting), and one reply over the socket timeout. No transaction at all:
    the watermark read at both ends brackets every read (and redis-py's cluster transactions
    fail on SMEMBERS)."""
    watermark_key = usage_watermark(shard)
    for _ in range(SNAPSHOT_ATTEMPTS):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.get(watermark_key)
            pipe.hgetall(usage_groups(shard))
            for bucket in buckets:
                pipe.smembers(bucket_key(bucket, shard))
            watermark, registry, *members = await pipe.execute()
        groups = {gid.decode(): decode_group(raw) for gid, raw in registry.items()}
        wanted = [
            (bucket, gid, groups[gid])
            for bucket, gids in zip(buckets, members, strict=True)
            for gid in map(bytes.decode, gids)
            if gid in groups and query.accepts(groups[gid])
        ]
        hashes: list[dict[bytes, bytes]] = []
        for start in range(0, len(wanted), chunk):
            async with redis.pipeline(transaction=False) as pipe:
                for bucket, gid, _ in wanted[start : start + chunk]:
                    pipe.hgetall(cell_key(bucket, gid, shard))
                hashes += await pipe.execute()
        if await redis.get(watermark_key) == watermark:
            break
    return [
        ((first_hour(bucket), group), fields)
        for (bucket, _, group), fields in zip(wanted, hashes, strict=True)
        if fields
    ]
