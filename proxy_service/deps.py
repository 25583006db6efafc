"""Access to the process state from handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from proxy_service.auth import check_admin_token
from proxy_service.errors import AdminForbidden
from proxy_service.state import ProxyState


def proxy_state(request: Request) -> ProxyState:
    return request.app.state.proxy


async def require_admin(
    request: Request, x_admin_token: Annotated[str | None, Header()] = None
) -> ProxyState:
    """The state for an admin route: 429 for a throttled address before the token is even
    looked at, 403 for a missing or wrong token (a wrong one counted against the address).
    Async without an await: it runs on the event loop in one go, so concurrent guesses cannot
    all pass the check before the first failure is counted (a plain def runs in a thread)."""
    state = proxy_state(request)
    address = request.client.host if request.client else "unknown"
    state.admin_guard.check(address)
    try:
        check_admin_token(x_admin_token, state.settings.admin_tokens())
    except AdminForbidden:
        if x_admin_token is not None:
            state.admin_guard.failed(address, request.scope["route"].path)
        raise
    return state


State = Annotated[ProxyState, Depends(proxy_state)]
AdminState = Annotated[ProxyState, Depends(require_admin)]
