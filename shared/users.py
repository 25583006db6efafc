"""A user's own settings: what applies to all of a user's keys together (money budgets, each the
sum of their keys' spend). Users are otherwise just the `user_id` of their keys; a user with no
settings has no record. Kept in Redis (USERS_HASH) beside the keys and in keys.json's `users`."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.budgets import BudgetUsd, budgets_of

MAX_USER_ID_CHARS = 256


class UserSettings(BaseModel):
    """Unknown fields are refused: a misspelt budget in a hand-edited keys.json must not pass
    as no budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = Field(min_length=1, max_length=MAX_USER_ID_CHARS)
    budget_usd_daily: BudgetUsd | None = None
    budget_usd_monthly: BudgetUsd | None = None

    @property
    def has_budget(self) -> bool:
        return any(budgets_of(self))

    def to_redis(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude={"user_id"}, exclude_none=True))

    @classmethod
    def from_redis(cls, user_id: str, raw: bytes | str) -> UserSettings:
        return cls(user_id=user_id, **orjson.loads(raw))

    def to_file_entry(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)
