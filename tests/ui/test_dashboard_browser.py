"""The dashboard in a real browser (Playwright's Chromium) against real proxy and logger
processes: an operator's whole key lifecycle through the forms and the official OpenAI SDK, the
session's end on logout, CSRF, a hostile model name rendered as text, /me bound to one key, the
Usage download equal to GET /admin/usage, and every page readable at 390 px and in dark mode,
free of serious axe-core findings, with screenshots in artifacts/screenshots/.

One system (one proxy, one logger, a price table) serves the whole module; the read-only checks
share one admin session and one /me session opened once (their cookies go into each test's
fresh context), the tests that change things sign in through the forms themselves.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import openai
import pytest
from playwright.sync_api import BrowserContext, Page, Response, expect

from tests.browser import PageProblems, axe_violations, describe_axe
from tests.fake_upstream import USAGE
from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, running_system
from tests.ui.dashboard import ADMIN_COOKIE, Dashboard

PRICES = '[models."fake-model"]\ninput = "2"\noutput = "10"\n'
PRICED_MODEL = "fake-model"
HOSTILE_MODEL = "<img src=x onerror=alert(1)>"
SYNC_BOUND = 2.0
"""Seconds within which a key change is in force on the proxy (it promises one)."""
ADMIN = {"x-admin-token": ADMIN_TOKEN}


# --- the system and its data ---------------------------------------------------------------


@pytest.fixture(scope="module")
def system(redis_url, fake_upstream_url, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("ui-browser")
    prices = root / "prices.toml"
    prices.write_text(PRICES)
    with running_system(redis_url, fake_upstream_url, root, 1, PRICES_FILE=str(prices)) as running:
        yield running


def new_key(system: System, user_id: str) -> dict[str, Any]:
    response = httpx.post(system.url + "/admin/keys", headers=ADMIN, json={"user_id": user_id})
    assert response.status_code == 201, response.text
    return response.json()


def sdk(system: System, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=system.url + "/v1", api_key=api_key, max_retries=0)


def ask(system: System, api_key: str, model: str = PRICED_MODEL) -> str:
    """One chat completion through the OpenAI SDK; the proxy's request id."""
    raw = sdk(system, api_key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().usage.total_tokens == USAGE["total_tokens"]
    return raw.headers["x-request-id"]


def counted(system: System, requests: int, **filters: str) -> None:
    """Wait until /admin/usage counts `requests` requests under `filters` over the last day."""

    def done() -> bool:
        params = {"since": "1d", **filters}
        report = httpx.get(system.url + "/admin/usage", params=params, headers=ADMIN).json()
        return report["totals"]["requests"] == requests

    wait_until(done, 15, what=f"{requests} requests counted for {filters}")


def expected_cost_text() -> str:
    """What one fake-model request costs under PRICES, as the pages print it."""
    usd = (
        Decimal(USAGE["prompt_tokens"]) * Decimal(2) + Decimal(USAGE["completion_tokens"]) * 10
    ) / Decimal(10**6)
    return "$" + format(usd.normalize(), "f")


def refused_within(system: System, api_key: str, bound: float = SYNC_BOUND) -> float:
    """Seconds until the SDK's request with `api_key` gets a 401; fails past `bound`."""
    started = time.monotonic()
    while True:
        try:
            ask(system, api_key)
        except openai.AuthenticationError:
            return time.monotonic() - started
        assert time.monotonic() - started < bound, f"{api_key[:8]}… still accepted"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def seeded(system: System) -> dict[str, Any]:
    """Two keys and their requests: alice's priced one and one to the hostile model name, bob's
    to a model of his own. Waits until the logger counted them."""
    alice, bob = new_key(system, "alice"), new_key(system, "bob")
    ask(system, alice["api_key"])
    response = httpx.post(
        system.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {alice['api_key']}"},
        json={"model": HOSTILE_MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    ask(system, bob["api_key"], "model-of-bob")
    counted(system, 2, key_id=alice["key_id"])
    counted(system, 1, key_id=bob["key_id"])
    return {"alice": alice, "bob": bob}


@pytest.fixture(scope="module")
def sessions(system: System, seeded: dict[str, Any]) -> dict[str, str]:
    """One admin session and one /me session (alice's), opened once over HTTP for the
    read-only checks; their cookie values by cookie name."""
    dashboard = Dashboard(system.url)
    assert dashboard.login().status_code == 303
    assert dashboard.login_me(seeded["alice"]["api_key"]).status_code == 303
    dashboard.close()
    return dict(dashboard.cookies)


def carry(context: BrowserContext, system: System, cookies: dict[str, str]) -> None:
    """Put session cookies into a context as the server set them (Secure, HttpOnly, Strict)."""
    context.add_cookies(
        [
            {
                "name": name,
                "value": value,
                "domain": urlsplit(system.url).hostname,
                "path": "/",
                "secure": True,
                "httpOnly": True,
                "sameSite": "Strict",
            }
            for name, value in cookies.items()
        ]
    )


# --- browser helpers -----------------------------------------------------------------------


def sign_in(page: Page, system: System, path: str = "/ui/keys") -> None:
    """Open a page, get sent to the login form, sign in through it, come back to the page."""
    page.goto(system.url + path)
    assert urlsplit(page.url).path == "/ui/login"
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(system.url + path)


def posted(page: Page, button: str) -> Response:
    """Click a form's submit button; the response to its POST (before any redirect)."""
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    return info.value


def reload_until(page: Page, url: str, check: Callable[[], bool], what: str) -> None:
    """Load `url` again until `check()` holds (the logger counts asynchronously)."""
    deadline = time.monotonic() + 15
    while True:
        page.goto(url)
        if check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def row_of(page: Page, request_id: str):
    return page.locator("table.requests tbody tr").filter(
        has=page.locator("td.rid", has_text=request_id)
    )


def cells(row) -> list[str]:
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def fact(page: Page, term: str) -> str:
    return page.locator(f"dl.facts dt:text-is('{term}') + dd").inner_text().strip()


# --- 1. a key's whole life through the forms and the SDK -----------------------------------


def test_operator_creates_uses_rotates_and_revokes_a_key(system: System, page: Page) -> None:
    sign_in(page, system, "/ui/keys")

    page.get_by_label("User id").fill("browser-user")
    created = posted(page, "Create key")
    assert created.status == 200
    assert created.headers["cache-control"] == "no-store"
    secret = page.locator("#secret-value").inner_text()
    assert secret.startswith("bsk-") and len(secret) > 20
    key_id = fact(page, "Key id")
    assert fact(page, "User") == "browser-user"

    # shown once: neither the list nor the key page ever shows it again
    for path in ("/ui/keys", f"/ui/keys/{key_id}"):
        shown = page.goto(system.url + path)
        assert shown is not None and shown.ok
        assert secret not in page.content() and secret not in shown.text()
        assert shown.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", name=f"Key {key_id}")).to_be_visible()

    request_id = ask(system, secret)
    cost = expected_cost_text()
    assert cost.startswith("$0.000")
    tokens = f"{USAGE['prompt_tokens']} / {USAGE['completion_tokens']}"

    reload_until(
        page,
        system.url + "/ui/requests",
        lambda: row_of(page, request_id).count() == 1,
        "the request on the Requests page",
    )
    # Time, Key, User, Model, Status, Tokens in / out, Cost, Latency, Request id
    listed = cells(row_of(page, request_id))
    assert listed[1:7] == [key_id, "browser-user", PRICED_MODEL, "200 complete", tokens, cost]
    assert listed[7].endswith(" ms") and listed[8] == request_id

    page.get_by_role("link", name=key_id).first.click()
    page.wait_for_url(f"{system.url}/ui/keys/{key_id}")
    # Time, Model, Status, Tokens in / out, Cost, Latency, Request id
    on_key = cells(row_of(page, request_id))
    assert on_key[1:5] == [PRICED_MODEL, "200 complete", tokens, cost] and on_key[6] == request_id

    # rotate with no grace: a new secret, once; the old one refused within the sync bound
    page.get_by_label("Old secret keeps working for (seconds)").fill("0")
    rotated = posted(page, "Rotate secret")
    assert rotated.status == 200 and rotated.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", name="Rotated: new secret")).to_be_visible()
    new_secret = page.locator("#secret-value").inner_text()
    assert new_secret.startswith("bsk-") and new_secret != secret
    refused_within(system, secret)
    ask(system, new_secret)
    page.get_by_role("link", name="Go to the key").click()
    page.wait_for_url(f"{system.url}/ui/keys/{key_id}")
    assert new_secret not in page.content() and secret not in page.content()

    # revoke: Deactivate, then the SDK gets a 401
    deactivated = posted(page, "Deactivate")
    assert deactivated.status == 303
    expect(page.get_by_role("status")).to_contain_text("Deactivated")
    assert fact(page, "Status") == "inactive"
    refused_within(system, new_secret)
    with pytest.raises(openai.AuthenticationError):
        ask(system, new_secret)


# --- 2. logout ends the session for good ---------------------------------------------------


def test_logout_then_the_old_cookie_is_refused(
    system: System, page: Page, browser_context: BrowserContext
) -> None:
    sign_in(page, system, "/ui/")
    old = [c for c in browser_context.cookies(system.url) if c["name"] == ADMIN_COOKIE]
    assert len(old) == 1 and old[0]["secure"] and old[0]["httpOnly"]

    assert posted(page, "Log out").status == 303
    assert urlsplit(page.url).path == "/ui/login"
    assert ADMIN_COOKIE not in {c["name"] for c in browser_context.cookies(system.url)}

    browser_context.add_cookies(old)  # replay the captured cookie
    assert ADMIN_COOKIE in {c["name"] for c in browser_context.cookies(system.url)}
    replay = page.goto(system.url + "/ui/keys")
    assert replay is not None and replay.request.redirected_from is not None
    assert replay.request.redirected_from.all_headers()["cookie"].startswith(ADMIN_COOKIE + "=")
    assert urlsplit(page.url).path == "/ui/login"
    expect(page.get_by_role("heading", name="Sign in to the dashboard")).to_be_visible()


# --- 3. CSRF --------------------------------------------------------------------------------


def key_count(system: System) -> int:
    return len(httpx.get(system.url + "/admin/keys", headers=ADMIN).json()["keys"])


def test_a_post_without_the_csrf_token_is_refused(
    system: System, page: Page, page_problems: PageProblems
) -> None:
    sign_in(page, system, "/ui/keys")
    before = key_count(system)
    token = page.locator("form.key-form input[name=csrf]").input_value()

    page.get_by_label("User id").fill("no-csrf")
    page.evaluate("document.querySelector('form.key-form input[name=csrf]').remove()")
    refused = posted(page, "Create key")
    assert refused.status == 403
    expect(page.get_by_role("alert")).to_contain_text("CSRF")
    logged = page_problems.take("console")  # Chromium logs the refused page's 403, and only it
    assert [problem.text for problem in logged] == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]

    # the same POST from the page's own request context, with the session cookie and this
    # origin: refused without the token, accepted with it
    form = {"user_id": "csrf-by-request"}
    origin = {"origin": system.url}
    without = page.request.post(system.url + "/ui/keys", form=form, headers=origin)
    assert without.status == 403
    assert key_count(system) == before
    with_token = page.request.post(
        system.url + "/ui/keys", form={**form, "csrf": token}, headers=origin
    )
    assert with_token.status == 200
    assert key_count(system) == before + 1


# --- 4. a hostile model name is text everywhere ---------------------------------------------


def test_a_hostile_model_name_renders_as_text(
    system: System, page: Page, browser_context: BrowserContext, sessions: dict[str, str]
) -> None:
    carry(browser_context, system, {ADMIN_COOKIE: sessions[ADMIN_COOKIE]})
    reload_until(
        page,
        system.url + "/ui/requests",
        lambda: page.locator("table.requests td.model", has_text=HOSTILE_MODEL).count() == 1,
        "the hostile model on the Requests page",
    )
    expect(page.get_by_text(HOSTILE_MODEL, exact=True)).to_be_visible()
    assert page.locator("img").count() == 0

    page.goto(system.url + "/ui/")
    unpriced = page.locator("section[aria-labelledby=unpriced] .model")
    expect(unpriced.filter(has_text=HOSTILE_MODEL)).to_have_text(HOSTILE_MODEL)
    top_models = page.locator("table.groups", has=page.get_by_text("Top models, 30 days"))
    expect(top_models.get_by_role("cell", name=HOSTILE_MODEL, exact=True)).to_be_visible()
    assert page.locator("img").count() == 0

    page.goto(system.url + "/ui/models")
    expect(page.locator("h3.model", has_text=HOSTILE_MODEL)).to_be_visible()
    stub = page.locator("pre code", has_text=HOSTILE_MODEL)
    expect(stub).to_be_visible()
    assert HOSTILE_MODEL in stub.inner_text()
    assert page.locator("img").count() == 0


# --- 5. /me shows one key, and ends with it --------------------------------------------------


def test_me_shows_only_its_key_and_ends_when_the_key_is_revoked(system: System, page: Page) -> None:
    mine, theirs = new_key(system, "me-holder"), new_key(system, "someone-else")
    ask(system, mine["api_key"], "model-of-mine")
    ask(system, theirs["api_key"], "model-of-theirs")
    counted(system, 1, key_id=mine["key_id"])
    counted(system, 1, key_id=theirs["key_id"])

    page.goto(system.url + "/me/")
    assert urlsplit(page.url).path == "/me/login"
    page.get_by_label("Your API key").fill(mine["api_key"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(system.url + "/me/")
    reload_until(
        page,
        system.url + "/me/",
        lambda: page.locator("table.requests td.model", has_text="model-of-mine").count() == 1,
        "my request on /me",
    )
    expect(page.locator("dl.facts code").first).to_have_text(mine["key_id"])
    expect(page.get_by_role("cell", name="model-of-mine", exact=True).first).to_be_visible()
    content = page.content()
    for foreign in (theirs["key_id"], "model-of-theirs", "someone-else", "model-of-bob"):
        assert foreign not in content, foreign
    assert mine["api_key"] not in content

    revoked = httpx.delete(system.url + f"/admin/keys/{mine['key_id']}", headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    reload_until(
        page,
        system.url + "/me/",
        lambda: urlsplit(page.url).path == "/me/login",
        "/me to end",
    )
    expect(page.get_by_role("heading", name="My usage")).to_be_visible()
    expect(page.get_by_label("Your API key")).to_be_visible()


# --- 6. the Usage downloads are GET /admin/usage --------------------------------------------


def test_the_usage_csv_download_equals_the_admin_usage_json(
    system: System, page: Page, browser_context: BrowserContext, sessions: dict[str, str]
) -> None:
    carry(browser_context, system, {ADMIN_COOKIE: sessions[ADMIN_COOKIE]})
    page.goto(system.url + "/ui/usage")
    page.get_by_label("Since").fill("1d")
    page.get_by_label("Group by").fill("model,user")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/ui/usage?*")
    params = {k: v for k, v in parse_qsl(urlsplit(page.url).query) if v}
    assert params == {"since": "1d", "group_by": "model,user"}
    expected = httpx.get(system.url + "/admin/usage", params=params, headers=ADMIN).json()
    assert len(expected["groups"]) >= 3  # seeded: fake-model, the hostile name, model-of-bob

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="CSV").click()
    assert csv_download.value.suggested_filename == "usage.csv"
    rows = list(csv.reader(io.StringIO(Path(csv_download.value.path()).read_text())))
    names = ["model", "user_id"]
    counters = [
        "requests", "errors", "input_tokens", "output_tokens", "cache_tokens", "total_tokens",
        "uncached_input_tokens", "cache_read_tokens", "cache_write_5m_tokens",
        "cache_write_1h_tokens", "reasoning_tokens", "cost_usd", "unpriced_requests",
    ]  # fmt: skip
    latencies = ["p50", "p90", "p99"]
    assert rows[0] == [*names, *counters, *(f"latency_{p}_ms" for p in latencies)]

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    assert rows[1:] == [
        [
            *(text(group["key"][name]) for name in names),
            *(text(group[counter]) for counter in counters),
            *(text(group["latency_ms"][p]) for p in latencies),
        ]
        for group in expected["groups"]
    ]
    (alices,) = [row for row in rows[1:] if row[:2] == [PRICED_MODEL, "alice"]]
    assert "$" + alices[rows[0].index("cost_usd")] == expected_cost_text()

    with page.expect_download() as json_download:
        page.get_by_role("link", name="JSON").click()
    assert json.loads(Path(json_download.value.path()).read_text()) == expected


# --- 7, 8, 9. every page: 390 px, dark mode, axe-core, screenshots --------------------------

PAGES = {
    "overview": "/ui/",
    "keys": "/ui/keys",
    "key": "/ui/keys/{alice}",
    "usage": "/ui/usage?since=30d&group_by=day",
    "requests": "/ui/requests",
    "models": "/ui/models",
    "me": "/me/",
    "login": "/ui/login",
}
CHARTED = {"overview": 2, "key": 1, "usage": 1, "me": 1}
"""Pages and how many charts each must draw (they have data: the seeded requests)."""
LOOKS = [("light", 1280, 800), ("dark", 1280, 800), ("light", 390, 844), ("dark", 390, 844)]


def luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of an `rgb(r, g, b)` computed colour."""
    channels = [int(part) / 255 for part in css_colour.split("(")[1].split(")")[0].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


DRAWN_CHARTS = """() => [...document.querySelectorAll(".chart[data-chart]")].filter((chart) => {
  const canvas = chart.querySelector(".uplot canvas");
  if (!canvas) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) drawn++;
  return drawn > 500;
}).length"""


SQUEEZED_WORDS = """() => {
  const ctx = document.createElement("canvas").getContext("2d");
  const squeezed = [];
  for (const cell of document.querySelectorAll("table th, table td")) {
    if (cell.matches(".model, .rid") || !cell.checkVisibility()) continue;
    const style = getComputedStyle(cell);
    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    while (texts.nextNode()) {
      ctx.font = getComputedStyle(texts.currentNode.parentElement).font;
      for (const word of texts.currentNode.textContent.split(/\\s+|(?<=-)/)) {
        if (word && ctx.measureText(word).width > room + 1) squeezed.push(word);
      }
    }
  }
  return squeezed.slice(0, 8);
}"""
"""Words of table cells wider than their cell: broken into letters, as a table squeezed into a
narrow screen (rather than scrolling in its wrapper) shows them. A break after a hyphen is a
line break like a space; model names and request ids may break anywhere (free text, which can be
longer than any screen)."""


@pytest.mark.parametrize("name", list(PAGES))
def test_page_fits_reads_in_dark_and_passes_axe(
    system: System,
    seeded: dict[str, Any],
    sessions: dict[str, str],
    page: Page,
    browser_context: BrowserContext,
    screenshot: Callable[[str], Path],
    name: str,
) -> None:
    if not name.endswith("login"):
        carry(browser_context, system, sessions)
    url = system.url + PAGES[name].format(alice=seeded["alice"]["key_id"])
    found: list[str] = []
    for scheme, width, height in LOOKS:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": width, "height": height})
        response = page.goto(url)
        assert response is not None and response.status == 200, page.url
        assert page.url == url, "redirected: the session did not hold"
        look = f"{scheme}-{width}"

        overflow = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        if overflow[0] > overflow[1]:
            found.append(f"{look}: scrolls sideways, {overflow[0]} px wide in {overflow[1]}")

        squeezed = page.evaluate(SQUEEZED_WORDS)
        if squeezed:
            found.append(f"{look}: table cells too narrow for their words: {squeezed}")

        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        dark = luminance(background) < 0.05
        if dark != (scheme == "dark"):
            found.append(f"{look}: body background {background} in a {scheme} scheme")

        drawn = page.evaluate(DRAWN_CHARTS)
        if drawn != CHARTED.get(name, 0):
            found.append(f"{look}: {drawn} charts drawn, expected {CHARTED.get(name, 0)}")

        # axe thrice: dark at 390 px has the colours of dark 1280 and the layout of light 390
        if (scheme, width) != ("dark", 390):
            violations = axe_violations(page)
            if violations:
                found.append(f"{look}: axe-core:\n{describe_axe(violations)}")
        screenshot(look)
    assert not found, f"{url}:\n" + "\n".join(found)


def test_tab_reaches_the_skip_link_first_then_the_nav(
    system: System, page: Page, browser_context: BrowserContext, sessions: dict[str, str]
) -> None:
    carry(browser_context, system, {ADMIN_COOKIE: sessions[ADMIN_COOKIE]})
    page.goto(system.url + "/ui/keys")

    def focused() -> dict[str, Any]:
        return page.evaluate(
            """() => { const e = document.activeElement; const box = e.getBoundingClientRect();
               return {text: e.textContent.trim(), href: e.getAttribute("href"),
                       visible: box.left >= 0 && box.top >= 0 && box.width > 0}; }"""
        )

    page.keyboard.press("Tab")
    skip = focused()
    assert skip == {"text": "Skip to content", "href": "#main", "visible": True}
    reached = []
    for _ in range(5):
        page.keyboard.press("Tab")
        reached.append(focused()["text"])
    assert reached == ["Overview", "Keys", "Usage", "Requests", "Models"]

    page.goto(system.url + "/ui/keys")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # follow the skip link: the next Tab is inside <main>
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.querySelector('main').contains(document.activeElement)")
