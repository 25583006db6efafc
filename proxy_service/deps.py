"""Access to the process state from handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from proxy_service.auth import check_admin_token
from proxy_service.state import ProxyState


def proxy_state(request: Request) -> ProxyState:
    return request.app.state.proxy


def require_admin(
    request: Request, x_admin_token: Annotated[str | None, Header()] = None
) -> ProxyState:
    state = proxy_state(request)
    check_admin_token(x_admin_token, state.settings.admin_token.get_secret_value())
    return state


State = Annotated[ProxyState, Depends(proxy_state)]
AdminState = Annotated[ProxyState, Depends(require_admin)]
