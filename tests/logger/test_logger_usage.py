"""The logger process end to end: events from the stream land in rotating files exactly once,
and its rollup keeps the usage aggregates in Redis in step."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
from redis.asyncio import Redis

from logger_service.eventfiles import rotated_files
from proxy_service.routes.usage import read_cells
from shared.redis_names import EVENTS_STREAM
from shared.usage import Tally
from shared.usage_query import build_query
from tests.processes import wait_until
from tests.system import System
from tests.usage_data import (
    HOUR,
    PRICE_FILE,
    PRICES,
    assert_matches,
    expected_report,
    random_records,
)

START = (1_780_000_000_000 // HOUR) * HOUR
END = START + 48 * HOUR


def usage_report(redis_url: str) -> dict:
    async def read() -> dict:
        client = Redis.from_url(redis_url)
        query = build_query(
            since=str(START // 1000),
            until=str(END // 1000),
            group_by="user",
            filters={},
            now_ms=END,
        )
        try:
            return query.report(query.fold(await read_cells(client, query), Tally.add_fields))
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_logger_rotates_and_counts_every_event_once(redis_url, redis_client, tmp_path):
    """Every event once in the files, priced by the logger, and the aggregates (spend to the
    last nano-dollar) those lines add up to."""
    (tmp_path / "prices.toml").write_bytes(PRICE_FILE)
    settings = {
        "EVENTS_ROTATE_BYTES": "4096",
        "EVENTS_RETENTION_DAYS": "3650",
        "PRICES_FILE": str(tmp_path / "prices.toml"),
    }
    system = System(redis_url, "http://127.0.0.1:9/v1", tmp_path, **settings)
    records = random_records(400, seed=3, start_ms=START, hours=48)
    system.start_logger()
    try:

        def written() -> list[dict]:
            return [
                orjson.loads(line)
                for path in [*rotated_files(system.events_path), system.events_path]
                for line in path.read_bytes().splitlines()
            ]

        for start in range(0, len(records), 25):  # one batch each, so the file rotates
            for record in records[start : start + 25]:
                redis_client.xadd(EVENTS_STREAM, {"e": orjson.dumps(record)})
            wait_until(lambda s=start: len(written()) > s, 10, what="a batch written")
        wait_until(lambda: len(written()) >= len(records), 10, what="every event in the files")
        lines = written()
        assert sorted(r["request_id"] for r in lines) == sorted(r["request_id"] for r in records)
        assert len(rotated_files(system.events_path)) > 10
        assert all(line["cost"]["price_version"] == PRICES.version for line in lines)
        expected = expected_report(lines, since_ms=START, until_ms=END, group_by="user")
        assert sum(Decimal(group["cost_usd"]) for group in expected.values()) > 0

        def counted() -> bool:
            report = usage_report(redis_url)
            return report["totals"]["requests"] == len(records) - 1

        wait_until(counted, 20, what="usage aggregates caught up")
        assert_matches(usage_report(redis_url), expected)
    finally:
        system.stop()
    assert "Traceback" not in system.logs()
