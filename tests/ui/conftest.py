"""Fixtures of the browser tests: one headless Chromium for tests/ui, a fresh context per test.

- `chromium`: the Browser (Debian's Chromium through Playwright), launched once for the tests
  of this package. Without Chromium the tests skip, except under CI (CI set), where they fail:
  CI never skips them silently.
- `browser_context`: a new context for each test (its own cookies, storage and cache). On
  teardown the test fails if a page opened a dialog, logged a console error, threw, or broke the
  Content-Security-Policy, unless it is marked `allow_page_problems` or called
  `page_problems.allow()`; a test that provokes one on purpose `page_problems.take()`s it.
- `page`: a page of that context. `page_problems`: what it collected.
- `screenshot(label)`: saves artifacts/screenshots/<test-name>-<label>.png.

Package scope, not session: Playwright's sync API keeps its asyncio loop marked running in the
main thread while it is started, and pytest-asyncio cannot run a test then. Pytest stops it on
leaving tests/ui, so the async tests elsewhere run whatever the order; async tests cannot live
in tests/ui itself (`_no_async_tests_here` says so).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import PageProblems, find_chromium, in_ci, launch_chromium, save_screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

_summary: list[str] = []  # printed at the end of the run: what was launched, how fast


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_page_problems: do not fail a browser test on dialogs, console errors, page "
        "errors or CSP violations",
    )


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason}; CI must run the browser tests, so this fails", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _no_async_tests_here(request: pytest.FixtureRequest) -> None:
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        pytest.fail(
            "async tests cannot run in tests/ui: the browser tests' sync Playwright holds the "
            "event loop; put this test outside tests/ui",
            pytrace=False,
        )


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    started = time.perf_counter()
    manager = sync_playwright().start()
    _summary.append(f"playwright driver started in {time.perf_counter() - started:.2f}s")
    yield manager
    manager.stop()


@pytest.fixture(scope="package")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    started = time.perf_counter()
    browser = launch_chromium(playwright, executable)
    seconds = time.perf_counter() - started
    _summary.append(f"Chromium {browser.version} ({executable}) launched in {seconds:.2f}s")
    yield browser
    browser.close()


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def browser_context(
    chromium: Browser, page_problems: PageProblems, request: pytest.FixtureRequest
) -> Iterator[BrowserContext]:
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800},
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(10_000)
    page_problems.attach(context)
    try:
        yield context
        page_problems.flush(context.pages)
        if (
            page_problems.problems
            and not page_problems.allowed
            and request.node.get_closest_marker("allow_page_problems") is None
        ):
            pytest.fail(
                "the page did what a dashboard page must not:\n" + page_problems.report(),
                pytrace=False,
            )
    finally:
        context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Page:
    return browser_context.new_page()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    def take(label: str) -> Path:
        return save_screenshot(page, request.node.name, label)

    return take


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _summary:
        terminalreporter.write_line(f"browser tests: {line}")
