"""`python -m logger_service.report` on a data directory from scripts/gen_events.py: totals
checked against the lines themselves, with and without sidecars; the chart is well-formed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import orjson
import pytest

from logger_service.rotated import SIDECAR_SUFFIX
from tests.processes import ROOT

HOUR_S = 3600
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "data"
    script = [sys.executable, "scripts/gen_events.py", "--out", str(out), "--sidecars"]
    subprocess.run([*script, "--lines", "4000", "--days", "5"], cwd=ROOT, check=True)
    return out


def report(data_dir: Path, *args: str) -> str:
    argv = [sys.executable, "-m", "logger_service.report", "--data-dir", str(data_dir), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, text=True).stdout


def all_records(data_dir: Path) -> list[dict]:
    return [
        orjson.loads(line)
        for path in sorted(data_dir.glob("events*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def sums(records: list[dict]) -> dict[str, int]:
    def tokens(name: str) -> int:
        return sum((r["usage"] or {}).get(name, 0) for r in records)

    return {
        "requests": len(records),
        "errors": sum(1 for r in records if r["error"] is not None or r["status_code"] >= 400),
        "input_tokens": tokens("prompt_tokens"),
        "output_tokens": tokens("completion_tokens"),
        "cache_tokens": tokens("cached_tokens"),
        "total_tokens": tokens("total_tokens"),
    }


def test_totals_per_user_add_up_to_the_lines(data_dir):
    records = all_records(data_dir)
    assert len(list(data_dir.glob(f"*{SIDECAR_SUFFIX}"))) >= 4
    body = orjson.loads(report(data_dir, "--json", "--by", "user", "--since", "6d"))
    assert {k: body["totals"][k] for k in sums(records)} == sums(records)
    for group in body["groups"]:
        mine = [r for r in records if r["user_id"] == group["key"]["user_id"]]
        assert {k: group[k] for k in sums(mine)} == sums(mine)


def test_sidecars_missing_or_stale_give_the_same_answer(data_dir, tmp_path):
    expected = report(data_dir, "--json", "--by", "model", "--since", "6d")
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in data_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    sidecars = sorted(copy.glob(f"*{SIDECAR_SUFFIX}"))
    sidecars[0].unlink()
    sidecars[1].write_bytes(sidecars[1].read_bytes().replace(b'"file_bytes":', b'"file_bytes":1'))
    assert report(copy, "--json", "--by", "model", "--since", "6d") == expected


def test_since_skips_older_files_but_no_line_it_asks_for(data_dir):
    since = (int(time.time()) - 2 * 86400) // HOUR_S * HOUR_S
    wanted = [r for r in all_records(data_dir) if r["started_at_ms"] >= since * 1000]
    body = orjson.loads(report(data_dir, "--json", "--since", str(since), "--by", "client_app"))
    assert {k: body["totals"][k] for k in sums(wanted)} == sums(wanted)


def test_table_is_aligned_with_a_total_row(data_dir):
    records = all_records(data_dir)
    table = report(data_dir, "--by", "user", "--since", "6d", "--model", "gpt-4o")
    title, blank, header, rule, *rows, last_rule, total = table.rstrip("\n").split("\n")
    assert title.endswith("by user, where model=gpt-4o") and blank == ""
    assert header.split() == [
        *["user_id", "requests", "errors", "input", "output", "cache", "total"],
        *["p50", "ms", "p99", "ms"],
    ]
    assert len({len(line) for line in [header, rule, last_rule, total]}) == 1
    assert all(len(row) <= len(header) for row in rows)
    requests = sum(1 for r in records if r["model"] == "gpt-4o")
    assert total.split()[:2] == ["TOTAL", f"{requests:,}"]
    assert sum(int(row.split()[1].replace(",", "")) for row in rows) == requests


def test_chart_is_a_well_formed_page_of_stacked_bars(data_dir, tmp_path):
    chart = tmp_path / "tokens.html"
    report(data_dir, "--by", "day", "--since", "6d", "--chart", str(chart))
    page = chart.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http" not in page.replace(f'xmlns="{SVG[1:-1]}"', "")  # nothing fetched
    root = ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))
    bars = root.findall(f".//{SVG}svg/{SVG}rect")
    tokens = sum(r["usage"]["total_tokens"] for r in all_records(data_dir) if r["usage"])
    assert len(bars) > 20 and sum(map(bar_tokens, bars)) == tokens


def bar_tokens(bar: ElementTree.Element) -> int:
    """From the bar's tooltip, `user, day: 12,345 tokens`."""
    return int(bar.find(f"{SVG}title").text.split(": ")[1].split()[0].replace(",", ""))


def unshare_works() -> bool:
    probe = ["unshare", "--mount", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not unshare_works(), reason="needs unshare --mount (a private mount table)")
def test_in_the_containers_layout_the_chart_goes_to_stdout_or_says_why_not(data_dir, tmp_path):
    """The logger's container: the working folder (/app) cannot be written by the report's
    user. Here a read-only bind mount of the working folder plays that part (it holds for
    root too, which a test run may be)."""
    app = tmp_path / "app"
    app.mkdir()
    command = [sys.executable, "-m", "logger_service.report", "--data-dir", str(data_dir)]

    def in_read_only_app(*args: str) -> subprocess.CompletedProcess:
        inner = " ".join(["exec", *command, *args])
        script = f"mount --bind -o ro {app} {app} && cd {app} && {inner}"
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    refused = in_read_only_app("--chart", "tokens.html")
    assert refused.returncode == 1
    assert "cannot write the chart to tokens.html: Read-only file system" in refused.stderr
    assert "--chart -" in refused.stderr and "Traceback" not in refused.stderr
    to_stdout = in_read_only_app("--chart", "-")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout.lstrip().lower().startswith("<!doctype html")
    assert "total" in to_stdout.stderr.lower()  # the table moved to stderr
    assert "<svg" in to_stdout.stdout
