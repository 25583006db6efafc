"""The version the code reports is the package's (pyproject.toml), the one CHANGELOG.md names."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

import httpx

from tests.processes import ROOT
from tests.system import running_system

VERSION = metadata.version("b23-llm-proxy")


def test_both_services_print_it() -> None:
    for module in ("proxy_service", "logger_service"):
        printed = subprocess.run(
            [sys.executable, "-m", module, "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert printed.strip() == f"b23-llm-proxy {VERSION}"


def test_healthz_says_it(redis_url: str, fake_upstream_url: str, tmp_path) -> None:
    with running_system(redis_url, fake_upstream_url, tmp_path, 1) as system:
        assert httpx.get(system.url + "/healthz").json() == {"ok": True, "version": VERSION}


def test_the_changelog_has_a_section_for_it() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
