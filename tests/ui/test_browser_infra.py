"""The browser-test machinery itself, on a tiny page served under the dashboard's CSP.

Proves: the vendored uPlot draws under `script-src 'self'; style-src 'self'`; the page-problem
detector does catch an inline script, an inline style and a dialog (so it can fail a test); a
`__Host-` cookie over http://127.0.0.1 is kept and sent back but hidden from scripts; axe-core
runs offline in the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.browser import PageProblems, axe_violations, describe_axe, serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Page

VENDOR_DIR = Path(__file__).resolve().parents[2] / "proxy_service" / "ui" / "static" / "vendor"

# The policy the dashboard sends (proxy_service/ui).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HOST_COOKIE = "__Host-t=1; Path=/; Secure; HttpOnly; SameSite=Strict"


def _html(title: str, body: str, head: str = "") -> str:
    # A data: icon: otherwise Chromium asks for /favicon.ico, and its 404 is a console error.
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{title}</title><link rel="icon" href="data:,">{head}</head>'
        f"<body><main>{body}</main></body></html>"
    )


CHART_PAGE = _html(
    "Chart",
    '<h1>Requests</h1><div id="chart"></div>'
    '<script src="/static/vendor/uPlot.iife.min.js"></script>'
    '<script src="/static/chart.js"></script>',
    head='<link rel="stylesheet" href="/static/vendor/uPlot.min.css">'
    '<link rel="stylesheet" href="/static/page.css">',
)
CHART_JS = """
const data = [
  [1700000000, 1700000060, 1700000120, 1700000180, 1700000240, 1700000300],
  [3, 7, 4, 9, 6, 12],
];
const options = {
  title: "Requests per minute",
  width: 640,
  height: 300,
  series: [{}, { label: "requests", stroke: "#1f4e99", width: 2 }],
};
new uPlot(options, data, document.getElementById("chart"));
document.body.dataset.chart = "drawn";
"""
PAGE_CSS = "body { font-family: sans-serif; margin: 2rem; color: #111; background: #fff; }\n"
BAD_PAGES = {
    "inline-script": _html("Inline", "<h1>Inline</h1><script>window.inlineRan = true;</script>"),
    "inline-style": _html("Style", '<h1 style="color: red">Inline style</h1>'),
}
DIALOG_PAGE = _html("Dialog", '<h1>Dialog</h1><script src="/static/dialog.js"></script>')


def _app() -> ASGIApp:
    async def chart(request: Request) -> Response:
        return HTMLResponse(CHART_PAGE)

    async def bad(request: Request) -> Response:
        return HTMLResponse(BAD_PAGES[request.path_params["kind"]])

    async def dialog(request: Request) -> Response:
        return HTMLResponse(DIALOG_PAGE)

    async def static(request: Request) -> Response:
        files = {
            "chart.js": (CHART_JS, "text/javascript"),
            "dialog.js": ('alert("hello");\n', "text/javascript"),
            "page.css": (PAGE_CSS, "text/css"),
        }
        text, media_type = files[request.path_params["name"]]
        return Response(text, media_type=media_type)

    async def set_cookie(request: Request) -> Response:
        response = HTMLResponse(_html("Cookie", "<h1>Cookie set</h1>"))
        response.headers.append("set-cookie", HOST_COOKIE)
        return response

    async def echo_cookie(request: Request) -> Response:
        cookie = html.escape(request.headers.get("cookie", ""))
        return HTMLResponse(_html("Echo", f'<h1>Cookie</h1><p id="cookie">{cookie}</p>'))

    routes = Starlette(
        routes=[
            Route("/", chart),
            Route("/bad/{kind}", bad),
            Route("/dialog", dialog),
            Route("/set-cookie", set_cookie),
            Route("/echo-cookie", echo_cookie),
            Mount("/static/vendor", StaticFiles(directory=VENDOR_DIR)),
            Route("/static/{name}", static),
        ]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        """The dashboard's headers on every response, static files included."""

        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = CSP
                headers["x-content-type-options"] = "nosniff"
            await send(message)

        await routes(scope, receive, send_with_csp)

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_asgi(_app()) as base:
        yield base


def _drawn_pixels(page: Page) -> int:
    """Non-transparent pixels in the chart's canvas."""
    return page.evaluate(
        """() => {
          const canvas = document.querySelector("#chart canvas");
          const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
          let drawn = 0;
          for (let i = 3; i < pixels.data.length; i += 4) if (pixels.data[i] !== 0) drawn++;
          return drawn;
        }"""
    )


def test_uplot_draws_under_the_csp(
    site: str, page: Page, page_problems: PageProblems, screenshot: Callable[[str], Path]
) -> None:
    response = page.goto(site + "/")
    assert response is not None and response.ok
    assert response.headers["content-security-policy"] == CSP
    page.wait_for_selector("body[data-chart=drawn]")

    assert page.locator("#chart .uplot canvas").count() == 1
    assert _drawn_pixels(page) > 1000  # the axes, the grid and the line
    assert page.locator("#chart .u-title").text_content() == "Requests per minute"
    assert page.evaluate(
        """() => [...document.styleSheets].some(
             (sheet) => sheet.href.endsWith("/uPlot.min.css") && sheet.cssRules.length > 0)"""
    ), "uPlot's stylesheet did not load"
    screenshot("chart")
    page_problems.flush([page])
    assert page_problems.problems == []


@pytest.mark.parametrize("kind", sorted(BAD_PAGES))
def test_detector_reports_csp_violations(
    site: str, page: Page, page_problems: PageProblems, kind: str
) -> None:
    page.goto(f"{site}/bad/{kind}")
    page_problems.flush([page])
    found = page_problems.take("csp")
    assert page_problems.problems == []
    # Both channels hear it: the DOM event (through the init script) and Chromium's console.
    assert any("securitypolicyviolation" in problem.text for problem in found), found
    assert any("Content Security Policy" in problem.text for problem in found), found
    directive = "script-src" if kind == "inline-script" else "style-src"
    assert any(directive in problem.text for problem in found), found
    if kind == "inline-script":
        assert page.evaluate("window.inlineRan") is None  # and the script did not run


def test_detector_reports_dialogs(site: str, page: Page, page_problems: PageProblems) -> None:
    page.goto(site + "/dialog")
    page_problems.flush([page])
    found = page_problems.take()
    assert [(problem.kind, problem.text) for problem in found] == [("dialog", "alert: hello")]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_host_cookie_over_http_loopback(site: str, page: Page, host: str) -> None:
    """Chromium treats http://127.0.0.1 and http://localhost as secure contexts: it keeps a
    `Secure` `__Host-` cookie sent over plain HTTP there, sends it back, and (HttpOnly) hides it
    from scripts. The dashboard's session cookie therefore works in these tests unchanged."""
    base = site.replace("127.0.0.1", host)
    page.goto(base + "/set-cookie")
    assert page.evaluate("window.isSecureContext") is True

    cookies = {cookie["name"]: cookie for cookie in page.context.cookies(base)}
    assert "__Host-t" in cookies, cookies
    kept = cookies["__Host-t"]
    assert (kept["value"], kept["domain"], kept["path"]) == ("1", host, "/")
    assert kept["secure"] and kept["httpOnly"] and kept["sameSite"] == "Strict"

    assert "__Host-t" not in page.evaluate("document.cookie")

    page.goto(base + "/echo-cookie")
    assert page.text_content("#cookie") == "__Host-t=1"


def test_axe_finds_nothing_serious(site: str, page: Page) -> None:
    page.goto(site + "/")
    page.wait_for_selector("body[data-chart=drawn]")
    violations = axe_violations(page)
    assert violations == [], describe_axe(violations)
