"""Usage time ranges are bounded and checked before anything is computed from them, for
GET /admin/usage and the command-line report alike (both use build_query). Pure, and one run
of the report."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from shared.usage_query import MAX_RANGE_DAYS, build_query
from tests.processes import ROOT

NOW = 1_780_000_000_000
"""2026-05-28T20:26:40Z."""
DAY = 86_400_000


def query(since: str | None, until: str | None = None):
    return build_query(since=since, until=until, group_by=None, filters={}, now_ms=NOW)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("0", "99999999999", "since: '0' is out of range"),
        ("99999999999999999999d", None, "since: '99999999999999999999d' is out of range"),
        ("9" * 5000, None, "since: not a time: 5000 characters"),
        ("1999-12-31T23:59:59Z", None, "out of range"),
        ("1d", "1782000000", "until: '1782000000' is out of range"),
        ("2025-01-01", "2026-02-05T00:00:01Z", "since to until is over 400 days (400.00)"),
        (f"{MAX_RANGE_DAYS + 1}d", None, "over 400 days (401.00)"),
        ("garbage", None, "since: not a time: 'garbage'"),
    ],
)
def test_bad_ranges_are_refused_at_once_with_a_clear_message(since, until, message):
    started = time.thread_time()  # CPU time: a parallel run's neighbours do not count
    with pytest.raises(ValueError, match=re.escape(message)):
        query(since, until)
    assert time.thread_time() - started < 0.05


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        (("400d", None), ("401d", None)),
        (("2000-01-01", "2001-01-01"), ("1999-12-31T23:59:59Z", "2000-06-01")),
        (("1d", str((NOW + DAY) // 1000)), ("1d", str((NOW + DAY) // 1000 + 1))),
    ],
)
def test_the_bounds_hold_to_the_second(inside, outside):
    built = query(*inside)
    assert built.end_hour > built.first_hour
    with pytest.raises(ValueError):
        query(*outside)


def test_the_command_line_report_applies_the_same_bounds(tmp_path):
    argv = [sys.executable, "-m", "logger_service.report", "--data-dir", str(tmp_path)]
    argv += ["--since", "0", "--until", "99999999999"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "since: '0' is out of range" in done.stderr
