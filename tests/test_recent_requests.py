"""The recent-requests window's entries (what a record keeps, bounded), its filters, and its
pages read from a real Redis by keyset: newest first, every row once, within a scan budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict

import orjson
import pytest
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from logger_service.tallies import line_records
from proxy_service.publisher import shard_of
from shared import redis_names
from shared.recent_requests import (
    ENTRY_FIELD,
    MAX_TEXT_CHARS,
    OUTCOMES,
    SLIM_FIELDS,
    RecentFilter,
    RecentRequest,
    entry_value,
    line_streamed,
    outcome,
    recent_page,
    slim_fields,
)
from shared.redis_names import RECENT_REQUESTS
from shared.truncate import MARKER_LENGTH
from shared.usage_split import CATEGORIES
from tests.recent_data import (
    PROMPT_TEXT,
    PROTOCOLS,
    RESPONSE_TEXT,
    STREAMED,
    line_of,
    proxy_events,
    record_lines,
)

EVENTS = proxy_events(200)
HUGE = "x" * 1_000_000


def rollup_view(line: bytes) -> dict:
    """slim_fields as the rollup makes it: from the head and usage only, stream from the bytes."""
    ((read, record),) = list(line_records(line))
    return slim_fields(record, line_streamed(read))


def row_of(fields: dict, entry_id: str = "1-0") -> RecentRequest:
    return RecentRequest.from_entry(entry_id.encode(), {ENTRY_FIELD.encode(): entry_value(fields)})


# --- slim_fields ------------------------------------------------------------------------------


def test_every_route_streamed_or_not_keeps_its_metadata_as_the_line_has_it():
    seen = set()
    for event in EVENTS:
        line = line_of(event)
        record = orjson.loads(line)
        slim = rollup_view(line)
        assert slim == slim_fields(record)  # the rollup's cheap reading is the full one
        assert list(slim) == list(SLIM_FIELDS)
        for name in ("request_id", "key_id", "user_id", "client_app", "protocol", "model"):
            assert slim[name] == event[name]
        assert slim["upstream_id"] == event["upstream_id"]
        assert slim["started_at_ms"] == event["started_at_ms"]
        assert slim["latency_ms"] == 250
        assert (slim["status_code"], slim["error"]) == (event["status_code"], event["error"])
        assert slim["outcome"] == outcome(event["status_code"], event["error"])
        assert slim["stream"] is event["_streamed"]
        usage = event["usage"]
        assert slim["usage_estimated"] is (usage is not None and "estimated" in usage)
        assert slim["tokens"] == record["tokens"]
        assert (slim["cost_usd"], slim["cost_status"]) == (
            record["cost"]["usd"],
            record["cost"]["status"],
        )
        seen.add((event["protocol"], slim["stream"], slim["outcome"], slim["cost_status"]))
    assert {protocol for protocol, *_ in seen} == set(PROTOCOLS)
    assert {(p, True) for p in STREAMED} <= {(p, s) for p, s, *_ in seen}
    assert {o for _, _, o, _ in seen} == set(OUTCOMES) - {"unknown"}
    assert {c for *_, c in seen} == {"priced", "free", "unpriced"}


def test_an_entry_never_holds_the_prompt_or_the_response():
    for event in EVENTS[:40]:
        entry = entry_value(rollup_view(line_of(event)))
        assert PROMPT_TEXT.strip().encode() not in entry
        assert RESPONSE_TEXT.strip().encode() not in entry


def test_an_unpriced_request_has_no_cost_and_one_without_usage_no_tokens():
    unpriced = next(e for e in EVENTS if e["model"] == "deepseek-chat" and e["usage"])
    line = line_of(unpriced)
    slim = rollup_view(line)
    assert (slim["cost_usd"], slim["cost_status"]) == (None, "unpriced")
    assert slim["tokens"] == orjson.loads(line)["tokens"] is not None
    refused = next(e for e in EVENTS if e["usage"] is None)
    assert rollup_view(line_of(refused))["tokens"] is None
    assert row_of(rollup_view(line_of(refused))).tokens is None


def test_a_record_older_than_tokens_and_cost_shows_its_usage_split_and_no_cost():
    record = {
        "request_id": "r",
        "status_code": 200,
        "error": None,
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }
    slim = slim_fields(record)
    assert slim["tokens"] == {**dict.fromkeys(CATEGORIES, 0), "input": 10, "output": 3}
    assert (slim["cost_usd"], slim["cost_status"]) == (None, None)
    assert slim["stream"] is False and slim["started_at_ms"] is None


def test_every_text_is_bounded_whatever_a_client_sent():
    record = {
        name: HUGE
        for name in ("request_id", "key_id", "user_id", "client_app", "protocol", "upstream_id")
    }
    record |= {"model": "m" * 100_000, "error": "é" * 100_000, "status_code": 200}
    record["cost"] = {"usd": HUGE, "status": HUGE}
    slim = slim_fields(record)
    texts = [value for value in slim.values() if isinstance(value, str)]
    assert len(texts) == 11
    assert all(len(text) <= MAX_TEXT_CHARS + MARKER_LENGTH for text in texts)
    assert slim["model"].startswith("m" * MAX_TEXT_CHARS)
    assert len(entry_value(slim)) < 11 * 2 * (MAX_TEXT_CHARS + MARKER_LENGTH) + 500


def test_a_filter_on_a_huge_model_name_finds_its_cut_form():
    model = "very-long-model-" * 1000
    row = row_of(slim_fields({"model": model, "status_code": 200}))
    assert RecentFilter(model=model).accepts(row)
    assert not RecentFilter(model=model + "x").accepts(row)


def test_compacted_and_unprocessed_records_do_not_claim_a_stream_flag():
    compacted = proxy_events(1)[0] | {"compacted": True, "response": {"omitted": "9 bytes"}}
    assert rollup_view(line_of(compacted))["stream"] is None
    unprocessed = {"request_id": "r", "raw": "...", "unprocessed": "TooManyValues: ..."}
    assert slim_fields(unprocessed)["stream"] is None


def test_odd_values_of_a_hand_edited_line_read_as_absent_or_as_text():
    record = {
        "request_id": ["not", "text"],
        "user_id": 42,
        "status_code": "200",
        "latency_ms": 12.6,
        "started_at_ms": True,
        "tokens": {"input": -5, "output": "7", "reasoning": 3},
        "cost": "free",
        "usage": {"estimated": "yes"},
    }
    slim = slim_fields(record)
    assert slim["request_id"] is None and slim["user_id"] == "42"
    assert (slim["status_code"], slim["outcome"], slim["latency_ms"]) == (None, "unknown", 13)
    assert slim["started_at_ms"] is None
    assert slim["tokens"] == {**dict.fromkeys(CATEGORIES, 0), "reasoning": 3}
    assert (slim["cost_usd"], slim["usage_estimated"]) == (None, False)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, "complete"),
        (304, None, "complete"),
        (200, "upstream failed mid-stream", "failed"),
        (499, "client disconnected mid-stream", "client_aborted"),
        (400, "bad", "rejected"),
        (429, "limit", "rejected"),
        (500, "bug", "failed"),
        (503, "stream cut: proxy shutdown grace period ended", "failed"),
        (None, "malformed event", "unknown"),
    ],
)
def test_outcomes(status, error, expected):
    assert outcome(status, error) == expected


# --- entries read back ------------------------------------------------------------------------


def test_an_entry_reads_back_as_it_was_kept():
    for event in EVENTS[:30]:
        slim = rollup_view(line_of(event))
        row = row_of(slim, "1700000000000-7")
        assert asdict(row) == {"id": "1700000000000-7", **slim}
    text_keys = RecentRequest.from_entry("5-0", {ENTRY_FIELD: entry_value(slim).decode()})
    assert asdict(text_keys) == {"id": "5-0", **slim}  # a decode_responses client's


def test_entries_of_another_layout_read_with_what_they_have():
    assert asdict(RecentRequest.from_entry(b"1-0", {})) == {
        "id": "1-0",
        **dict.fromkeys(SLIM_FIELDS),
    }
    for value in (b"{not json", b'{"a": 1}', b"17"):
        assert RecentRequest.from_entry(b"1-0", {b"r": value}).request_id is None
    short = RecentRequest.from_entry(b"1-0", {b"r": b'[1700000000000, "req_1"]'})
    assert (short.started_at_ms, short.request_id, short.status_code) == (
        1700000000000,
        "req_1",
        None,
    )
    longer = orjson.dumps([*orjson.loads(entry_value(slim_fields({"model": "m"}))), "new"])
    assert RecentRequest.from_entry(b"1-0", {b"r": longer}).model == "m"
    wrong = orjson.dumps([["x"], 5, "k", None, None, None, None, None, "200", None, None, 1])
    row = RecentRequest.from_entry(b"1-0", {b"r": wrong})
    assert (row.started_at_ms, row.request_id, row.key_id, row.status_code, row.stream) == (
        None,
        None,
        "k",
        None,
        None,
    )


# --- filters ----------------------------------------------------------------------------------

ROW = row_of(
    slim_fields(
        {
            "key_id": "key_a1",
            "user_id": "alice",
            "model": "gpt-4o",
            "status_code": 429,
            "error": "limit",
            "started_at_ms": 1_000,
        }
    )
)


@pytest.mark.parametrize(
    ("accepting", "refusing"),
    [
        (RecentFilter(key_id="key_a1"), RecentFilter(key_id="key_a2")),
        (RecentFilter(user_id="alice"), RecentFilter(user_id="bob")),
        (RecentFilter(model="gpt-4o"), RecentFilter(model="gpt-4o-mini")),
        (RecentFilter(status_class=4), RecentFilter(status_class=2)),
        (RecentFilter(outcome="rejected"), RecentFilter(outcome="complete")),
        (RecentFilter(since_ms=1_000), RecentFilter(since_ms=1_001)),
        (RecentFilter(until_ms=1_001), RecentFilter(until_ms=1_000)),
        (
            RecentFilter(user_id="alice", status_class=4, since_ms=0, until_ms=2_000),
            RecentFilter(user_id="alice", status_class=4, since_ms=0, until_ms=999),
        ),
    ],
)
def test_each_condition_keeps_only_its_rows(accepting, refusing):
    assert accepting.accepts(ROW)
    assert not refusing.accepts(ROW)


def test_no_condition_keeps_everything_and_rows_without_a_value_fail_a_condition_on_it():
    bare = RecentRequest("1-0")
    assert RecentFilter().accepts(bare)
    for condition in (
        RecentFilter(key_id="k"),
        RecentFilter(status_class=2),
        RecentFilter(outcome="complete"),
        RecentFilter(since_ms=0),
        RecentFilter(until_ms=2**62),
    ):
        assert not condition.accepts(bare)


@pytest.mark.parametrize("bad", [{"status_class": 0}, {"status_class": 6}, {"outcome": "ok"}])
def test_a_filter_that_can_match_nothing_is_refused(bad):
    with pytest.raises(ValueError):
        RecentFilter(**bad)


# --- pages ------------------------------------------------------------------------------------


@pytest.fixture
async def redis(redis_client, redis_url) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def fill(redis: Redis, count: int) -> list[str]:
    """`count` entries, the i-th of user u<i % 10> started at i; their ids, oldest first."""
    ids = []
    async with redis.pipeline(transaction=False) as pipe:
        for index in range(count):
            fields = slim_fields(
                {
                    "request_id": f"req_{index}",
                    "user_id": f"u{index % 10}",
                    "status_code": 500 if index % 7 == 0 else 200,
                    "error": None,
                    "started_at_ms": index,
                }
            )
            pipe.xadd(RECENT_REQUESTS, {ENTRY_FIELD: entry_value(fields)})
        ids = [entry_id.decode() for entry_id in await pipe.execute()]
    return ids


async def all_pages(redis: Redis, filters: RecentFilter, **options) -> list:
    pages, before = [], None
    while True:
        page = await recent_page(redis, filters, before, **options)
        pages.append(page)
        if page.next_before is None:
            return pages
        before = page.next_before


def request_ids(pages: list) -> list[str]:
    return [row.request_id for page in pages for row in page.rows]


async def test_pages_give_every_row_once_newest_first(redis):
    ids = await fill(redis, 1234)
    pages = await all_pages(redis, RecentFilter(), limit=50)
    assert request_ids(pages) == [f"req_{index}" for index in reversed(range(1234))]
    assert [row.id for page in pages for row in page.rows] == ids[::-1]
    assert [len(page.rows) for page in pages] == [50] * 24 + [34]
    assert [page.reached_end for page in pages] == [False] * 24 + [True]
    assert pages[0].next_before == ids[-50] and pages[0].scanned == 50
    large = await all_pages(redis, RecentFilter(), limit=700)  # pages of several reads
    assert [row.id for page in large for row in page.rows] == ids[::-1]


async def test_a_page_that_ends_at_the_window_end_says_so(redis):
    await fill(redis, 100)
    pages = await all_pages(redis, RecentFilter(), limit=50)
    assert [(len(page.rows), page.reached_end) for page in pages] == [(50, False), (50, True)]


async def test_pages_do_not_shift_when_requests_arrive(redis):
    await fill(redis, 120)
    first = await recent_page(redis, RecentFilter(), None, limit=50)
    await fill(redis, 30)  # newer entries, above the first page
    second = await recent_page(redis, RecentFilter(), first.next_before, limit=50)
    assert [row.request_id for row in second.rows] == [f"req_{i}" for i in range(69, 19, -1)]


async def test_filtered_pages_hold_only_matching_rows_every_one_once(redis):
    await fill(redis, 2000)
    filters = RecentFilter(user_id="u3", status_class=2)
    pages = await all_pages(redis, filters, limit=20)
    expected = [f"req_{i}" for i in reversed(range(2000)) if i % 10 == 3 and i % 7 != 0]
    assert request_ids(pages) == expected
    assert all(len(page.rows) == 20 for page in pages[:-1])
    timed = await all_pages(redis, RecentFilter(since_ms=100, until_ms=150), limit=20)
    assert request_ids(timed) == [f"req_{i}" for i in range(149, 99, -1)]


async def test_a_sparse_filter_stops_at_the_scan_budget_with_a_cursor_to_go_on(redis):
    ids = await fill(redis, 3000)
    nothing = RecentFilter(user_id="nobody")
    page = await recent_page(redis, nothing, None, limit=50, scan_budget=1000)
    assert (page.rows, page.scanned, page.reached_end) == ([], 1000, False)
    assert page.next_before == ids[-1000]
    pages = await all_pages(redis, nothing, scan_budget=1000)
    assert [p.scanned for p in pages] == [1000, 1000, 1000], "the last page knows it is last"
    assert pages[-1].reached_end
    few = RecentFilter(user_id="u1", outcome="failed")
    budgeted = await all_pages(redis, few, limit=5, scan_budget=300)
    assert request_ids(budgeted) == [
        f"req_{i}" for i in reversed(range(3000)) if i % 10 == 1 and i % 7 == 0
    ]
    assert max(p.scanned for p in budgeted) <= 300


async def test_an_empty_or_missing_window_is_one_last_page(redis):
    page = await recent_page(redis, RecentFilter(), None)
    assert (page.rows, page.next_before, page.scanned, page.reached_end) == ([], None, 0, True)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        "1700000000000",
        "1-2-3",
        "-1-0",
        "1700000000000-0 ",
        "(1-0",
        "1-0\n",
        "1" * 30 + "-0",
        f"{2**64}-0",
    ],
)
async def test_a_cursor_that_is_no_stream_id_is_refused(redis, cursor):
    with pytest.raises(ValueError, match="not a page cursor"):
        await recent_page(redis, RecentFilter(), cursor)


async def test_a_stream_id_cursor_is_exclusive(redis):
    ids = await fill(redis, 10)
    page = await recent_page(redis, RecentFilter(), ids[5])
    assert [row.id for row in page.rows] == ids[4::-1]
    assert (await recent_page(redis, RecentFilter(), f"{2**64 - 1}-0")).rows[0].id == ids[-1]


@pytest.mark.parametrize("options", [{"limit": 0}, {"scan_budget": 0}])
async def test_a_page_of_nothing_is_refused(redis, options):
    with pytest.raises(ValueError):
        await recent_page(redis, RecentFilter(), None, **options)


@pytest.mark.parametrize(("limit", "scan_budget"), [(1, 5000), (7, 5000), (50, 5000), (13, 40)])
async def test_shards_windows_merge_newest_first_with_ties_each_row_once(
    redis, limit: int, scan_budget: int
):
    """Three shards' windows with ids that tie across shards (two nodes' clocks agree to the
    millisecond): every page sequence gives each entry once, ordered by (id, shard), newest
    first, whatever the page size, filter or scan budget; a READ_COUNT-sized run needs refills."""
    shards, count = 3, 1300
    expected = []
    async with redis.pipeline(transaction=False) as pipe:
        for index in range(count):
            shard = index % shards
            entry_id = f"{1_000 + index // 2}-0"  # pairs share an id, in two shards
            fields = slim_fields({"request_id": f"req_{index}", "user_id": f"u{index % 4}"})
            pipe.xadd(
                redis_names.recent_requests(shard), {ENTRY_FIELD: entry_value(fields)}, entry_id
            )
            expected.append(((1_000 + index // 2, shard), f"req_{index}", f"u{index % 4}"))
        await pipe.execute()
    expected.sort(reverse=True)
    for filters in (RecentFilter(), RecentFilter(user_id="u1")):
        pages = await all_pages(redis, filters, limit=limit, scan_budget=scan_budget, shards=shards)
        wanted = [rid for _, rid, user in expected if filters.user_id in (None, user)]
        assert request_ids(pages) == wanted
        assert pages[-1].reached_end and pages[-1].next_before is None


@pytest.mark.parametrize(("limit", "ids"), [(1, 100), (2, 100), (3, 100), (499, 600), (500, 600)])
async def test_ids_tied_in_all_three_shards_page_each_row_once(redis, limit: int, ids: int):
    """Every id in all three windows (600: ties of three, more than a READ_COUNT per shard): a
    page may end on any member of a tie, and the next one starts at the member after it, by
    (id, shard) newest first; the cursor names the shard."""
    shards = 3
    async with redis.pipeline(transaction=False) as pipe:
        for seq in range(ids):
            for shard in range(shards):
                fields = slim_fields({"request_id": f"req_{seq}_{shard}"})
                pipe.xadd(
                    redis_names.recent_requests(shard),
                    {ENTRY_FIELD: entry_value(fields)},
                    f"7000-{seq}",
                )
        await pipe.execute()
    pages = await all_pages(redis, RecentFilter(), limit=limit, shards=shards)
    expected = [f"req_{seq}_{shard}" for seq in reversed(range(ids)) for shard in (2, 1, 0)]
    assert request_ids(pages) == expected
    last = pages[0].rows[-1]
    assert pages[0].next_before == f"{last.id}.{last.request_id.rsplit('_', 1)[1]}"
    single = await all_pages(redis, RecentFilter(), limit=limit)  # EVENT_SHARDS=1: shard 0's
    assert request_ids(single) == [f"req_{seq}_0" for seq in reversed(range(ids))]


async def test_three_shards_windows_from_their_rollups_list_every_counted_line_once(
    redis, tmp_path
):
    """Windows as three rollups write them (ids of one Redis clock in three streams, which can
    tie): the pages over them list every line of the three files once, each shard's newest
    first, and the whole newest first by entry id."""
    shards = 3
    lines = record_lines(900, seed=5)
    by_shard: dict[int, list[bytes]] = {shard: [] for shard in range(shards)}
    for line in lines:
        by_shard[shard_of(orjson.loads(line)["request_id"], shards)].append(line)
    paths = {k: tmp_path / ("events.jsonl" if k == 0 else f"events-{k}.jsonl") for k in by_shard}
    for part in range(3):  # interleaved: the windows' ids mix over time
        for shard, mine in by_shard.items():
            with paths[shard].open("ab") as file:
                file.writelines(mine[part::3])
            await Rollup(redis, paths[shard], 3650, shard=shard, recent_max=10_000).catch_up()
    pages = await all_pages(redis, RecentFilter(), limit=37, shards=shards)
    rows = [row for page in pages for row in page.rows]
    listed = [row.request_id for row in rows]
    assert sorted(listed) == sorted(orjson.loads(line)["request_id"] for line in lines)
    assert len(set(listed)) == len(lines)
    stream_ids = [tuple(map(int, row.id.split("-"))) for row in rows]
    assert stream_ids == sorted(stream_ids, reverse=True)
    for shard in range(shards):
        window = await redis.xrange(redis_names.recent_requests(shard))
        ids = [RecentRequest.from_entry(*entry).request_id for entry in window]
        assert len(ids) == len(by_shard[shard]), "the window holds every line of its shard"
        assert [rid for rid in listed if rid in set(ids)] == ids[::-1]
