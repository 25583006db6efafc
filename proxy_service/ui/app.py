"""The dashboard's two mounted apps, /ui (operators) and /me (key holders): their routes,
static files, security headers on every response, and errors as pages, not JSON."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from proxy_service.errors import ProxyError
from proxy_service.ui import login_pages, me_pages, pages
from proxy_service.ui.access import (
    COOKIES,
    HOMES,
    LoginRequired,
    clear_session_cookie,
    login_location,
)
from proxy_service.ui.render import page
from proxy_service.ui.security import SecurityHeaders
from shared.redis_client import REDIS_FAILURES

log = logging.getLogger(__name__)


def _error_page(request: Request, status: int, message: str) -> Response:
    area = HOMES["me"] if request.url.path.startswith("/me") else HOMES["admin"]
    return page(
        request,
        "error.html",
        status=status,
        code=status,
        reason=HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
        message=message,
        back=area,
    )


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, error: LoginRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            response: Response = RedirectResponse(login_location(error.role, request), 303)
        else:
            response = _error_page(request, 401, "Your session has ended: sign in again.")
        if error.role in COOKIES and request.cookies.get(COOKIES[error.role]):
            clear_session_cookie(response, error.role)
        return response

    @app.exception_handler(ProxyError)
    async def proxy_error(request: Request, error: ProxyError) -> Response:
        return _error_page(request, error.status, error.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return _error_page(request, error.status_code, str(error.detail))

    async def redis_error(request: Request, error: Exception) -> Response:
        log.warning("dashboard: Redis unavailable on %s: %s", request.url.path, error)
        return _error_page(request, 503, "Redis does not answer; retry shortly.")

    for failure in REDIS_FAILURES:  # a cluster's RedisClusterException is no RedisError
        app.add_exception_handler(failure, redis_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("dashboard: unhandled %s on %s", type(error).__name__, request.url.path)
        return _error_page(request, 500, "Internal error: it was logged.")


def _mounted() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders)
    _install_error_pages(app)
    return app


def create_ui_apps() -> tuple[FastAPI, FastAPI]:
    """(the app to mount at /ui, the one to mount at /me)."""
    ui = _mounted()
    ui.include_router(login_pages.admin_router)
    ui.include_router(pages.router)
    ui.mount("/static", StaticFiles(packages=[("proxy_service.ui", "static")]), name="static")
    me = _mounted()
    me.include_router(login_pages.me_router)
    me.include_router(me_pages.router)
    return ui, me
