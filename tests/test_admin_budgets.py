"""Money budgets through the admin API, the proxy app in process on a real Redis (no logger, so
changes answer 202): key budgets beside the token limits, user settings, their validation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from proxy_service.app import create_app
from shared import redis_names
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN


@pytest.fixture
async def client(redis_url, redis_client) -> AsyncIterator[httpx.AsyncClient]:
    redis_client.set(redis_names.KEYS_LOADED, 1)
    settings = Settings(
        _env_file=None,
        admin_token=ADMIN_TOKEN,
        redis_url=redis_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        persist_confirm_timeout=0.01,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            client.headers["x-admin-token"] = ADMIN_TOKEN
            yield client


async def test_key_budgets_are_set_shown_and_cleared_as_decimal_strings(client):
    body = {"user_id": "bea", "budget_usd_daily": 0.5, "budget_usd_monthly": "10.250"}
    created = (await client.post("/admin/keys", json=body)).json()
    assert created["budget_usd_daily"] == "0.5" and created["budget_usd_monthly"] == "10.25"
    shown = (await client.get(f"/admin/keys/{created['key_id']}")).json()
    assert shown["budgets"]["budget_usd_daily"] == {
        "budget_usd": "0.5",
        "spent_usd": "0",
        "remaining_usd": "0.5",
        "percent": 0.0,
        "warning": False,
        "resets_at": shown["budgets"]["budget_usd_daily"]["resets_at"],
    }
    patched = await client.patch(
        f"/admin/keys/{created['key_id']}", json={"budget_usd_daily": None, "tpm_limit": 5}
    )
    assert patched.status_code == 202
    listed = (await client.get("/admin/keys")).json()["keys"]
    (view,) = [k for k in listed if k["key_id"] == created["key_id"]]
    assert view["budget_usd_daily"] is None and view["budget_usd_monthly"] == "10.25"
    assert set(view["budgets"]) == {"budget_usd_monthly"} and view["tpm_limit"] == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "greater than 0"),
        (-1, "greater than 0"),
        ("1000000.01", "less than or equal to 1000000"),
        ("0.0000000001", "no more than 9 decimal places"),
        ("ten", "valid decimal"),
        ("NaN", "finite number"),
        (True, "Decimal input should be"),
        ([1], "Decimal input should be"),
    ],
)
@pytest.mark.parametrize("field", ["budget_usd_daily", "budget_usd_monthly"])
async def test_bad_budgets_are_400_naming_the_field(client, field, value, expected):
    for method, path, body in (
        ("POST", "/admin/keys", {"user_id": "bea", field: value}),
        ("PATCH", "/admin/users/bea", {field: value}),
    ):
        reply = await client.request(method, path, json=body)
        assert reply.status_code == 400, reply.text
        message = reply.json()["error"]["message"]
        assert message.startswith(f"{field}: ") and expected in message, message


async def test_user_budgets_are_set_listed_and_cleared(client):
    key = (await client.post("/admin/keys", json={"user_id": "cyd"})).json()
    assert (await client.get("/admin/users/cyd")).json() == {
        "user_id": "cyd",
        "budget_usd_daily": None,
        "budget_usd_monthly": None,
        "key_ids": [key["key_id"]],
        "budgets": {},
    }
    reply = await client.patch("/admin/users/cyd", json={"budget_usd_monthly": 20})
    assert reply.status_code == 202 and reply.json()["user"]["budget_usd_monthly"] == "20"
    before_keys = await client.patch("/admin/users/dee", json={"budget_usd_daily": "1.5"})
    assert before_keys.json()["user"]["key_ids"] == []  # settings before the user's first key
    users = {u["user_id"]: u for u in (await client.get("/admin/users")).json()["users"]}
    assert set(users) == {"cyd", "dee"}
    assert users["cyd"]["budgets"]["budget_usd_monthly"]["remaining_usd"] == "20"
    assert users["dee"]["budget_usd_daily"] == "1.5" and users["dee"]["budget_usd_monthly"] is None

    await client.patch("/admin/users/cyd", json={"budget_usd_daily": "3"})
    await client.patch("/admin/users/cyd", json={"budget_usd_monthly": None})
    cyd = (await client.get("/admin/users/cyd")).json()
    assert cyd["budget_usd_daily"] == "3" and cyd["budget_usd_monthly"] is None

    assert (await client.delete("/admin/users/dee")).json()["cleared"] == "dee"
    assert (await client.get("/admin/users/dee")).status_code == 404
    assert (await client.delete("/admin/users/dee")).status_code == 404
    await client.patch("/admin/users/cyd", json={"budget_usd_daily": None})
    assert (await client.delete("/admin/users/cyd")).status_code == 404  # no budget: no record
    assert (await client.get("/admin/users/cyd")).json()["key_ids"] == [key["key_id"]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"budget_usd_weekly": "1"}, "budget_usd_weekly: Extra inputs are not permitted"),
        ({"user_id": "other"}, "user_id: Extra inputs are not permitted"),
    ],
)
async def test_user_patches_take_only_budgets(client, body, expected):
    reply = await client.patch("/admin/users/eve", json=body)
    assert reply.status_code == 400 and expected in reply.json()["error"]["message"]


async def test_user_routes_need_the_admin_token(client):
    del client.headers["x-admin-token"]
    for method, path in (
        ("GET", "/admin/users"),
        ("GET", "/admin/users/x"),
        ("PATCH", "/admin/users/x"),
        ("DELETE", "/admin/users/x"),
    ):
        reply = await client.request(method, path, json={})
        assert reply.status_code == 403, (method, path)


async def test_a_too_long_user_id_is_refused(client):
    reply = await client.patch("/admin/users/" + "u" * 257, json={"budget_usd_daily": "1"})
    assert reply.status_code == 400 and "at most 256" in reply.json()["error"]["message"]
