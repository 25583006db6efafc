"""GET /admin/usage through the FastAPI app, on aggregates the logger's rollup wrote to a real
Redis; and the command-line report giving the same answer from the files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from logger_service.rollup import Rollup
from proxy_service.admin_guard import AdminGuard
from proxy_service.app import create_app
from proxy_service.routes import usage
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN, ROOT
from tests.usage_data import HOUR, assert_matches, expected_report, lines_of, random_records

START = (1_780_000_000_000 // HOUR) * HOUR
END = START + 72 * HOUR
RECORDS = random_records(2500, seed=7, start_ms=START, hours=72)
WINDOW = {"since": str(START // 1000), "until": str(END // 1000)}


@pytest.fixture
async def data_dir(redis_client, redis_url, tmp_path) -> Path:
    """An events file counted into Redis by the logger's rollup."""
    (tmp_path / "events.jsonl").write_bytes(b"".join(lines_of(RECORDS)))
    redis = Redis.from_url(redis_url)
    await Rollup(redis, tmp_path / "events.jsonl", 3650).catch_up()
    await redis.aclose()
    return tmp_path


@pytest.fixture
async def client(redis_url, data_dir) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy app with the route, its admin check and error handlers, but without its
    lifespan (key sync, publisher): the route needs only the settings and Redis."""
    settings = Settings(
        _env_file=None,
        admin_token=ADMIN_TOKEN,
        redis_url=redis_url,
        data_dir=data_dir,
        upstream_base_url="http://127.0.0.1:9/v1",
    )
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/admin/usage" for route in app.routes):
        app.include_router(usage.router)
    redis = Redis.from_url(redis_url)
    app.state.proxy = SimpleNamespace(settings=settings, redis=redis, admin_guard=AdminGuard())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        client.headers["x-admin-token"] = ADMIN_TOKEN
        yield client
    await redis.aclose()


async def test_needs_the_admin_token(client):
    wrong = await client.get("/admin/usage", headers={"x-admin-token": "wrong"})
    del client.headers["x-admin-token"]
    missing = await client.get("/admin/usage")
    assert wrong.status_code == missing.status_code == 403


@pytest.mark.parametrize("group_by", ["day", "user", "key", "model", "client_app"])
async def test_groups_match_the_events(client, group_by):
    reply = await client.get("/admin/usage", params={**WINDOW, "group_by": group_by})
    assert reply.status_code == 200
    body = reply.json()
    assert body["since"] == "2026-05-28T20:00:00Z" and body["group_by"] == group_by
    expected = expected_report(RECORDS, since_ms=START, until_ms=END, group_by=group_by)
    assert_matches(body, expected)


async def test_filters_and_a_window_of_hours(client):
    since, until = START + 13 * HOUR, START + 50 * HOUR
    params = {
        "since": f"{since // 1000}",
        "until": f"{until // 1000}",
        "group_by": "model",
        "user_id": "alice",
        "client_app": "curl",
    }
    body = (await client.get("/admin/usage", params=params)).json()
    filters = {"user_id": "alice", "client_app": "curl"}
    expected = expected_report(
        RECORDS, since_ms=since, until_ms=until, group_by="model", filters=filters
    )
    assert_matches(body, expected)
    assert body["filters"] == filters


@pytest.mark.parametrize(
    "params",
    [
        {"since": "last tuesday"},
        {"until": "2026-13-01"},
        {"since": "1d", "until": "2d"},
        {"group_by": "week"},
    ],
)
async def test_bad_parameters_are_400(client, params):
    reply = await client.get("/admin/usage", params=params)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_the_command_line_report_gives_the_same_answer(client, data_dir):
    params = {**WINDOW, "group_by": "user", "model": "gpt-4o"}
    from_redis = (await client.get("/admin/usage", params=params)).json()
    argv = [sys.executable, "-m", "logger_service.report", "--json", "--data-dir", str(data_dir)]
    argv += ["--since", WINDOW["since"], "--until", WINDOW["until"], "--by", "user"]
    argv += ["--model", "gpt-4o"]
    from_files = subprocess.run(argv, cwd=ROOT, capture_output=True, check=True).stdout
    assert orjson.loads(from_files) == from_redis


async def test_spend_columns_per_model_add_up_to_the_records(client):
    """Priced models' cost to the last nano-dollar; a free one costs 0 and is not unpriced; an
    unpriced one (and no model at all) is counted as such and adds no spend."""
    body = (await client.get("/admin/usage", params={**WINDOW, "group_by": "model"})).json()
    rows = {group["key"]["model"]: group for group in body["groups"]}
    assert set(rows) == {"gpt-4o", "claude-sonnet-4", "deepseek-chat", "local-llm", None}
    for model, row in rows.items():
        costs = [r["cost"] for r in RECORDS if r.get("model") == model and "cost" in r]
        usd = sum((Decimal(c["usd"]) for c in costs if c["usd"] is not None), Decimal(0))
        assert Decimal(row["cost_usd"]) == usd, model
        assert row["unpriced_requests"] == sum(c["status"] == "unpriced" for c in costs), model
        assert set(row) >= {f"{name}_tokens" for name in ("cache_read", "cache_write_1h")}
    for model in ("gpt-4o", "claude-sonnet-4"):
        assert Decimal(rows[model]["cost_usd"]) > 0 and rows[model]["unpriced_requests"] == 0
    assert (rows["local-llm"]["cost_usd"], rows["local-llm"]["unpriced_requests"]) == ("0", 0)
    for model in ("deepseek-chat", None):
        assert rows[model]["cost_usd"] == "0" and rows[model]["unpriced_requests"] > 0
    total = sum(Decimal(row["cost_usd"]) for row in rows.values())
    assert Decimal(body["totals"]["cost_usd"]) == total
