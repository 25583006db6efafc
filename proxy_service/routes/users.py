"""User settings under x-admin-token: money budgets over all of a user's keys together.

A user is the `user_id` of their keys; settings can be given before the user has a key. They
are stored and announced like key changes (in force here at once and on every replica within
the key sync's bound, persisted in keys.json's `users`), and a user left with no setting has no
record.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from proxy_service.deps import AdminState
from proxy_service.errors import InvalidRequest, ProxyError
from proxy_service.key_admin import budgets_shown
from proxy_service.routes.admin import answer
from proxy_service.state import ProxyState
from shared.budgets import BudgetUsd
from shared.users import MAX_USER_ID_CHARS, UserSettings

router = APIRouter(prefix="/admin", tags=["admin"])


class PatchUser(BaseModel):
    """Only the fields sent change; null clears a budget."""

    model_config = ConfigDict(extra="forbid")

    budget_usd_daily: BudgetUsd | None = None
    budget_usd_monthly: BudgetUsd | None = None


async def user_views(state: ProxyState, user_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Every user (with a key or settings), or those of `user_ids`: settings, key ids, budgets."""
    records = await state.key_writer.all_records()
    settings = {user.user_id: user for user in await state.key_writer.all_users()}
    keys: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r.key_id):
        if not record.superseded:
            keys.setdefault(record.user_id, []).append(record.key_id)
    wanted = sorted(keys.keys() | settings.keys()) if user_ids is None else user_ids
    budgets = await budgets_shown(state, "user", [(uid, settings.get(uid)) for uid in wanted])
    views = []
    for user_id in wanted:
        own = settings.get(user_id) or UserSettings(user_id=user_id)
        views.append(
            {**own.model_dump(), "key_ids": keys.get(user_id, []), "budgets": budgets[user_id]}
        )
    return views


async def known_user(state: ProxyState, user_id: str) -> dict[str, Any]:
    """The user's view; 404 for an id with neither a key nor a budget (a stored record always
    has one)."""
    (view,) = await user_views(state, [user_id])
    if not view["key_ids"] and not view["budgets"]:
        raise ProxyError(f"no user {user_id[:MAX_USER_ID_CHARS]!r}: no key, no budget", status=404)
    return view


@router.get("/users")
async def list_users(state: AdminState) -> dict[str, list[dict[str, Any]]]:
    return {"users": await user_views(state)}


@router.get("/users/{user_id}")
async def get_user(user_id: str, state: AdminState) -> dict[str, Any]:
    return await known_user(state, user_id)


@router.patch("/users/{user_id}")
async def patch_user(user_id: str, body: PatchUser, state: AdminState) -> JSONResponse:
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidRequest(f"user_id: at most {MAX_USER_ID_CHARS} characters")
    current = await state.key_writer.user(user_id)
    fields = current.model_dump(exclude={"user_id"}) if current else {}
    fields.update({name: getattr(body, name) for name in body.model_fields_set})
    updated = UserSettings(user_id=user_id, **fields)
    version = await state.key_writer.change(
        users={user_id: updated if updated.has_budget else None}
    )
    (view,) = await user_views(state, [user_id])
    return await answer(state, version, {"user": view})


@router.delete("/users/{user_id}")
async def clear_user(user_id: str, state: AdminState) -> JSONResponse:
    """Clear the user's settings (their keys stay as they are)."""
    if await state.key_writer.user(user_id) is None:
        raise ProxyError(f"no settings for user {user_id[:MAX_USER_ID_CHARS]!r}", status=404)
    version = await state.key_writer.change(users={user_id: None})
    return await answer(state, version, {"cleared": user_id})
