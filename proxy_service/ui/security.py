"""What every dashboard response carries, and the checks every state-changing request passes.

Headers: a Content-Security-Policy with no inline script or style and nothing from another
origin (the pages load only /ui/static), no framing, no referrer, no MIME sniffing, and no
caching of pages (one shows a new key's secret).

A POST is accepted only from this origin (`Sec-Fetch-Site: same-origin`, or an `Origin` whose
host is the request's Host) and, once signed in, with the session's CSRF token: SameSite=Strict
cookies already keep other sites' forms out; these two hold where a browser's SameSite would not.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy_service.errors import ProxyError

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
UI_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
NO_STORE = (b"cache-control", b"no-store")
STATIC_CACHE = (b"cache-control", b"public, max-age=3600")


class Forbidden(ProxyError):
    status = 403
    code = "forbidden"


class SecurityHeaders:
    """ASGI middleware of the dashboard's apps: UI_HEADERS on every response (pages, static
    files, redirects, errors), `no-store` on all but the static files."""

    def __init__(self, app: ASGIApp, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = (
            scope["path"].removeprefix(scope.get("root_path", "")).startswith(self.static_prefix)
        )
        added = [*UI_HEADERS, STATIC_CACHE if static else NO_STORE]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in added}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_same_origin(headers: Headers) -> None:
    """Forbidden unless the request comes from a page of this origin."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site != "same-origin":
            raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site[:32]})")
        return
    origin = headers.get("origin")
    if origin is None or origin == "null":
        raise Forbidden("request refused: no Origin header (send it from the dashboard's pages)")
    if urlsplit(origin).netloc != headers.get("host", ""):
        raise Forbidden("cross-origin request refused (Origin does not match Host)")


def check_csrf(expected: str, given: str | None) -> None:
    """Forbidden unless the form carried the session's token (compared in constant time)."""
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
