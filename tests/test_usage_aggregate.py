"""The pure usage aggregation (shared/usage*.py, shared/timespec.py) against totals computed the
plain way in tests/usage_data.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.timespec import parse_instant
from shared.usage import (
    COUNTERS,
    FIELD_CODES,
    LATENCY_PREFIX,
    Tally,
    bucket_latency_ms,
    latency_bucket,
    tally_records,
)
from shared.usage_layout import by_bucket, covering, first_hour
from shared.usage_query import UsageQuery, build_query
from tests.usage_data import HOUR, T0, assert_matches, expected_report, random_records

RECORDS = random_records(3000)
NOW = T0 + 100 * HOUR


def report_of(records: list[dict], **params) -> dict:
    cells: dict = {}
    tally_records(records, cells)
    query = build_query(now_ms=NOW, **{"filters": {}, "until": None, **params})
    return query.report(query.fold(cells.items()))


@pytest.mark.parametrize("group_by", ["day", "user", "key", "model", "client_app", "day,user"])
def test_totals_per_group_for_every_grouping(group_by):
    report = report_of(RECORDS, since=str(T0 // 1000), group_by=group_by)
    assert_matches(report, expected_report(RECORDS, since_ms=T0, until_ms=NOW, group_by=group_by))
    assert report["totals"]["requests"] == len(RECORDS) - 1  # the malformed one has no time


def test_filters_combine():
    filters = {"user_id": "alice", "model": "gpt-4o"}
    report = report_of(RECORDS, since=str(T0 // 1000), group_by="key", filters=filters)
    expected = expected_report(RECORDS, since_ms=T0, until_ms=NOW, group_by="key", filters=filters)
    assert_matches(report, expected)
    assert {group["key"]["key_id"] for group in report["groups"]} == {"key_a1", "key_a2"}


def test_since_and_until_select_whole_hours():
    since, until = T0 + 5 * HOUR, T0 + 29 * HOUR
    report = report_of(
        RECORDS, since=str(since // 1000), until=str(until // 1000 - 1800), group_by="user"
    )
    assert report["since"] == "2026-01-01T05:00:00Z"
    assert report["until"] == "2026-01-02T05:00:00Z"  # widened to the end of its hour
    assert_matches(
        report, expected_report(RECORDS, since_ms=since, until_ms=until, group_by="user")
    )


def test_percentiles_are_the_nearest_rank_bucket():
    tally = Tally()
    for latency in [*range(1, 101), 5000]:
        tally.add_record({"latency_ms": latency})
    assert tally.percentile(50) == bucket_latency_ms(latency_bucket(51))
    assert tally.percentile(10) == 11
    assert tally.percentile(99) == bucket_latency_ms(latency_bucket(100))
    assert tally.percentile(100) == bucket_latency_ms(latency_bucket(5000))
    assert Tally().summary()["latency_ms"] == {"p50": None, "p90": None, "p99": None}


def test_latency_resolution_is_3_percent_and_a_rounding_and_exact_below_20_ms():
    for latency in range(0, 20):
        assert bucket_latency_ms(latency_bucket(latency)) == latency
    for latency in range(20, 300_000, 7):
        assert abs(bucket_latency_ms(latency_bucket(latency)) - latency) <= 0.03 * latency + 0.5


def test_fields_round_trip_and_merge():
    cells: dict = {}
    tally_records(RECORDS, cells)
    for tally in cells.values():
        assert Tally.from_fields(tally.to_fields()) == tally
        raw = {k.encode(): str(v).encode() for k, v in tally.to_fields().items()}
        assert Tally.from_fields(raw) == tally
    merged, from_fields = Tally(), Tally()
    for tally in cells.values():
        merged.add(tally)
        from_fields.add_fields(tally.to_fields())
    assert merged == from_fields
    assert merged.counts["requests"] == len(RECORDS) - 1


def test_day_and_hour_buckets_hold_the_same_totals():
    cells: dict = {}
    tally_records(RECORDS, cells)
    bucketed = by_bucket(cells)
    for kind in ("hour", "day"):
        requests = sum(t.counts["requests"] for (b, _), t in bucketed.items() if b[0] == kind)
        assert requests == len(RECORDS) - 1


@pytest.mark.parametrize(
    ("first", "end"), [(0, 24), (5, 29), (23, 49), (24, 96), (7, 8), (30, 30), (1, 100)]
)
def test_covering_buckets_tile_the_hours_exactly(first, end):
    hours = []
    for kind, index in covering(first, end):
        start = first_hour((kind, index))
        hours += range(start, start + (24 if kind == "day" else 1))
    assert hours == list(range(first, end))
    whole_days = {h // 24 for h in range(first, end) if h % 24 == 0 and h + 24 <= end}
    assert {i for kind, i in covering(first, end) if kind == "day"} == whole_days


@given(st.integers(0, 2000), st.integers(0, 200), st.integers(-50, 2300))
def test_a_range_ending_now_reads_today_as_its_day_bucket(first, length, current):
    """Hours covered past `end` are all later than the current hour (counted nowhere yet);
    every hour of the range is covered once; never more buckets than without it."""
    end = first + length
    hours = []
    for kind, index in covering(first, end, current):
        start = first_hour((kind, index))
        hours += range(start, start + (24 if kind == "day" else 1))
    assert hours[: end - first] == list(range(first, end))
    assert all(hour > current for hour in hours[end - first :])
    assert len(covering(first, end, current)) <= len(covering(first, end))
    today = current - current % 24
    if first <= today and end > current:
        assert ("day", today // 24) in covering(first, end, current)


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-01-01", T0),
        ("2026-01-01T01:30:00Z", T0 + 90 * 60_000),
        ("2026-01-01T02:30:00+01:00", T0 + 90 * 60_000),
        ("2026-01-01T01:30", T0 + 90 * 60_000),
        ("1767225600", T0),
        ("1767225600.5", T0 + 500),
        ("now", NOW),
        ("7d", NOW - 7 * 86_400_000),
        ("24h", NOW - 24 * HOUR),
        ("30m", NOW - 30 * 60_000),
        ("2w", NOW - 14 * 86_400_000),
    ],
)
def test_instants(text, expected_ms):
    assert parse_instant(text, NOW) == expected_ms


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "not a time"),
        ({"since": "7x"}, "not a time"),
        ({"since": "1d", "until": "2d"}, "before"),
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "user,user"}, "group_by"),
        ({"filters": {"colour": "red"}}, "unknown filters"),
    ],
)
def test_bad_parameters_say_what_is_wrong(params, message):
    with pytest.raises(ValueError, match=message):
        build_query(
            **{"since": None, "until": None, "group_by": None, "filters": {}, **params}, now_ms=NOW
        )


def test_defaults_are_the_last_7_days_by_day():
    query = build_query(since=None, until=None, group_by=None, filters={}, now_ms=NOW)
    assert query == UsageQuery(
        first_hour=(NOW - 7 * 86_400_000) // HOUR, end_hour=NOW // HOUR, group_by=("day",)
    )


def test_odd_dimension_values_become_strings_and_missing_times_are_skipped():
    cells: dict = {}
    tally_records(
        [
            {"started_at_ms": 3 * HOUR, "user_id": 42, "key_id": ["k"], "status_code": 200},
            {"started_at_ms": "soon", "user_id": "x"},
            {"started_at_ms": True, "user_id": "x"},
        ],
        cells,
    )
    assert list(cells) == [(3, ("42", "['k']", None, None))]


def cost(usd: str | None, status: str = "priced") -> dict:
    return {"usd": usd, "breakdown": None, "price_version": "sha256:test", "status": status}


def test_spend_adds_priced_and_free_costs_exactly_and_counts_unpriced_apart():
    """Nano-USD sums: exact where floats are not (0.1 + 0.2), a free model adds 0 and is not
    unpriced, an unpriced one is counted and adds nothing (never $0 of spend), a record written
    before pricing (no cost) counts in neither, and a cost no tally may add (a hand-edited
    line's) counts as unpriced."""
    tally = Tally()
    for record in [
        {"cost": cost("0.1")},
        {"cost": cost("0.2")},
        {"cost": cost("0.000000001")},
        {"cost": cost("0", "free")},
        {"cost": cost(None, "unpriced")},
        {"cost": cost(None, "unpriced")},
        {"cost": None},
        {},
        {"cost": cost("1000001")},  # past MAX_COUNTED_NANO_USD
        {"cost": cost("-1")},
        {"cost": cost("lots")},
        {"cost": cost("5", "unpriced")},  # a status that says the usd is not a cost
    ]:
        tally.add_record(record)
    summary = tally.summary()
    assert summary["cost_usd"] == "0.300000001"
    assert summary["unpriced_requests"] == 6
    assert tally.counts["cost_nano"] == 300_000_001 and "cost_nano" not in summary
    many = Tally()
    for _ in range(10_000):
        many.add_record({"cost": cost("0.000000001")})
    assert many.summary()["cost_usd"] == "0.00001"


def test_token_categories_come_from_the_records_tokens_or_an_old_records_usage():
    tally = Tally()
    tokens = {
        "input": 5,
        "cache_read": 7,
        "cache_write_5m": 11,
        "cache_write_1h": 13,
        "output": 17,
        "reasoning": 3,
    }
    tally.add_record({"usage": {"prompt_tokens": 36, "completion_tokens": 17}, "tokens": tokens})
    old_usage = {"prompt_tokens": 100, "completion_tokens": 9, "cached_tokens": 30}
    tally.add_record({"usage": {**old_usage, "cache_write_tokens": 20, "reasoning_tokens": 4}})
    tally.add_record({"usage": None, "tokens": None})
    tally.add_record({"tokens": {"input": "many", "cache_read": -4, "reasoning": 2}})
    counts = tally.counts
    assert counts["uncached_input_tokens"] == 5 + 50
    assert counts["cache_read_tokens"] == 7 + 30
    assert counts["cache_write_5m_tokens"] == 11 + 20
    assert counts["cache_write_1h_tokens"] == 13
    assert counts["reasoning_tokens"] == 3 + 4 + 2
    assert counts["input_tokens"] == 136 and counts["output_tokens"] == 26


def test_field_codes_are_distinct_short_and_never_a_latency_field():
    codes = list(FIELD_CODES.values())
    assert len(set(codes)) == len(codes) == len(COUNTERS)
    assert all(len(code) == 1 and code != LATENCY_PREFIX for code in codes)
    tally = Tally()
    tally.add_record({"latency_ms": 40, "cost": cost("1.5"), "tokens": {"cache_write_1h": 8}})
    tally.add_record({"cost": cost(None, "unpriced")})
    fields = tally.to_fields()
    assert Tally.from_fields(fields) == tally
    assert Tally.from_fields({k.encode(): str(v).encode() for k, v in fields.items()}) == tally
    assert fields[FIELD_CODES["cost_nano"]] == 1_500_000_000
