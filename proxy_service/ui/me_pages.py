"""/me: a key holder's own page, behind a session bound to their key. Everything on it is
filtered to that key_id (usage, recent requests) or is that key's (limits, budgets) or its
user's budget total; nothing of another key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from proxy_service.allowances import budget_views, budgets_of_record, token_limits
from proxy_service.key_admin import public_view
from proxy_service.ui.access import MePage
from proxy_service.ui.reads import key_usage
from proxy_service.ui.render import page
from shared.keys import utc_now

router = APIRouter()
RECENT_ROWS = 20


@router.get("/")
async def my_page(request: Request, signed: MePage) -> Response:
    state, key, now = signed.state, signed.key, utc_now()
    assert key is not None  # a me session always has its key
    budgets = [
        *budgets_of_record("key", key.key_id, key),
        *budgets_of_record("user", key.user_id, state.keys.user(key.user_id)),
    ]
    views = await budget_views(state.redis, budgets, state.settings.budget_warn_percent, now)
    shown = {**public_view(key), "budgets": views.get(("key", key.key_id), {})}
    return page(
        request,
        "me.html",
        session=signed.session,
        key=shown,
        limits=await token_limits(state.redis, key, now),
        user_budgets=views.get(("user", key.user_id), {}),
        **await key_usage(state.redis, key.key_id, now, RECENT_ROWS, state.settings.event_shards),
    )
