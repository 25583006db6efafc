"""Random usage records with awkward cases, and the report they should give, computed here the
plain way (lists and sorting, no histograms, Decimal sums of the costs) to check the
aggregation code against."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from logger_service.records import priced
from shared.prices import money_text, parse_table
from shared.usage_split import split_usage

HOUR = 3_600_000
T0 = 1_767_225_600_000
"""2026-01-01T00:00:00Z."""
USERS = {"alice": ["key_a1", "key_a2"], "bob": ["key_b1"], "carol": ["key_c1"], "dave": ["key_d1"]}
MODELS = ["gpt-4o", "claude-sonnet-4", "deepseek-chat", "local-llm", None]
PRICE_FILE = b"""
[models."gpt-4o"]
input = "2.5"
output = "10"
cache_read = "1.25"
aliases = ["m"]

[models."claude-sonnet-4"]
input = "3"
output = "15"
cache_read = "0.3"
cache_write_5m = "3.75"
cache_write_1h = "6"

[[models."claude-sonnet-4".tiers]]
above_input_tokens = 4000
input = "6"
output = "22.5"

[models."local-*"]
free = true
"""
"""gpt-4o (and the poison events' `m`) and claude-sonnet-4 priced, local-llm free, the rest
unpriced; no rate has more than three decimals, so every cost is a whole number of nano-USD."""
PRICES = parse_table(PRICE_FILE)
SPLIT_COUNTERS = {
    "uncached_input_tokens": "input",
    "cache_read_tokens": "cache_read",
    "cache_write_5m_tokens": "cache_write_5m",
    "cache_write_1h_tokens": "cache_write_1h",
    "reasoning_tokens": "reasoning",
}
APPS = ["claude-code", "openai-python-sdk", "curl"]
FIELD_OF = {"user": "user_id", "key": "key_id", "model": "model", "client_app": "client_app"}


def random_records(count: int, seed: int = 1, start_ms: int = T0, hours: int = 72) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for index in range(count):
        user = rng.choice(list(USERS))
        status = rng.choice([200] * 8 + [429, 500])
        error = None if status == 200 and rng.random() < 0.98 else "boom"
        latency = rng.choice([0, 1, 7, rng.randint(20, 400), rng.randint(400, 90_000)])
        usage = None
        if rng.random() < 0.9:
            usage = {
                "prompt_tokens": rng.randint(0, 5000),
                "completion_tokens": rng.randint(0, 900),
                "total_tokens": rng.randint(0, 6000),
            }
            if rng.random() < 0.5:
                usage["cached_tokens"] = rng.randint(0, 3000)
            if rng.random() < 0.3:
                usage["cache_write_tokens"] = rng.randint(0, 2000)
                usage["cache_write_1h_tokens"] = rng.randint(0, usage["cache_write_tokens"])
            if rng.random() < 0.3:
                usage["reasoning_tokens"] = rng.randint(0, usage["completion_tokens"])
        record = {
            "request_id": f"req_{seed}_{index}",
            "client_app": rng.choice(APPS),
            "user_id": user,
            "key_id": rng.choice(USERS[user]),
            "model": rng.choice(MODELS),
            "started_at_ms": start_ms + rng.randrange(hours * HOUR),
            "latency_ms": latency,
            "status_code": status,
            "error": error,
            "prompt": {"messages": [{"role": "user", "content": "x" * rng.randint(0, 300)}]},
            "response": None,
            "usage": usage,
        }
        if rng.random() < 0.8:  # else written before records were priced: neither field
            priced(record, PRICES)
        records.append(record)
    records.append({"request_id": f"malformed-{seed}", "error": "malformed event: no json"})
    return records


def lines_of(records: list[dict]) -> list[bytes]:
    return [orjson.dumps(record) + b"\n" for record in records]


def expected_report(
    records: list[dict],
    *,
    since_ms: int,
    until_ms: int,
    group_by: str,
    filters: dict[str, str] | None = None,
) -> dict[tuple, dict[str, Any]]:
    """Group key -> counters and exact nearest-rank latency percentiles, for hour-aligned
    since/until."""
    members: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        started = record.get("started_at_ms")
        if started is None or not since_ms <= started < until_ms:
            continue
        if any(record.get(name) != value for name, value in (filters or {}).items()):
            continue
        key = tuple(_key_part(record, by) for by in group_by.split(","))
        members[key].append(record)
    return {key: summarise(group) for key, group in members.items()}


def summarise(records: list[dict]) -> dict[str, Any]:
    def tokens(name: str) -> int:
        return sum((record["usage"] or {}).get(name, 0) for record in records)

    def split(record: dict) -> dict[str, int]:
        if "tokens" in record:
            return record["tokens"] or dict.fromkeys(SPLIT_COUNTERS.values(), 0)
        return split_usage(record["usage"])

    costs = [record["cost"] for record in records if "cost" in record]
    latencies = sorted(record["latency_ms"] for record in records)
    return {
        "requests": len(records),
        "errors": sum(1 for r in records if r["error"] is not None or r["status_code"] >= 400),
        "input_tokens": tokens("prompt_tokens"),
        "output_tokens": tokens("completion_tokens"),
        "cache_tokens": tokens("cached_tokens"),
        "total_tokens": tokens("total_tokens"),
        **{
            counter: sum(split(record)[category] for record in records)
            for counter, category in SPLIT_COUNTERS.items()
        },
        "unpriced_requests": sum(cost["status"] == "unpriced" for cost in costs),
        "cost_usd": money_text(
            sum((Decimal(cost["usd"]) for cost in costs if cost["usd"] is not None), Decimal(0))
        ),
        "latency_ms": {f"p{p}": nearest_rank(latencies, p) for p in (50, 90, 99)},
    }


def nearest_rank(ordered: list[int], percent: int) -> int:
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def _key_part(record: dict, by: str) -> str | None:
    if by == "day":
        return datetime.fromtimestamp(record["started_at_ms"] / 1000, UTC).strftime("%Y-%m-%d")
    return record[FIELD_OF[by]]


def assert_matches(report: dict[str, Any], expected: dict[tuple, dict[str, Any]]) -> None:
    """Counters exactly; latency percentiles within the histogram's 3%."""
    got = {tuple(group["key"].values()): group for group in report["groups"]}
    assert set(got) == set(expected)
    for key, want in expected.items():
        _assert_summary(got[key], want)
    _assert_summary(report["totals"], _merged(expected))


def _merged(expected: dict[tuple, dict[str, Any]]) -> dict[str, Any]:
    names = ["requests", "errors", "input_tokens", "output_tokens", "cache_tokens", "total_tokens"]
    names += [*SPLIT_COUNTERS, "unpriced_requests"]
    merged = {name: sum(group[name] for group in expected.values()) for name in names}
    usd = sum((Decimal(group["cost_usd"]) for group in expected.values()), Decimal(0))
    return {**merged, "cost_usd": money_text(usd)}


def _assert_summary(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        if name != "latency_ms":
            assert got[name] == value, (name, got, want)
    for name, exact in want.get("latency_ms", {}).items():
        assert abs(got["latency_ms"][name] - exact) <= 0.03 * exact + 0.5, (name, got, want)
