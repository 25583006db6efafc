"""The supervisor: a failing loop is restarted or ends the process, and says so in one line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared import supervision
from shared.supervision import Supervisor, describe_failure


def deep(n: int) -> None:
    if n:
        deep(n - 1)
    raise TypeError("boom " + "x" * 1000)


def test_failures_are_described_in_one_short_line():
    try:
        deep(500)
    except TypeError as error:
        text = describe_failure(error)
    assert text.startswith("TypeError: boom") and "test_supervision.py:" in text
    assert "\n" not in text and len(text) < 400


async def test_a_restartable_loop_is_restarted_and_counted(monkeypatch, caplog):
    monkeypatch.setattr(supervision, "RESTART_DELAY_SECONDS", 0.01)
    runs = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ValueError("not yet")
        await asyncio.sleep(3600)

    supervisor = Supervisor()
    supervisor.start("flaky", flaky, restart=True)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(runs) == 3:
            break
    status = supervisor.status()["flaky"]
    assert len(runs) == 3 and status["running"] and status["failures"] == 2
    assert "ValueError: not yet" in status["last_error"]
    assert not supervisor.fatal.is_set() and supervisor.all_running
    assert sum("flaky failed, restarting" in r.message for r in caplog.records) == 2
    await supervisor.stop()


async def test_a_loop_that_must_not_die_makes_the_failure_fatal(caplog):
    async def broken() -> None:
        raise RecursionError("deep")

    supervisor = Supervisor()
    supervisor.start("events", broken, restart=False)
    await asyncio.wait_for(supervisor.fatal.wait(), 1)
    assert not supervisor.all_running
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    await supervisor.stop()


@pytest.mark.parametrize("restart", [True, False])
async def test_stop_cancels_every_loop(restart: bool):
    supervisor = Supervisor()
    supervisor.start("sleeper", lambda: asyncio.sleep(3600), restart=restart)
    await asyncio.sleep(0)
    await supervisor.stop()
    assert not supervisor.status()["sleeper"]["running"] and not supervisor.fatal.is_set()


async def test_stop_gives_up_on_a_loop_that_swallows_its_cancellation(caplog):
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # what redis-py can do inside a pipeline

    supervisor = Supervisor()
    supervisor.start("stubborn", stubborn, restart=True)
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(timeout=0.1), 2)
    assert "stubborn did not stop within 0.1s" in caplog.text
    released.set()
    await asyncio.sleep(0.01)
