"""Event shards with two loggers, as real processes: EVENT_SHARDS=3, logger 0 owns shards 0 and
2 (events.jsonl, events-2.jsonl, and keys.json), logger 1 owns shard 1 (events-1.jsonl, on its
own data directory, as a StatefulSet pod's volume). Logger 1 is killed for 10 s under load: its
shard's events wait in its stream, the others keep flowing, and afterwards the union of the
files holds every request exactly once, each in its own shard's file, and the usage aggregates
equal a recount of the files."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from proxy_service.publisher import shard_of
from shared.usage import Tally, tally_records
from tests.load import Background
from tests.processes import ADMIN_TOKEN, RedisServer, wait_until
from tests.system import System

KEY = "bsk-shard-loggers-0001"
SHARDS = 3
SHARDED = {"EVENT_SHARDS": str(SHARDS), "LOGGER_REPLICAS": "2"}


def lines_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_one_of_two_loggers_killed_for_10s_under_load_loses_and_doubles_nothing(
    private_redis: RedisServer, fake_upstream_url: str, tmp_path: Path
):
    system = System(private_redis.url, fake_upstream_url, tmp_path / "system", **SHARDED)
    second_dir = tmp_path / "logger-1-data"
    files = {
        0: system.data_dir / "events.jsonl",
        1: second_dir / "events-1.jsonl",
        2: system.data_dir / "events-2.jsonl",
    }
    try:
        system.start_logger(LOGGER_ORDINAL="0", LOGGER_CONSUMER="logger-0")
        second = dict(LOGGER_ORDINAL="1", LOGGER_CONSUMER="logger-1", DATA_DIR=str(second_dir))
        logger_1 = system.start_logger(**second)
        system.start_proxy()
        system.start_proxy()
        assert system.upsert(KEY, "sharder").status_code == 200

        load = Background(system.proxy_urls, KEY, 360, 24.0, ("openai", "anthropic"))
        time.sleep(3)
        logger_1.kill()
        time.sleep(10)
        system.start_logger(**second)
        outcomes = load.join(timeout=90)

        assert all(o.complete for o in outcomes), [o for o in outcomes if not o.complete][:3]
        sent = {o.request_id for o in outcomes}
        assert len(sent) == len(outcomes) and None not in sent

        def all_written() -> bool:
            return sum(len(lines_of(path)) for path in files.values()) >= len(sent)

        wait_until(all_written, 30, what="every request in the shard files")
        by_file = {
            shard: [r["request_id"] for r in lines_of(path)] for shard, path in files.items()
        }
        every = [rid for rids in by_file.values() for rid in rids]
        duplicates = [rid for rid, n in Counter(every).items() if n > 1]
        print(
            f"\nSHARD-REPORT | {len(outcomes)} sent | {len(every)} recorded | "
            f"{len(sent - set(every))} lost | {len(duplicates)} duplicated | "
            f"{sum(not o.complete for o in outcomes)} client-visible errors | per file "
            f"{ {shard: len(rids) for shard, rids in by_file.items()} }"
        )
        assert not duplicates and set(every) == sent
        for shard, rids in by_file.items():
            assert rids, f"shard {shard} got requests"
            assert {shard_of(rid, SHARDS) for rid in rids} == {shard}
        assert not (second_dir / "keys.json").exists(), "only logger 0 keeps keys.json"

        records = [record for path in files.values() for record in lines_of(path)]
        cells: dict = {}
        tally_records(records, cells)
        recount = Tally()
        for tally in cells.values():
            recount.add(tally)

        def usage_adds_up() -> bool:
            reply = httpx.get(
                system.url + "/admin/usage",
                params={"since": "1h"},
                headers={"x-admin-token": ADMIN_TOKEN},
                timeout=10,
            )
            return reply.json()["totals"] == recount.summary()

        wait_until(usage_adds_up, 20, what="the aggregates of all shards to equal a recount")
    finally:
        system.stop()
