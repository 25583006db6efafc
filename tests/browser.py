"""Browser-test helpers: Debian's Chromium driven by Playwright's Python package.

The fixtures built on these are in tests/ui/conftest.py; browser tests live under tests/ui/.

- `launch_chromium`: the system Chromium (`playwright install` cannot download browsers here),
  headless, with the flags a root CI container needs.
- `PageProblems`: what a page must never do: open a dialog, log a console error, throw an
  uncaught exception, or break the Content-Security-Policy. The fixtures fail the test on any.
- `save_screenshot`: a full-page PNG under artifacts/screenshots/ (git-ignored).
- `axe_violations`: axe-core's serious and critical findings (axe.min.js ships in the
  axe-playwright-python wheel: nothing is fetched).
- `serve_asgi`: an ASGI app under uvicorn in a thread on 127.0.0.1, for pages to load.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Page,
        Playwright,
    )

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "artifacts"
SCREENSHOT_DIR = ARTIFACTS_DIR / "screenshots"

CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
)
SERIOUS_IMPACTS = frozenset({"serious", "critical"})


def in_ci() -> bool:
    """CI sets CI (to "true"): there the browser tests must run, never skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium() -> str | None:
    """Debian's Chromium (package `chromium`), or None."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def launch_chromium(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=list(CHROMIUM_ARGS),
        timeout=60_000,
    )


# Runs in every frame before the page's own scripts (Playwright injects it through DevTools, so
# the page's CSP does not apply to it) and reports each violation to Python at once.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  const report = window.__reportCspViolation;
  if (typeof report !== "function") return;
  report({
    directive: event.effectiveDirective || event.violatedDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
    sample: event.sample,
    disposition: event.disposition,
  });
});
"""


@dataclass(frozen=True)
class Problem:
    kind: str  # "dialog", "console", "pageerror" or "csp"
    text: str
    url: str = ""

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}" + (f" ({self.url})" if self.url else "")


@dataclass
class PageProblems:
    """Everything a context's pages did that a dashboard page must not do.

    A test that provokes one on purpose reads it with `take()` (which clears it), or calls
    `allow()` to accept whatever happens; the fixtures fail the test on anything left.
    """

    problems: list[Problem] = field(default_factory=list)
    allowed: bool = False

    def attach(self, context: BrowserContext) -> None:
        context.expose_binding("__reportCspViolation", self._on_csp_violation)
        context.add_init_script(_CSP_LISTENER)
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)

    def _watch_page(self, page: Page) -> None:
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._add("pageerror", str(error), page.url))

    def _add(self, kind: str, text: str, url: str = "") -> None:
        self.problems.append(Problem(kind, text, url))

    def _on_dialog(self, dialog: Dialog) -> None:
        self._add(
            "dialog", f"{dialog.type}: {dialog.message}", dialog.page.url if dialog.page else ""
        )
        with contextlib.suppress(Exception):  # the page may be closing
            dialog.dismiss()

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text:
            self._add("csp", f"console {message.type}: {text}", message.location.get("url", ""))
        elif message.type == "error":
            self._add("console", text, message.location.get("url", ""))

    def _on_csp_violation(self, source: dict[str, Any], report: dict[str, Any]) -> None:
        text = (
            f"securitypolicyviolation: {report.get('directive')} blocked "
            f"{report.get('blocked') or '(inline)'}"
            + (f" at line {report['line']}" if report.get("line") else "")
            + (f": {report['sample']!r}" if report.get("sample") else "")
        )
        frame = source.get("frame")
        self._add("csp", text, report.get("source") or (frame.url if frame else ""))

    def flush(self, pages: Iterable[Page]) -> None:
        """Let events already queued in the pages (violation reports, console) reach Python."""
        for page in pages:
            with contextlib.suppress(Exception):  # closed or navigating: nothing more to hear
                page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 0))")

    def take(self, kind: str | None = None) -> list[Problem]:
        """The problems seen so far (of one kind, if given), removed from the list."""
        taken = [p for p in self.problems if kind is None or p.kind == kind]
        self.problems = [p for p in self.problems if not (kind is None or p.kind == kind)]
        return taken

    def allow(self) -> None:
        """Do not fail this test on page problems (they are still collected)."""
        self.allowed = True

    def report(self) -> str:
        return "\n".join(f"  {problem}" for problem in self.problems)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "page"


def save_screenshot(page: Page, test_name: str, label: str) -> Path:
    """A full-page PNG at artifacts/screenshots/<test-name>-<label>.png under the repo root."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{safe_name(test_name)}-{safe_name(label)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(
    page: Page,
    impacts: Iterable[str] = SERIOUS_IMPACTS,
    context: str | list | dict | None = None,
) -> list[dict[str, Any]]:
    """axe-core's violations in the page now, of the given impacts (serious and critical)."""
    from axe_playwright_python.sync_playwright import Axe

    wanted = set(impacts)
    results = Axe().run(page, context=context)
    return [v for v in results.response["violations"] if v.get("impact") in wanted]


def describe_axe(violations: Iterable[dict[str, Any]]) -> str:
    """One line per rule and one per offending element, for an assertion message."""
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation.get("nodes", []):
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:200]}")
    return "\n".join(lines)


@contextlib.contextmanager
def serve_asgi(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` under uvicorn in a thread; yield its base URL (http://127.0.0.1:PORT)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
