"""`python -m logger_service.report`: usage read from the event files, as a table or JSON, and
optionally an HTML chart of tokens per day per user.

Reads the data directory directly (no Redis, no running logger): each rotated file through its
rollup sidecar when it has a valid one, else line by line, and events.jsonl line by line; files
rotated before --since are skipped. It answers the same UsageQuery as GET /admin/usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from logger_service.chart import render_chart
from logger_service.eventfiles import EventFileSet, rotated_at
from logger_service.rotated import read_sidecar
from logger_service.tallies import tally_file
from shared.settings import Settings
from shared.timespec import HINT
from shared.usage import HOUR_MS, Cell, Tally
from shared.usage_layout import covering
from shared.usage_query import (
    DEFAULT_GROUP_BY,
    DEFAULT_SINCE,
    GROUPINGS,
    UsageQuery,
    build_query,
    day_of,
)

CLOCK_SKEW_SECONDS = 3600
"""A line may have started a little after its file's rotation time by another host's clock."""
COLUMNS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache", "cache_tokens"),
    ("total", "total_tokens"),
)
LATENCY_COLUMNS = ("p50", "p99")


def file_cells(events_path: Path, query: UsageQuery) -> list[tuple[Cell, Tally]]:
    """The usage cells of every event file that may hold lines the query covers: from a
    rotated file's sidecar, the cells of the buckets covering the query; else every line's."""
    since_s = query.first_hour * HOUR_MS / 1000
    buckets = set(covering(query.first_hour, query.end_hour))
    cells: list[tuple[Cell, Tally]] = []
    with ExitStack() as stack:
        files = EventFileSet(events_path, stack)
        for index, path in enumerate(files.paths):
            if path is not None and rotated_at(path) + CLOCK_SKEW_SECONDS < since_s:
                continue
            found = None if path is None else read_sidecar(path, buckets)
            if found is None:
                file = files.open(index)
                found = [] if file is None else list(tally_file(file).items())
            cells.extend(found)
    return cells


def render_table(report: dict[str, Any]) -> str:
    """An aligned text table: group key columns, counters, latency; totals last."""
    key_names = [GROUPINGS[by] for by in report["group_by"].split(",")]
    header = [*key_names, *(label for label, _ in COLUMNS), *(f"{p} ms" for p in LATENCY_COLUMNS)]
    rows = [
        _row([_text(group["key"][name]) for name in key_names], group) for group in report["groups"]
    ]
    total = _row(["TOTAL", *[""] * (len(key_names) - 1)], report["totals"])
    widths = [max(len(row[i]) for row in [header, *rows, total]) for i in range(len(header))]
    keys = len(key_names)

    def line(cells: list[str]) -> str:
        aligned = [
            cell.ljust(width) if i < keys else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(aligned).rstrip()

    rule = "-" * len(line(header))
    title = f"Usage {report['since']} to {report['until']} (UTC), by {report['group_by']}"
    filters = ", ".join(f"{name}={value}" for name, value in report["filters"].items())
    return "\n".join(
        [
            title + (f", where {filters}" if filters else ""),
            "",
            line(header),
            rule,
            *(line(row) for row in rows),
            rule,
            line(total),
        ]
    )


def _row(key_cells: list[str], summary: dict[str, Any]) -> list[str]:
    latency = summary["latency_ms"]
    return [
        *key_cells,
        *(f"{summary[name]:,}" for _, name in COLUMNS),
        *(_text(latency[p]) if latency[p] is None else f"{latency[p]:,}" for p in LATENCY_COLUMNS),
    ]


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m logger_service.report", description=__doc__)
    parser.add_argument(
        "--by",
        default=DEFAULT_GROUP_BY,
        help=f"{', '.join(GROUPINGS)}, or several joined by commas (default: %(default)s)",
    )
    parser.add_argument("--since", default=DEFAULT_SINCE, help=f"default: %(default)s; {HINT}")
    parser.add_argument("--until", help="default: now")
    for name in ("user-id", "key-id", "model", "client-app"):
        parser.add_argument(f"--{name}", help=f"only requests with this {name.replace('-', '_')}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR") or Settings.model_fields["data_dir"].default),
        help="directory of events.jsonl (default: $DATA_DIR, else %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON of GET /admin/usage")
    parser.add_argument(
        "--chart",
        help="write an HTML chart of tokens per day per user to this file, or with `-` to "
        "standard output (the table then goes to standard error)",
    )
    return parser, parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parser, args = parse_args(argv)
    filters = {
        "user_id": args.user_id,
        "key_id": args.key_id,
        "model": args.model,
        "client_app": args.client_app,
    }
    try:
        query = build_query(
            since=args.since,
            until=args.until,
            group_by=args.by,
            filters=filters,
            now_ms=time.time_ns() // 1_000_000,
        )
    except ValueError as error:
        parser.error(str(error))
    if not args.data_dir.is_dir():
        parser.error(f"no data directory at {args.data_dir}")
    # model_construct: only the path is needed, not a whole validated configuration.
    events_path = Settings.model_construct(data_dir=args.data_dir).events_path
    cells = file_cells(events_path, query)
    report = query.report(query.fold(cells))
    chart_to_stdout = args.chart == "-"
    out = sys.stderr if chart_to_stdout else sys.stdout
    if args.json:
        out.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_table(report), file=out)
    if args.chart:
        per_day_user = replace(query, group_by=("day", "user")).fold(cells)
        span = f"{report['since']} to {report['until']}"
        subtitle = f"Total tokens per UTC day, stacked by user; {span}"
        days = (day_of(query.first_hour), day_of(query.end_hour - 1))
        html = render_chart(per_day_user, "Tokens per day per user", subtitle, days)
        if chart_to_stdout:
            sys.stdout.write(html)
        else:
            write_chart(parser, Path(args.chart), html)


def write_chart(parser: argparse.ArgumentParser, path: Path, html: str) -> None:
    """The chart file, or one line saying why not and what to do instead (in the logger's
    container the app folder is read-only for its user)."""
    try:
        path.write_text(html)
    except OSError as error:
        parser.exit(
            1,
            f"cannot write the chart to {path}: {error.strerror}. Give a writable path, or "
            "`--chart -` to write it to standard output (docker compose exec -T logger python "
            "-m logger_service.report --chart - > tokens.html)\n",
        )
    print(f"chart written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
