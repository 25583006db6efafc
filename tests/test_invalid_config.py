"""An invalid configuration: one line naming the setting, then exit 2, or with
B23_ON_INVALID_CONFIG=wait (what Compose sets) the line once and a wait until stopped, so a
restart policy cannot turn it into a crash loop that repeats the line every few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.processes import ROOT

SERVICES = ["proxy_service", "logger_service"]


def start(module: str, **env: str) -> subprocess.Popen:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "ADMIN_TOKEN_PREVIOUS")
    }
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT / "tests",  # no .env here
        env={**clean, "ADMIN_TOKEN": "change-me", **env},
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("module", SERVICES)
def test_by_default_it_exits_2_with_one_line(module: str) -> None:
    process = start(module)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.count("invalid configuration: ADMIN_TOKEN") == 1


def stderr_until_waiting(process: subprocess.Popen) -> str:
    """Its stderr up to the line saying it waits: on a busy machine it may still be importing
    3 s after its start, and a SIGTERM before it blocks the signal would end it by the default
    action (status -15). The line comes right before that block, the signal 3 s after it."""
    lines = []
    while "staying down until stopped" not in (line := process.stderr.readline()):
        assert line, f"it exited instead of waiting: {''.join(lines)}"
        lines.append(line)
    return "".join([*lines, line])


@pytest.mark.parametrize("module", SERVICES)
def test_told_to_wait_it_stays_down_until_stopped(module: str) -> None:
    process = start(module, B23_ON_INVALID_CONFIG="wait")
    before = stderr_until_waiting(process)
    time.sleep(3)
    assert process.poll() is None, "it exited instead of waiting"
    process.send_signal(signal.SIGTERM)
    _, after = process.communicate(timeout=30)
    stderr = before + after
    assert process.returncode == 2
    assert stderr.count("invalid configuration: ADMIN_TOKEN") == 1
    assert "staying down until stopped" in stderr
