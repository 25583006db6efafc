"""Money budgets: how an amount of USD is written, checked and counted. Pure.

A budget is a decimal amount of USD, given as a string or a number and kept as a string (never a
float: 0.1 is not exact). Spend counters hold integer nano-USD, the unit the usage aggregates add
(shared/prices.py `nano_usd`), so a budget has at most nine decimals and converts exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer

from shared.prices import NANO, money_text

MAX_BUDGET_USD = Decimal(1_000_000)
"""Per period: far above any one key's spend, and 10**15 nano-USD stays exact in Redis' Lua
(doubles, exact to 2**53)."""
MAX_CHARGED_NANO = 2**53
"""Most nano-USD one request is charged: far above any budget (10**15 at most), so a larger cost
(an upstream reporting absurd counts) still refuses the next request, and the counters' INCRBY,
exact in Lua to 2**53 and failing past 2**63, can never overflow."""
BUDGET_FIELDS = ("budget_usd_daily", "budget_usd_monthly")
Period = Literal["daily", "monthly"]
PERIOD_OF: dict[str, Period] = {"budget_usd_daily": "daily", "budget_usd_monthly": "monthly"}

BudgetUsd = Annotated[
    Decimal,
    Field(gt=0, le=MAX_BUDGET_USD, decimal_places=9),
    PlainSerializer(money_text, return_type=str),
]
"""USD, more than 0 and at most MAX_BUDGET_USD, to the nano-dollar; written as a decimal string."""


def to_nano(usd: Decimal | None) -> int:
    """A budget in nano-USD; 0 for none (as the limit scripts read it)."""
    return 0 if usd is None else int(usd * NANO)


def budgets_of(record: Any) -> Iterator[tuple[str, Decimal]]:
    """(field, amount) of each budget a key or user record has set."""
    for name in BUDGET_FIELDS:
        amount = getattr(record, name, None)
        if amount is not None:
            yield name, amount
