"""Event shards end to end, as real processes: EVENT_SHARDS=3 with one logger (LOGGER_REPLICAS=1
owns all three shards: events.jsonl, events-1.jsonl, events-2.jsonl). Every request is in
exactly one file, its shard's; and every reader adds up the three shards: GET /admin/usage, the
dashboard's overview, Usage and Requests pages (paged by the Older link, whose cursor carries
the shard), and the key page."""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

import httpx
import orjson

from proxy_service.publisher import shard_of
from shared.usage import Tally, tally_records
from tests.load import run_load
from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, running_system
from tests.ui.dashboard import Dashboard

SHARDS = 3
ALPHA, BETA = "bsk-event-shards-alpha-01", "bsk-event-shards-beta-002"
KEYS = {ALPHA: ("ann", "gpt-test"), BETA: ("ben", "m2")}
"""Key -> its user and the model its requests name."""
PER_KEY = {ALPHA: 50, BETA: 25}
SENT = sum(PER_KEY.values())
REQUEST_ID_CELL = re.compile(r'<td class="rid">([^<]*)</td>')
OLDER_LINK = re.compile(r'<a href="(/ui/requests\?[^"]*)" rel="next">Older</a>')


def shard_file(system: System, shard: int) -> Path:
    return system.data_dir / ("events.jsonl" if shard == 0 else f"events-{shard}.jsonl")


def lines_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def admin_usage(system: System, **params: str) -> dict:
    reply = httpx.get(
        system.url + "/admin/usage",
        params={"since": "1h", **params},
        headers={"x-admin-token": ADMIN_TOKEN},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def recount(records: list[dict]) -> dict:
    cells: dict = {}
    tally_records(records, cells)
    total = Tally()
    for tally in cells.values():
        total.add(tally)
    return total.summary()


def requests_pages(dashboard: Dashboard) -> tuple[list[list[str]], list[str]]:
    """The request ids of each page of /ui/requests, following Older to the window's end, and
    the Older links followed."""
    pages, links, path = [], [], "/ui/requests"
    while True:
        page = dashboard.get(path)
        assert page.status_code == 200, page.text
        pages.append([html.unescape(rid) for rid in REQUEST_ID_CELL.findall(page.text)])
        older = OLDER_LINK.search(page.text)
        if older is None:
            assert "End of the recent window." in page.text
            return pages, links
        path = html.unescape(older[1])
        links.append(path)


def test_three_shards_one_logger_every_request_once_and_every_reader_adds_them_up(
    redis_url: str, fake_upstream_url: str, tmp_path: Path
):
    with running_system(redis_url, fake_upstream_url, tmp_path, EVENT_SHARDS=str(SHARDS)) as system:
        key_ids = {}
        for key, (user, _) in KEYS.items():
            reply = system.upsert(key, user)
            assert reply.status_code == 200, reply.text
            key_ids[key] = reply.json()["key"]["key_id"]
        outcomes = []
        for key, (_, model) in KEYS.items():
            protocols = ("openai", "anthropic")
            outcomes += run_load([system.url], key, PER_KEY[key], 40.0, protocols, model)
        assert all(o.complete for o in outcomes), [o for o in outcomes if not o.complete][:3]
        sent = {o.request_id for o in outcomes}
        assert None not in sent and len(sent) == SENT

        def all_written() -> bool:
            written = sum(len(lines_of(shard_file(system, k))) for k in range(SHARDS))
            assert written <= SENT, f"{written} lines for {SENT} requests"
            return written == SENT

        wait_until(all_written, 30, what="every request in the shard files")
        by_shard = {k: lines_of(shard_file(system, k)) for k in range(SHARDS)}
        every = [line["request_id"] for lines in by_shard.values() for line in lines]
        assert set(every) == sent and not [r for r, n in Counter(every).items() if n > 1]
        for shard, lines in by_shard.items():
            assert lines, f"shard {shard} got requests"
            assert {shard_of(line["request_id"], SHARDS) for line in lines} == {shard}

        records = [line for lines in by_shard.values() for line in lines]
        expected = recount(records)
        assert expected["requests"] == SENT and expected["total_tokens"] > 0
        wait_until(
            lambda: admin_usage(system)["totals"] == expected,
            30,
            what="GET /admin/usage to add up all three shards",
        )
        by_key = {g["key"]["key_id"]: g for g in admin_usage(system, group_by="key")["groups"]}
        for key, key_id in key_ids.items():
            mine = [r for r in records if r["key_id"] == key_id]
            assert len(mine) == PER_KEY[key]
            assert {n: by_key[key_id][n] for n in expected} == recount(mine)

        dashboard = Dashboard(system.url)
        try:
            assert dashboard.login().status_code == 303
            pages, links = requests_pages(dashboard)
            listed = [rid for page in pages for rid in page]
            assert len(pages) == 2 and len(pages[0]) == 50
            assert re.fullmatch(r"/ui/requests\?before=\d+-\d+\.[0-2]", links[0]), links
            assert sorted(listed) == sorted(sent), "each request once, over the shards"

            usage = dashboard.get("/ui/usage?since=1h&group_by=key")
            assert usage.status_code == 200
            usage_json = dashboard.get("/ui/usage.json?since=1h")
            assert usage_json.status_code == 200 and usage_json.json()["totals"] == expected

            overview = dashboard.get("/ui/")
            assert overview.status_code == 200
            assert "none in the recent window" not in overview.text, "the last request counted"

            key_page = dashboard.get(f"/ui/keys/{key_ids[ALPHA]}")
            assert key_page.status_code == 200
            shown = set(REQUEST_ID_CELL.findall(key_page.text))
            mine = [r for r in records if r["key_id"] == key_ids[ALPHA]]
            assert len(shown) == 20 and shown <= {r["request_id"] for r in mine}
            assert {shard_of(rid, SHARDS) for rid in shown} == set(range(SHARDS))
        finally:
            dashboard.close()
