"""Spend end to end, real processes: requests of every route through two proxies, priced by a
known table, give records whose costs are the hand-computed ones and add up to /admin/usage to
the last nano-dollar; an edited price file is picked up by the logger and both proxies without a
restart, and an invalid one is refused with the last good table kept (and shown on /metrics)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FakeUpstreamControl
from tests.fake_upstream import chunk, completion
from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, replace_file, running_system

KEY = "bsk-spend-e2e-0001"
ADMIN = {"x-admin-token": ADMIN_TOKEN}
TABLE_1 = """
[models."priced-model"]
input = "3"
output = "15"
cache_read = "0.30"
cache_write_5m = "3.75"
cache_write_1h = "6"
aliases = ["priced-alias"]

[models."local/*"]
free = true
"""
TABLE_2 = TABLE_1.replace('output = "15"', 'output = "30"')
RATES_1 = {"input": 3, "output": 15, "cache_read": "0.30", "cache_write_5m": "3.75"}
RATES_2 = {**RATES_1, "output": 30}
CACHED_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 40,
    "total_tokens": 1040,
    "prompt_tokens_details": {"cached_tokens": 800, "cache_write_tokens": 150},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
CACHED_SPLIT = {
    "input": 50,
    "cache_read": 800,
    "cache_write_5m": 150,
    "cache_write_1h": 0,
    "output": 40,
    "reasoning": 10,
}
DEFAULT_SPLIT = {**dict.fromkeys(CACHED_SPLIT, 0), "input": 11, "output": 7}


def expected_usd(split: dict[str, int], rates: dict[str, object]) -> Decimal:
    """The cost worked out here, not by shared/prices.py: tokens x rate per million."""
    total = sum(Decimal(split[c]) * Decimal(str(rate)) for c, rate in rates.items())
    return total / Decimal(1_000_000)


@pytest.fixture(scope="module")
def prices_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spend-prices") / "prices.toml"
    path.write_text(TABLE_1)
    return path


@pytest.fixture(scope="module")
def system(
    redis_url: str, fake_upstream_url: str, tmp_path_factory, prices_path: Path
) -> Iterator[System]:
    root = tmp_path_factory.mktemp("spend")
    settings = {"PRICES_FILE": str(prices_path), "PRICES_RELOAD_SECONDS": "0.2"}
    with running_system(redis_url, fake_upstream_url, root, proxies=2, **settings) as s:
        assert s.upsert(KEY, "spender").status_code == 200
        yield s


def post(url: str, path: str, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    return httpx.post(url + path, json=body, headers=headers, timeout=15)


def chat(model: str, stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def anthropic(model: str, stream: bool = False) -> dict:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


def cached_stream(model: str) -> dict:
    """A scripted chat stream whose last chunk carries CACHED_USAGE."""
    chunks = [chunk(model, {"role": "assistant", "content": "ok"}), chunk(model, {}, "stop")]
    return {"sse": [*chunks, {**chunk(model, {}), "choices": [], "usage": CACHED_USAGE}]}


def metrics(url: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def table_version(url: str) -> str | None:
    versions = [s.labels["version"] for s in metrics(url).get("b23_price_table_info", [])]
    return versions[0] if versions else None


def usage_by_model(system: System) -> dict[str, dict]:
    answer = httpx.get(system.url + "/admin/usage?group_by=model&since=1d", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return {group["key"]["model"]: group for group in answer.json()["groups"]}


def test_every_route_and_replica_prices_records_that_add_up_to_the_aggregates(
    system: System, fake_upstream: FakeUpstreamControl
) -> None:
    replicas = itertools.cycle(system.proxy_urls)
    cases = [  # (path, body, scripted upstream reply or None, expected split, model)
        ("/v1/chat/completions", chat("priced-model"), None, DEFAULT_SPLIT),
        ("/v1/chat/completions", chat("priced-model", True), None, DEFAULT_SPLIT),
        ("/v1/messages", anthropic("priced-model"), None, DEFAULT_SPLIT),
        ("/v1/messages", anthropic("priced-model", True), None, DEFAULT_SPLIT),
        ("/v1/responses", {"model": "priced-model", "input": "hi"}, None, DEFAULT_SPLIT),
        ("/v1/chat/completions", chat("priced-alias"), None, DEFAULT_SPLIT),
        (
            "/v1/chat/completions",
            chat("priced-model"),
            {"json": {**completion("priced-model"), "usage": CACHED_USAGE}},
            CACHED_SPLIT,
        ),
        (
            "/v1/chat/completions",
            chat("priced-model", True),
            cached_stream("priced-model"),
            CACHED_SPLIT,
        ),
        (
            "/v1/messages",
            anthropic("priced-model", True),
            cached_stream("priced-model"),
            CACHED_SPLIT,
        ),
        ("/v1/chat/completions", chat("local/llama"), None, DEFAULT_SPLIT),
        ("/v1/chat/completions", chat("mystery-model"), None, DEFAULT_SPLIT),
        ("/v1/messages", anthropic("mystery-model"), None, DEFAULT_SPLIT),
    ]
    ids = []
    for path, body, step, _ in cases:
        if step is not None:
            fake_upstream.script(step)
        answer = post(next(replicas), path, body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.headers.get("x-request-id") or answer.headers["request-id"])
    records = system.wait_events(len(cases))
    by_id = {record["request_id"]: record for record in records}
    by_request = [by_id[request_id] for request_id in ids]
    version = table_version(system.url)
    assert version is not None and version == table_version(system.proxy_urls[1])
    for record, (_, body, _, split) in zip(by_request, cases, strict=True):
        assert record["tokens"] == split, record
        cost = record["cost"]
        assert cost["price_version"] == version
        if body["model"].startswith("priced"):
            assert cost["status"] == "priced" and cost["priced_as"] == "priced-model"
            assert Decimal(cost["usd"]) == expected_usd(split, RATES_1)
            assert sum(map(Decimal, cost["breakdown"].values())) == Decimal(cost["usd"])
        elif body["model"] == "local/llama":
            assert cost["status"] == "free" and Decimal(cost["usd"]) == 0
        else:
            assert cost["status"] == "unpriced" and cost["usd"] is None

    def rolled_up() -> dict[str, dict] | None:
        rows = usage_by_model(system)
        return rows if sum(row["requests"] for row in rows.values()) == len(cases) else None

    rows = wait_until(rolled_up, 10, what="every record in the aggregates")
    for model, row in rows.items():
        mine = [r for r in records if r["model"] == model]
        priced = [Decimal(r["cost"]["usd"]) for r in mine if r["cost"]["usd"] is not None]
        assert Decimal(row["cost_usd"]) == sum(priced, Decimal(0)), model
        unpriced = sum(r["cost"]["status"] == "unpriced" for r in mine)
        assert row["unpriced_requests"] == unpriced, model
    assert rows["mystery-model"]["unpriced_requests"] == 2
    assert Decimal(rows["mystery-model"]["cost_usd"]) == 0  # unknown, not counted as $0 spend


def test_an_edited_price_file_is_picked_up_and_an_invalid_one_refused(
    system: System, prices_path: Path
) -> None:
    before = len(system.events())
    old = table_version(system.url)
    replace_file(prices_path, TABLE_2)  # an in-place write may be read empty: a valid table
    wait_until(
        lambda: all(table_version(url) not in (None, old) for url in system.proxy_urls),
        10,
        what="both proxies on the edited table",
    )
    new = table_version(system.url)

    def priced_with_new_table() -> dict | None:
        answer = post(system.url, "/v1/chat/completions", chat("priced-model"))
        assert answer.status_code == 200
        record = system.events()[-1]
        return record if record["cost"]["price_version"] == new else None

    record = wait_until(priced_with_new_table, 10, interval=0.3, what="the logger on it")
    assert Decimal(record["cost"]["usd"]) == expected_usd(DEFAULT_SPLIT, RATES_2)

    replace_file(prices_path, '[models."priced-model"]\ninput = 3.0\n')  # a float: refused
    for url in system.proxy_urls:
        wait_until(lambda url=url: metrics(url)["b23_price_table_ok"][0].value == 0, 10)
        found = metrics(url)
        assert found["b23_price_table_load_errors_total"][0].value == 1
        assert table_version(url) == new
    count = len(system.events())
    answer = post(system.proxy_urls[1], "/v1/chat/completions", chat("priced-model"))
    assert answer.status_code == 200
    record = system.wait_events(count + 1)[-1]
    assert record["cost"]["price_version"] == new  # the last good table, still in force
    assert Decimal(record["cost"]["usd"]) == expected_usd(DEFAULT_SPLIT, RATES_2)
    assert "price" in system.logs() and len(system.events()) > before

    replace_file(prices_path, TABLE_1)
    wait_until(lambda: metrics(system.url)["b23_price_table_ok"][0].value == 1, 10)
    assert table_version(system.url) == old
