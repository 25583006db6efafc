"""Money budgets end to end, real processes: two proxies, one with UNPRICED_MODELS=allow and
one with deny (the same for the priced model every other test asks for), a logger, the fake
upstream (fixed usage: 11 prompt and 7 completion tokens) and a price table that makes each
request of model `m` cost exactly $0.0025.

A budget refuses exactly at its bound across replicas, in the chat and Anthropic shapes with
retry-after; a concurrent burst straddling it admits no more than the requests in flight; a
user's budget adds up their keys; unpriced models pass or are refused as the setting says;
/v1/me/usage shows each key its own; key views and /metrics warn past BUDGET_WARN_PERCENT."""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import USAGE, completion
from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, running_system

ADMIN = {"x-admin-token": ADMIN_TOKEN}
PRICES = """
[models."m"]
input = "100"
output = "200"
"""
COST = Decimal("0.0025")
"""11 x $100/M + 7 x $200/M."""
BURST = 8
users = itertools.count()
http = httpx.Client(timeout=10)
"""One client (pool) for the module: a new client per request costs more than the request."""


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("budgets")
    (root / "prices.toml").write_text(PRICES)
    settings = {
        "PRICES_FILE": str(root / "prices.toml"),
        "MODEL_MAP": "alias-priced=m",
        "BUDGET_WARN_PERCENT": "50",
    }
    with http, running_system(redis_url, fake_upstream_url, root, 1, **settings) as system:
        system.start_proxy(UNPRICED_MODELS="deny")
        yield system


def create(system: System, **fields) -> dict:
    body = {"user_id": f"budget-user-{next(users)}", **fields}
    reply = http.post(system.url + "/admin/keys", headers=ADMIN, json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def chat(url: str, key: dict, model: str = "m") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key['api_key']}"}
    return http.post(url + "/v1/chat/completions", json=body, headers=headers)


def messages(url: str, key: dict, model: str = "m", path: str = "/v1/messages") -> httpx.Response:
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key["api_key"], "anthropic-version": "2023-06-01"}
    return http.post(url + path, json=body, headers=headers)


def me(url: str, key: dict) -> dict:
    reply = http.get(url + "/v1/me/usage", headers={"x-api-key": key["api_key"]})
    assert reply.status_code == 200, reply.text
    return reply.json()


def spent(url: str, key: dict, scope: str, budget: str) -> Decimal:
    return Decimal(me(url, key)["budgets"][scope][budget]["spent_usd"])


def wait_spent(url: str, key: dict, usd: Decimal, scope: str = "key") -> None:
    """Until the charges have landed: the budget's counter shows `usd`."""
    budget = "budget_usd_daily"
    wait_until(lambda: spent(url, key, scope, budget) == usd, 10, what=f"{usd} spent")


def samples(url: str, name: str) -> dict[tuple, float]:
    text = http.get(url + "/metrics").text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def assert_refused_by_budget(reply: httpx.Response, budget: str, shape: str) -> None:
    assert reply.status_code == 429, reply.text
    assert 1 <= int(reply.headers["retry-after"]) <= 86400
    body = reply.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    else:
        assert body["error"]["type"] == "rate_limit_exceeded"
        assert body["error"]["code"] == "rate_limit_exceeded"
    assert budget in body["error"]["message"]


def test_a_key_budget_refuses_exactly_at_its_bound_on_either_replica(system, fake_upstream):
    key = create(system, budget_usd_daily="0.01")
    a, b = system.proxy_urls
    for sent in range(1, 5):  # $0.0025 each: the 4th reaches $0.01 exactly
        url, other = (a, b) if sent % 2 else (b, a)
        reply = chat(url, key) if sent % 2 else messages(url, key)
        assert reply.status_code == 200, reply.text
        wait_spent(other, key, sent * COST)
    for url in (a, b):
        assert_refused_by_budget(chat(url, key), "budget_usd_daily", "openai")
        assert_refused_by_budget(messages(url, key), "budget_usd_daily", "anthropic")
    assert len(fake_upstream.received()) == 4
    view = http.get(f"{a}/admin/keys/{key['key_id']}", headers=ADMIN).json()
    assert view["budgets"]["budget_usd_daily"]["remaining_usd"] == "0"
    assert view["budgets"]["budget_usd_daily"]["percent"] == 100.0
    refusals = samples(b, "b23_limit_refusals_total")
    assert refusals[(("limit", "budget_usd_daily"),)] >= 2


def test_a_concurrent_burst_overshoots_by_no_more_than_the_requests_in_flight(
    system, fake_upstream
):
    key = create(system, budget_usd_daily="0.01")
    a, b = system.proxy_urls
    for url in (a, b):
        assert chat(url, key).status_code == 200
    wait_spent(a, key, 2 * COST)  # two requests of the four the budget has left
    fake_upstream.script(*[{"respond_after": 0.3, "json": completion("m")}] * BURST)
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(lambda i: chat((a, b)[i % 2], key), range(BURST)))
    admitted = sum(reply.status_code == 200 for reply in replies)
    assert {reply.status_code for reply in replies} <= {200, 429}
    assert admitted >= 2, "refused before the budget was reached"
    wait_spent(b, key, (2 + admitted) * COST)  # every admitted request charged, once
    overshoot = (2 + admitted) * COST - Decimal("0.01")
    assert overshoot <= (BURST - 1) * COST  # at most the others in flight with the last one
    for url in (a, b):
        assert_refused_by_budget(chat(url, key), "budget_usd_daily", "openai")


def test_a_user_budget_is_the_sum_of_the_users_keys(system):
    user = f"budget-user-{next(users)}"
    reply = http.patch(
        f"{system.url}/admin/users/{user}", headers=ADMIN, json={"budget_usd_daily": "0.005"}
    )
    assert reply.status_code == 200 and reply.json()["persisted"] is True
    first, second = create(system, user_id=user), create(system, user_id=user)
    a, b = system.proxy_urls
    assert chat(a, first).status_code == 200
    wait_spent(b, second, COST, scope="user")  # the second key sees its user's spend
    assert messages(b, second).status_code == 200
    wait_spent(a, first, 2 * COST, scope="user")
    for url, key in ((a, first), (b, second), (b, first)):
        refused = chat(url, key)
        assert_refused_by_budget(refused, "budget_usd_daily of this API key's user", "openai")
    usage = me(a, first)
    assert usage["budgets"] == {"key": {}, "user": usage["budgets"]["user"]}
    assert usage["budgets"]["user"]["budget_usd_daily"]["remaining_usd"] == "0"
    listed = http.get(f"{system.url}/admin/users/{user}", headers=ADMIN).json()
    assert sorted(listed["key_ids"]) == sorted([first["key_id"], second["key_id"]])
    assert listed["budgets"]["budget_usd_daily"]["spent_usd"] == "0.005"
    assert (("limit", "user_budget_usd_daily"),) in samples(b, "b23_limit_refusals_total")


def test_unpriced_models_pass_or_are_refused_as_the_setting_says(system, fake_upstream):
    key, plain = create(system, budget_usd_daily="1"), create(system)
    allow, deny = system.proxy_urls
    refusals = [
        (chat(deny, key, "unpriced"), "openai"),
        (messages(deny, key, "unpriced"), "anthropic"),
        (chat(deny, key, "alias-priced"), "openai"),  # MODEL_MAP is for the Anthropic route
    ]
    for reply, shape in refusals:
        assert reply.status_code == 403, reply.text
        assert reply.headers["x-should-retry"] == "false"
        error = reply.json()["error"]
        assert error["type"] == "permission_error" and "has no price" in error["message"]
        if shape == "openai":
            assert error["code"] == "model_unpriced"
    assert fake_upstream.received() == [], "a refused request reached the upstream"
    assert messages(deny, key, "unpriced", "/v1/messages/count_tokens").status_code == 200
    assert chat(deny, plain, "unpriced").status_code == 200  # no budget: no question asked
    assert chat(allow, key, "unpriced").status_code == 200  # served, charged nothing
    assert messages(deny, key, "alias-priced").status_code == 200  # MODEL_MAP: m, priced
    wait_spent(allow, key, COST)
    refused = samples(deny, "b23_budget_unpriced_requests_total")
    assert refused == {
        (("action", "refused"), ("model", "unpriced")): 2.0,
        (("action", "refused"), ("model", "alias-priced")): 1.0,
    }
    allowed = samples(allow, "b23_budget_unpriced_requests_total")
    assert allowed == {(("action", "allowed"), ("model", "unpriced")): 1.0}


def test_me_usage_shows_each_key_its_own(system):
    user = f"budget-user-{next(users)}"
    first = create(system, user_id=user)
    second = create(system, user_id=user, daily_token_quota=1000, rpm_limit=100)
    a, b = system.proxy_urls
    assert [chat(a, first).status_code, chat(b, first).status_code] == [200, 200]
    assert messages(b, second).status_code == 200

    def counted(key: dict, requests: int) -> dict | None:
        usage = me(a, key)
        return usage if usage["today"]["requests"] == requests else None

    mine = wait_until(lambda: counted(first, 2), 10, what="first key's usage")
    theirs = wait_until(lambda: counted(second, 1), 10, what="second key's usage")
    assert mine["key_id"] == first["key_id"] and theirs["key_id"] == second["key_id"]
    assert mine["this_month"]["requests"] == 2
    assert mine["today"]["total_tokens"] == 2 * USAGE["total_tokens"]
    assert theirs["today"]["total_tokens"] == USAGE["total_tokens"]
    assert mine["limits"] == {} and mine["budgets"] == {"key": {}, "user": {}}
    assert theirs["limits"]["daily_token_quota"] == {"limit": 1000, "used": 18, "remaining": 982}
    assert theirs["limits"]["rpm_limit"]["limit"] == 100
    assert second["key_id"] not in str(mine) and first["key_id"] not in str(theirs)
    for headers in ({}, {"x-api-key": "bsk-not-a-key-at-all"}):
        reply = http.get(a + "/v1/me/usage", headers=headers)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"


def test_key_views_and_metrics_warn_past_the_threshold(system):
    key = create(system, budget_usd_daily="0.01")  # BUDGET_WARN_PERCENT=50: two requests
    a, b = system.proxy_urls
    labels = (("id", key["key_id"]), ("period", "daily"), ("scope", "key"))
    assert chat(a, key).status_code == 200
    wait_spent(a, key, COST)
    warnings = samples(b, "b23_budgets_warning")[()]
    assert samples(b, "b23_budget_used_ratio")[labels] == 0.25
    assert me(a, key)["budgets"]["key"]["budget_usd_daily"]["warning"] is False
    assert chat(b, key).status_code == 200
    wait_spent(a, key, 2 * COST)
    assert samples(b, "b23_budget_used_ratio")[labels] == 0.5
    assert samples(a, "b23_budgets_warning")[()] == warnings + 1
    view = http.get(f"{b}/admin/keys", headers=ADMIN).json()["keys"]
    (shown,) = [k for k in view if k["key_id"] == key["key_id"]]
    assert shown["budgets"]["budget_usd_daily"]["warning"] is True
    assert shown["budgets"]["budget_usd_daily"]["percent"] == 50.0
