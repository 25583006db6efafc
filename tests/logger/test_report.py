"""`python -m logger_service.report` on a data directory from scripts/gen_events.py: totals
checked against the lines themselves, with and without sidecars; the chart is well-formed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from logger_service.rotated import SIDECAR_SUFFIX, write_sidecar
from proxy_service.publisher import shard_of
from shared.prices import money_text, parse_table
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


def sums(records: list[dict]) -> dict[str, int | str]:
    def tokens(name: str) -> int:
        return sum((r["usage"] or {}).get(name, 0) for r in records)

    priced = [Decimal(r["cost"]["usd"]) for r in records if r["cost"]["usd"] is not None]
    return {
        "requests": len(records),
        "errors": sum(1 for r in records if r["error"] is not None or r["status_code"] >= 400),
        "input_tokens": tokens("prompt_tokens"),
        "output_tokens": tokens("completion_tokens"),
        "cache_tokens": tokens("cached_tokens"),
        "total_tokens": tokens("total_tokens"),
        "uncached_input_tokens": sum((r["tokens"] or {}).get("input", 0) for r in records),
        "cost_usd": money_text(sum(priced, Decimal(0))),
        "unpriced_requests": sum(r["cost"]["status"] == "unpriced" for r in records),
    }


def test_totals_per_user_add_up_to_the_lines(data_dir):
    records = all_records(data_dir)
    assert len(list(data_dir.glob(f"*{SIDECAR_SUFFIX}"))) >= 4
    body = orjson.loads(report(data_dir, "--json", "--by", "user", "--since", "6d"))
    assert {k: body["totals"][k] for k in sums(records)} == sums(records)
    assert Decimal(body["totals"]["cost_usd"]) > 0 and body["totals"]["unpriced_requests"] > 0
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
        *["user_id", "requests", "errors", "input", "output", "cache", "total", "usd"],
        "unpriced",
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


def test_the_spend_chart_stacks_each_users_cost(data_dir, tmp_path):
    chart = tmp_path / "spend.html"
    report(data_dir, "--since", "6d", "--chart", str(chart), "--chart-metric", "cost")
    root = ElementTree.fromstring(chart.read_text().removeprefix("<!DOCTYPE html>\n"))
    bars = root.findall(f".//{SVG}svg/{SVG}rect")
    usd = [Decimal(bar.find(f"{SVG}title").text.split(": $")[1]) for bar in bars]
    assert money_text(sum(usd, Decimal(0))) == sums(all_records(data_dir))["cost_usd"]
    assert root.find(".//h1").text == "Spend per day per user"


REPRICED = """
[models."gpt-4o-mini"]
input = "0.30"
output = "1.20"
cache_read = "0.15"

[models."gpt-4o"]
input = "2.5"
output = "10"
"""
"""gpt-4o-mini at twice its example prices, gpt-4o (unpriced in the example table) priced now,
deepseek-chat no longer priced."""
REPRICED_RATES = {
    "gpt-4o-mini": {"input": "0.30", "output": "1.20", "cache_read": "0.15"},
    "gpt-4o": {"input": "2.5", "output": "10", "cache_read": "2.5"},
}


def by_hand(tokens: dict | None, rates: dict[str, str]) -> Decimal:
    """Tokens times USD per million (gen_events' usage has no cache writes)."""
    total = sum(Decimal((tokens or {}).get(c, 0)) * Decimal(rate) for c, rate in rates.items())
    return total / Decimal(10**6)


def test_reprice_shows_the_spend_under_a_new_table_beside_the_recorded_one(data_dir, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text(REPRICED)
    before = {path: path.read_bytes() for path in data_dir.iterdir()}
    args = ("--json", "--by", "model", "--since", "6d", "--reprice", str(prices))
    body = orjson.loads(report(data_dir, *args))
    assert {path: path.read_bytes() for path in data_dir.iterdir()} == before  # nothing rewritten
    assert body["repriced_with"] == parse_table(REPRICED.encode()).version
    records = all_records(data_dir)
    rows = {group["key"]["model"]: group for group in body["groups"]}
    for model, row in rows.items():
        mine = [r for r in records if r["model"] == model]
        assert {k: row[k] for k in sums(mine)} == sums(mine)  # the recorded spend, unchanged
        if model not in REPRICED_RATES:
            assert row["repriced"] == {"cost_usd": "0", "unpriced_requests": len(mine)}
            continue
        usd = sum((by_hand(r["tokens"], REPRICED_RATES[model]) for r in mine), Decimal(0))
        assert row["repriced"] == {"cost_usd": money_text(usd), "unpriced_requests": 0}
    usd = sum((Decimal(row["repriced"]["cost_usd"]) for row in rows.values()), Decimal(0))
    unpriced = sum(row["repriced"]["unpriced_requests"] for row in rows.values())
    assert body["totals"]["repriced"] == {
        "cost_usd": money_text(usd),
        "unpriced_requests": unpriced,
    }
    table = report(data_dir, *args[1:])
    assert "repriced with price table sha256:" in table
    assert "repriced usd" in table.splitlines()[3]


def test_reprice_refuses_a_table_that_does_not_parse(data_dir, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."m"]\ninput = 3.0\n')
    argv = [sys.executable, "-m", "logger_service.report", "--data-dir", str(data_dir)]
    run = subprocess.run(
        [*argv, "--reprice", str(prices)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 2 and "write prices as strings" in run.stderr
    assert "Traceback" not in run.stderr


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


def test_every_shards_files_are_read(data_dir, tmp_path):
    """The same lines spread over three shards' files (`events.jsonl`, `events-1-<time>.jsonl`
    rotated with its sidecar, `events-2.jsonl`...): the same totals, per user too."""
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    rotated = sorted(p for p in data_dir.glob("events-*.jsonl"))
    assert len(rotated) >= 3
    for index, path in enumerate(rotated):
        stem = "events" if index % 2 == 0 else "events-1"
        name = stem + path.name.removeprefix("events")
        (sharded / name).write_bytes(path.read_bytes())
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if sidecar.exists():
            (sharded / (name + SIDECAR_SUFFIX)).write_bytes(sidecar.read_bytes())
    (sharded / "events-2.jsonl").write_bytes((data_dir / "events.jsonl").read_bytes())
    assert {p.name for p in sharded.glob("events-1-*.jsonl")} and (sharded / "events-2.jsonl")
    records = all_records(data_dir)
    assert all_records(sharded) != [] and len(all_records(sharded)) == len(records)
    body = orjson.loads(report(sharded, "--json", "--by", "user", "--since", "6d"))
    assert {k: body["totals"][k] for k in sums(records)} == sums(records)
    for group in body["groups"]:
        mine = [r for r in records if r["user_id"] == group["key"]["user_id"]]
        assert {k: group[k] for k in sums(mine)} == sums(mine)


def split_into_shards(data_dir: Path, out: Path, shards: int) -> dict[int, list[Path]]:
    """Each file's lines spread over `shards` shards' files as the proxies spread requests
    (shard_of), each rotated file's share under the shard's own name and the same rotation
    time: every shard then has rotated files and a current one. Sidecars for shards 0 and 1's
    rotated files, none for shard 2's (read line by line)."""
    out.mkdir()
    files: dict[int, list[Path]] = {shard: [] for shard in range(shards)}
    for path in sorted(data_dir.glob("events*.jsonl")):
        parts: dict[int, list[bytes]] = {shard: [] for shard in range(shards)}
        for line in path.read_bytes().splitlines(keepends=True):
            parts[shard_of(orjson.loads(line)["request_id"], shards)].append(line)
        for shard, lines in parts.items():
            stem = "events" if shard == 0 else f"events-{shard}"
            target = out / (stem + path.name.removeprefix("events"))
            target.write_bytes(b"".join(lines))
            files[shard].append(target)
            if target.name != f"{stem}.jsonl" and shard < 2:
                write_sidecar(target)
    return files


@pytest.mark.parametrize("by", ["user", "day", "key,model"])
def test_three_shards_current_and_rotated_files_give_the_report_of_all_their_lines(
    data_dir, tmp_path, by
):
    """A data directory of EVENT_SHARDS=3 (events.jsonl, events-1.jsonl, events-2.jsonl and
    each one's rotated files, with or without sidecars): the report is the one of the same
    lines unsharded, and the recount of every shard's lines, recorded and repriced."""
    sharded = tmp_path / "sharded"
    files = split_into_shards(data_dir, sharded, 3)
    for shard, paths in files.items():
        names = [path.name for path in paths]
        current = "events.jsonl" if shard == 0 else f"events-{shard}.jsonl"
        assert current in names and len(names) >= 3, names  # rotated ones too
        owners = {shard_of(r["request_id"], 3) for path in paths for r in lines_of(path)}
        assert owners == {shard}
    records = all_records(data_dir)
    assert sorted(r["request_id"] for r in all_records(sharded)) == sorted(
        r["request_id"] for r in records
    )
    args = ("--json", "--by", by, "--since", "6d")
    body = orjson.loads(report(sharded, *args))
    assert body == orjson.loads(report(data_dir, *args))
    assert {k: body["totals"][k] for k in sums(records)} == sums(records)
    prices = tmp_path / "prices.toml"
    prices.write_text(REPRICED)
    repriced = orjson.loads(report(sharded, *args, "--reprice", str(prices)))
    assert repriced == orjson.loads(report(data_dir, *args, "--reprice", str(prices)))
    assert repriced["totals"]["repriced"]["cost_usd"] != body["totals"]["cost_usd"]


def lines_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]
