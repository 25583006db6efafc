"""Signing in and out: the admin with ADMIN_TOKEN at /ui/login, a key holder with their API key
at /me/login. The secret is read from the form once, compared, and never stored, echoed or
logged; the browser gets only a session cookie."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from proxy_service.deps import proxy_state
from proxy_service.state import ProxyState
from proxy_service.ui.access import (
    COOKIES,
    HOMES,
    LOGIN_PAGES,
    admin_binding,
    admin_session,
    clear_session_cookie,
    me_session,
    read_form,
    safe_next,
    set_session_cookie,
    usable_key,
)
from proxy_service.ui.render import page
from proxy_service.ui.security import check_csrf, check_same_origin
from proxy_service.ui.sessions import Role, SessionStore
from proxy_service.ui.throttle import LoginThrottle
from shared.keys import KeyRecord, hash_api_key

log = logging.getLogger(__name__)

admin_router = APIRouter()
me_router = APIRouter()

FORMS: dict[Role, dict[str, str]] = {
    "admin": {
        "heading": "Sign in to the dashboard",
        "label": "Admin token",
        "field": "token",
        "hint": "The ADMIN_TOKEN of the gateway's .env. The browser keeps only a session.",
    },
    "me": {
        "heading": "My usage",
        "label": "Your API key",
        "field": "api_key",
        "hint": "Shows only this key's limits and usage. Nobody else's.",
    },
}


def _login_page(request: Request, role: Role, status: int = 200, error: str | None = None):
    return page(
        request,
        "login.html",
        status=status,
        action=LOGIN_PAGES[role],
        next=safe_next(role, request.query_params.get("next")),
        error=error,
        **FORMS[role],
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _login(request: Request, role: Role) -> Response:
    """Same origin, not throttled, right secret: a new session; else the form again."""
    check_same_origin(request.headers)
    state = proxy_state(request)
    throttle = LoginThrottle(state.redis, state.settings.ui_login_failures_per_minute)
    address = _address(request)
    wait = await throttle.retry_after(address)
    if wait is not None:
        response = _login_page(
            request, role, 429, f"Too many failed sign-ins from this address: wait {wait} s."
        )
        response.headers["retry-after"] = str(wait)
        return response
    form = await read_form(request)
    secret = form.get(FORMS[role]["field"], "")
    opened = await _open(state, role, secret)
    if opened is None:
        await throttle.failed(address, LOGIN_PAGES[role])
        return _login_page(request, role, 401, "That did not work: check it and try again.")
    session_id, max_age = opened
    response = RedirectResponse(safe_next(role, form.get("next")), status_code=303)
    set_session_cookie(response, role, session_id, max_age)
    log.info("%s session opened from %s", role, address)
    return response


async def _open(state: ProxyState, role: Role, secret: str) -> tuple[str, int] | None:
    """(session id, cookie lifetime) for a right secret; None otherwise."""
    settings = state.settings
    store = SessionStore(state.redis)
    if role == "admin":
        current = settings.admin_token.get_secret_value()
        if not hmac.compare_digest(secret.encode(), current.encode()):
            return None
        max_age = settings.ui_session_max_seconds
        idle = settings.ui_session_idle_seconds
        return await store.open("admin", admin_binding(state), idle=idle, max_age=max_age), max_age
    key: KeyRecord | None = usable_key(state, hash_api_key(secret.strip())) if secret else None
    if key is None or key.superseded:
        return None
    max_age = settings.ui_me_session_seconds
    session_id = await store.open(
        "me", key.key_hash, idle=max_age, max_age=max_age, key_id=key.key_id
    )
    return session_id, max_age


async def _logout(request: Request, role: Role) -> Response:
    """End the session server-side (a copy of the cookie is worth nothing after this)."""
    check_same_origin(request.headers)
    signed = await (admin_session if role == "admin" else me_session)(request)
    check_csrf(signed.session.csrf, (await read_form(request)).get("csrf"))
    await SessionStore(signed.state.redis).close(signed.session_id)
    response = RedirectResponse(LOGIN_PAGES[role], status_code=303)
    clear_session_cookie(response, role)
    return response


async def _already(request: Request, role: Role) -> bool:
    state = proxy_state(request)
    return await SessionStore(state.redis).get(request.cookies.get(COOKIES[role]), role) is not None


@admin_router.get("/login")
async def admin_login_form(request: Request) -> Any:
    if await _already(request, "admin"):
        return RedirectResponse(HOMES["admin"], status_code=303)
    return _login_page(request, "admin")


@admin_router.post("/login")
async def admin_login(request: Request) -> Response:
    return await _login(request, "admin")


@admin_router.post("/logout")
async def admin_logout(request: Request) -> Response:
    return await _logout(request, "admin")


@me_router.get("/login")
async def me_login_form(request: Request) -> Any:
    return _login_page(request, "me")


@me_router.post("/login")
async def me_login(request: Request) -> Response:
    return await _login(request, "me")


@me_router.post("/logout")
async def me_logout(request: Request) -> Response:
    return await _logout(request, "me")
