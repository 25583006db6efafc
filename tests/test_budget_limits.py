"""Money budgets in the limit scripts, on a real Redis: admitted while the spend is below the
budget, refused at it (key and user, day and month) with the wait to the period's end; charged
only where a budget is set, on counters named by period that expire; the wait of the longest
refusing limit; Redis down as LIMITS_FAIL_OPEN says; and what the views read back."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from proxy_service.allowances import Budget, budget_views, token_limits
from proxy_service.limits import Limiter, LimitsUnavailable, RateLimited, seconds_to_period_ends
from proxy_service.spend import charged_nano
from shared.budgets import MAX_CHARGED_NANO
from shared.keys import KeyRecord, hash_api_key
from shared.prices import parse_table
from shared.redis_names import limit_keys, spend_key
from shared.usage_split import split_usage
from shared.users import UserSettings

CENT = 10_000_000
"""$0.01 in nano-USD."""


def key(name: str, user: str = "ursula", **fields) -> KeyRecord:
    return KeyRecord(key_hash=hash_api_key(f"bsk-{name}-0001"), key_id=name, user_id=user, **fields)


@pytest.fixture
async def redis(redis_url, redis_client) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def limiter(redis) -> Limiter:
    return Limiter(redis, fail_open=False)


async def charged(limiter: Limiter, record: KeyRecord, user, tokens: int, nano: int) -> None:
    limiter.charge(record, user, tokens, nano)
    await asyncio.gather(*limiter._charges)


async def refusal(limiter: Limiter, record: KeyRecord, user=None) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(record, user)
    return refused.value


async def test_a_key_budget_admits_below_it_and_refuses_at_it(limiter, redis):
    record = key("daily", budget_usd_daily=Decimal("0.03"))
    for _ in range(3):
        await limiter.admit(record, None)
        await charged(limiter, record, None, 18, CENT)
    refused = await refusal(limiter, record)
    assert refused.limit == "budget_usd_daily" and refused.status == 429
    assert refused.message.startswith("budget_usd_daily reached for this API key; retry after")
    to_midnight, _ = seconds_to_period_ends(datetime.now(UTC))
    assert abs(int(refused.headers["retry-after"]) - to_midnight) <= 2
    now = datetime.now(UTC)
    counter = spend_key("daily", "ursula", "daily", now)
    assert counter == f"b23:{{u:ursula}}:spend:d:{now:%Y%m%d}:key:daily"
    assert int(await redis.get(counter)) == 3 * CENT
    assert 86400 < await redis.ttl(counter) <= 2 * 86400


async def test_one_request_short_of_the_budget_is_admitted(limiter):
    record = key("short", budget_usd_monthly=Decimal("0.01"))
    await charged(limiter, record, None, 0, CENT - 1)
    await limiter.admit(record, None)  # 1 nano-dollar left: admitted, and may overshoot
    await charged(limiter, record, None, 0, CENT)
    refused = await refusal(limiter, record)
    assert refused.limit == "budget_usd_monthly"
    _, to_month_end = seconds_to_period_ends(datetime.now(UTC))
    assert abs(int(refused.headers["retry-after"]) - to_month_end) <= 2


async def test_a_user_budget_is_the_sum_of_the_users_keys(limiter, redis):
    user = UserSettings(user_id="ursula", budget_usd_daily=Decimal("0.02"))
    first, second = key("first"), key("second")
    await limiter.admit(first, user)
    await charged(limiter, first, user, 18, CENT)
    await limiter.admit(second, user)
    await charged(limiter, second, user, 18, CENT)
    for record in (first, second):
        refused = await refusal(limiter, record, user)
        assert refused.limit == "user_budget_usd_daily"
        assert refused.message.startswith("budget_usd_daily of this API key's user reached")
    await limiter.admit(key("other", user="olive"), None)  # another user's key: not counted
    now = datetime.now(UTC)
    assert int(await redis.get(spend_key("daily", "ursula", None, now))) == 2 * CENT
    assert await redis.get(spend_key("daily", "ursula", "first", now)) is None  # no key budget
    assert await redis.ttl(spend_key("daily", "ursula", None, now)) > 86400


async def test_the_longest_wait_of_the_refusing_limits_is_answered(limiter):
    record = key("both", budget_usd_daily=Decimal("0.01"), budget_usd_monthly=Decimal("0.01"))
    await charged(limiter, record, None, 0, CENT)
    refused = await refusal(limiter, record)
    assert refused.limit == "budget_usd_monthly"  # the day ending would not let it through


async def test_a_refused_request_takes_nothing_from_the_rpm_allowance(limiter):
    record = key("rpm", rpm_limit=1, budget_usd_daily=Decimal("0.01"))
    await charged(limiter, record, None, 0, CENT)
    for _ in range(3):
        assert (await refusal(limiter, record)).limit == "budget_usd_daily"


async def test_nothing_is_counted_without_a_budget(limiter, redis):
    record = key("plain", tpm_limit=1000)
    await charged(limiter, record, None, 18, CENT)
    names = [name.decode() for name in await redis.keys("*")]
    assert names == [limit_keys("plain", "ursula", datetime.now(UTC))[1]], names  # tpm only


async def test_keys_without_limits_or_budgets_never_touch_redis():
    dead = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    limiter = Limiter(dead, fail_open=False)
    await limiter.admit(key("free"), UserSettings(user_id="ursula"))
    limiter.charge(key("free"), None, 18, CENT)
    assert not limiter._charges
    with pytest.raises(LimitsUnavailable):
        await limiter.admit(key("budget", budget_usd_daily=Decimal(1)), None)
    user = UserSettings(user_id="ursula", budget_usd_monthly=Decimal(1))
    with pytest.raises(LimitsUnavailable):
        await limiter.admit(key("user-budget"), user)
    await Limiter(dead, fail_open=True).admit(key("budget", budget_usd_daily=Decimal(1)), None)
    await dead.aclose()


async def test_views_read_spend_and_token_limits_back(limiter, redis):
    record = key("view", rpm_limit=10, tpm_limit=100, daily_token_quota=1000)
    await limiter.admit(record, None)
    await charged(limiter, record, None, 18, 0)
    limits = await token_limits(redis, record, datetime.now(UTC))
    assert limits["rpm_limit"] == {"limit": 10, "used": 1, "remaining": 9}
    assert limits["tpm_limit"]["used"] in (17, 18) and limits["tpm_limit"]["limit"] == 100
    assert limits["daily_token_quota"] == {"limit": 1000, "used": 18, "remaining": 982}
    assert "monthly_token_quota" not in limits

    budget = Budget("key", "view", "budget_usd_daily", Decimal("0.04"), "ursula")
    await redis.set(spend_key("daily", "ursula", "view", datetime.now(UTC)), 3 * CENT + 1)
    views = await budget_views(redis, [budget], 75, datetime.now(UTC))
    shown = views["key", "view"]["budget_usd_daily"]
    assert shown["budget_usd"] == "0.04" and shown["spent_usd"] == "0.030000001"
    assert shown["remaining_usd"] == "0.009999999" and shown["warning"] is True
    assert math.isclose(shown["percent"], 75.0) and shown["resets_at"].endswith("T00:00:00Z")
    assert (await budget_views(redis, [budget], 76, datetime.now(UTC)))["key", "view"][
        "budget_usd_daily"
    ]["warning"] is False


def test_a_request_is_charged_its_cost_under_the_first_priced_name_and_never_past_the_cap():
    table = parse_table(
        b'[models.m]\ninput = "3"\noutput = "15"\n[models."local/*"]\nfree = true\n'
    )
    tokens = split_usage({"prompt_tokens": 11, "completion_tokens": 7})
    assert charged_nano(table, ["m-2025-01-01", "m"], tokens) == 138_000  # the asked-for name
    assert charged_nano(table, ["local/llama"], tokens) == 0
    assert charged_nano(table, ["unknown"], tokens) == 0 and charged_nano(None, ["m"], tokens) == 0
    absurd = split_usage({"prompt_tokens": 2**53, "completion_tokens": 2**53})
    assert charged_nano(table, ["m"], absurd) == MAX_CHARGED_NANO < 2**63
