"""GET /v1/me/usage: a key holder's own usage today and this month (UTC), and what is used and
left of every limit and budget that applies to their key, authenticated by the key itself
(Authorization: Bearer or x-api-key, as every /v1 route).

Only this key's data: the usage aggregates filtered to its key_id (the same read and report as
GET /admin/usage), its own limits and budgets, and its user's budgets as the user's total spend,
never another key's usage or details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from proxy_service.allowances import budget_views, budgets_of_record, token_limits
from proxy_service.auth import authenticate
from proxy_service.deps import State
from proxy_service.routes.usage import read_cells
from shared.keys import utc_now
from shared.usage import Cell, Tally
from shared.usage_query import UsageQuery, build_query

router = APIRouter(tags=["usage"])


@router.get("/v1/me/usage")
async def my_usage(request: Request, state: State) -> dict[str, Any]:
    _, key = authenticate(request.headers, state.keys)
    user = state.keys.user(key.user_id)
    now = utc_now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = _query(day_start, key.key_id, now)
    month = _query(day_start.replace(day=1), key.key_id, now)
    cells = await read_cells(state.redis, month, state.settings.event_shards)
    budgets = [
        *budgets_of_record("key", key.key_id, key),
        *budgets_of_record("user", key.user_id, user),
    ]
    views = await budget_views(state.redis, budgets, state.settings.budget_warn_percent, now)
    return {
        "key_id": key.key_id,
        "user_id": key.user_id,
        "today": _totals(today, cells),
        "this_month": _totals(month, cells),
        "limits": await token_limits(state.redis, key, now),
        "budgets": {
            "key": views.get(("key", key.key_id), {}),
            "user": views.get(("user", key.user_id), {}),
        },
    }


def _query(since: datetime, key_id: str, now: datetime) -> UsageQuery:
    return build_query(
        since=str(int(since.timestamp())),
        until=None,
        group_by="key",
        filters={"key_id": key_id},
        now_ms=int(now.timestamp() * 1000),
    )


def _totals(query: UsageQuery, cells: list[tuple[Cell, dict[bytes, bytes]]]) -> dict[str, Any]:
    """The query's window and the summary of its cells (those of the month, read once)."""
    report = query.report(query.fold(cells, Tally.add_fields))
    return {"since": report["since"], "until": report["until"], **report["totals"]}
