"""Who may see a page: the session behind the request's cookie, checked on every request
against what it is bound to, and the cookies themselves.

An admin session lives while the ADMIN_TOKEN it was opened with is still the current one; a
key holder's while their key is usable (active, not expired, not deleted or rotated past its
grace). Anything else ends the session there and then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from fastapi.responses import Response

from proxy_service.deps import proxy_state
from proxy_service.errors import ProxyError
from proxy_service.state import ProxyState
from proxy_service.ui.security import check_csrf, check_same_origin
from proxy_service.ui.sessions import Role, Session, SessionStore, token_fingerprint
from shared.keys import KeyRecord

COOKIES: dict[Role, str] = {"admin": "__Host-b23_admin", "me": "__Host-b23_me"}
"""`__Host-`: only over HTTPS (or localhost), for this host, Path=/ — no subdomain can set it."""
LOGIN_PAGES: dict[Role, str] = {"admin": "/ui/login", "me": "/me/login"}
HOMES: dict[Role, str] = {"admin": "/ui/", "me": "/me/"}
MAX_FORM_BYTES = 64 * 1024


class LoginRequired(Exception):
    """No live session: a GET goes to the login page, anything else is refused (401)."""

    def __init__(self, role: Role) -> None:
        super().__init__(role)
        self.role = role


class FormTooLarge(ProxyError):
    status = 413


@dataclass(frozen=True, slots=True)
class Signed:
    """A request with a live session."""

    state: ProxyState
    session: Session
    session_id: str
    key: KeyRecord | None = None
    """me: the key holder's key as it is now."""


def admin_binding(state: ProxyState) -> str:
    return token_fingerprint(state.settings.admin_token.get_secret_value())


def usable_key(state: ProxyState, key_hash: str) -> KeyRecord | None:
    record = state.keys.lookup(key_hash)
    return record if record is not None and record.usable(time.time()) else None


async def _signed(request: Request, role: Role) -> Signed:
    state = proxy_state(request)
    store = SessionStore(state.redis)
    session_id = request.cookies.get(COOKIES[role])
    session = await store.get(session_id, role)
    if session is None or session_id is None:
        raise LoginRequired(role)
    key = None
    if role == "admin":
        bound = session.binding == admin_binding(state)
    else:
        key = usable_key(state, session.binding)
        bound = key is not None and key.key_id == session.key_id
    if not bound:
        await store.close(session_id)
        raise LoginRequired(role)
    return Signed(state, session, session_id, key)


async def admin_session(request: Request) -> Signed:
    return await _signed(request, "admin")


async def me_session(request: Request) -> Signed:
    return await _signed(request, "me")


AdminPage = Annotated[Signed, Depends(admin_session)]
MePage = Annotated[Signed, Depends(me_session)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most MAX_FORM_BYTES; a field given twice keeps its first."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge(f"form over {MAX_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def posted_form(request: Request, signed: Signed) -> dict[str, str]:
    """The form of a state-changing request of a signed-in page: same origin, right token."""
    check_same_origin(request.headers)
    form = await read_form(request)
    check_csrf(signed.session.csrf, form.get("csrf"))
    return form


def set_session_cookie(response: Response, role: Role, session_id: str, max_age: int) -> None:
    response.set_cookie(
        COOKIES[role],
        session_id,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, role: Role) -> None:
    response.delete_cookie(COOKIES[role], path="/", secure=True, httponly=True, samesite="strict")


def login_location(role: Role, request: Request) -> str:
    """The login page, remembering a GET's page to come back to."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{LOGIN_PAGES[role]}?next={quote(back, safe='')}"


def safe_next(role: Role, value: str | None) -> str:
    """Where to go after login: a page of this role's area only, never another site."""
    home = HOMES[role]
    if not value or not value.startswith(home) or "\\" in value:
        return home
    return value
