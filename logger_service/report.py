"""`python -m logger_service.report`: usage and spend read from the event files, as a table or
JSON, and optionally an HTML chart of tokens (or spend) per day per user.

Reads the data directory directly (no Redis, no running logger): each rotated file through its
rollup sidecar when it has a valid one, else line by line, and events.jsonl line by line; files
rotated before --since are skipped. It answers the same UsageQuery as GET /admin/usage.

--reprice PATH prices every line again with the table at PATH (its tokens and model, as the
logger does: after a price fix), beside the spend recorded; it reads every line (a sidecar
holds no request's tokens) and changes no file and no aggregate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from logger_service.chart import METRICS, render_chart
from logger_service.eventfiles import EventFileSet, rotated_at, shard_event_paths
from logger_service.records import priced
from logger_service.rotated import read_sidecar
from logger_service.tallies import file_records, tally_file
from shared.prices import PriceFileError, PriceTable, parse_table
from shared.settings import Settings
from shared.timespec import HINT
from shared.usage import HOUR_MS, Cell, Tally, tally_records
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
    ("usd", "cost_usd"),
    ("unpriced", "unpriced_requests"),
)
REPRICED_COLUMNS = (("repriced usd", "cost_usd"), ("repriced unpriced", "unpriced_requests"))
"""Of a group's `repriced` summary, shown with --reprice."""
LATENCY_COLUMNS = ("p50", "p99")

Opener = Callable[[], BinaryIO | None]


def file_cells(events_path: Path, query: UsageQuery) -> list[tuple[Cell, Tally]]:
    """The usage cells of every event file that may hold lines the query covers: from a
    rotated file's sidecar, the cells of the buckets covering the query; else every line's."""
    buckets = set(covering(query.first_hour, query.end_hour))
    cells: list[tuple[Cell, Tally]] = []
    for path, open_file in covered_files(events_path, query):
        found = None if path is None else read_sidecar(path, buckets)
        if found is None:
            file = open_file()
            found = [] if file is None else list(tally_file(file).items())
        cells.extend(found)
    return cells


def repriced_cells(
    events_path: Path, query: UsageQuery, prices: PriceTable
) -> tuple[dict[Cell, Tally], dict[Cell, Tally]]:
    """The usage cells of every line the query may cover as recorded, and with each line's
    cost computed again under `prices`: both from the same lines, read once."""
    recorded: dict[Cell, Tally] = {}
    repriced: dict[Cell, Tally] = {}
    for _, open_file in covered_files(events_path, query):
        file = open_file()
        for record in () if file is None else file_records(file):
            tally_records((record,), recorded)
            tally_records((priced(record, prices),), repriced)  # in place, once counted
    return recorded, repriced


def add_cells(into: dict[Cell, Tally], cells: dict[Cell, Tally]) -> None:
    for cell, tally in cells.items():
        into.setdefault(cell, Tally()).add(tally)


def covered_files(events_path: Path, query: UsageQuery) -> Iterator[tuple[Path | None, Opener]]:
    """Each event file that may hold lines the query covers (rotated ones by path, the current
    one as None), and how to open it; each is open until the iteration ends."""
    since_s = query.first_hour * HOUR_MS / 1000
    with ExitStack() as stack:
        files = EventFileSet(events_path, stack)
        for index, path in enumerate(files.paths):
            if path is None or rotated_at(path) + CLOCK_SKEW_SECONDS >= since_s:
                yield path, lambda index=index: files.open(index)


def with_repriced(report: dict[str, Any], again: dict[str, Any], version: str) -> None:
    """`report` with each group's and the totals' spend under the new prices (`again`, the
    report of the same lines repriced) as `repriced`, and the table's version."""
    rows = [*report["groups"], report["totals"]]
    new_rows = [*again["groups"], again["totals"]]
    for row, new in zip(rows, new_rows, strict=True):
        row["repriced"] = {name: new[name] for _, name in REPRICED_COLUMNS}
    report["repriced_with"] = version


def render_table(report: dict[str, Any]) -> str:
    """An aligned text table: group key columns, counters, latency; totals last."""
    key_names = [GROUPINGS[by] for by in report["group_by"].split(",")]
    repriced = REPRICED_COLUMNS if "repriced" in report["totals"] else ()
    header = [
        *key_names,
        *(label for label, _ in COLUMNS),
        *(label for label, _ in repriced),
        *(f"{p} ms" for p in LATENCY_COLUMNS),
    ]
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
    heading = [title + (f", where {filters}" if filters else "")]
    if repriced:
        heading.append(f"repriced with price table {report['repriced_with']}")
    return "\n".join(
        [
            *heading,
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
    repriced = summary.get("repriced")
    return [
        *key_cells,
        *(_number(summary[name]) for _, name in COLUMNS),
        *(() if repriced is None else (_number(repriced[name]) for _, name in REPRICED_COLUMNS)),
        *(_number(latency[p]) for p in LATENCY_COLUMNS),
    ]


def _number(value: int | str | None) -> str:
    """A count with thousands separators; USD (a string) exact, as it is."""
    return f"{value:,}" if isinstance(value, int) else _text(value)


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
        help="write an HTML chart of tokens (or --chart-metric) per day per user to this "
        "file, or with `-` to standard output (the table then goes to standard error)",
    )
    parser.add_argument(
        "--chart-metric",
        choices=METRICS,
        default="tokens",
        help="what the chart stacks: total tokens, or cost in USD (default: %(default)s)",
    )
    parser.add_argument(
        "--reprice",
        type=Path,
        metavar="PRICES_TOML",
        help="also show the spend of the same requests priced with this price table (each "
        "line's tokens and model, as the logger prices them), e.g. after a price fix; reads "
        "every line, and rewrites no file and no aggregate (recorded costs stay as they were)",
    )
    return parser, parser.parse_args(argv)


def load_prices(parser: argparse.ArgumentParser, path: Path) -> PriceTable:
    try:
        return parse_table(path.read_bytes())
    except OSError as error:
        parser.error(f"cannot read {path}: {error.strerror or error}")
    except PriceFileError as error:
        parser.error(f"{path}: {error}")


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
    prices = None if args.reprice is None else load_prices(parser, args.reprice)
    # model_construct: only the path is needed, not a whole validated configuration.
    shard_paths = shard_event_paths(args.data_dir)
    if prices is None:
        cells = [cell for path in shard_paths for cell in file_cells(path, query)]
        report = query.report(query.fold(cells))
    else:
        recorded: dict[Cell, Tally] = {}
        repriced: dict[Cell, Tally] = {}
        for path in shard_paths:
            shard_recorded, shard_repriced = repriced_cells(path, query, prices)
            add_cells(recorded, shard_recorded)
            add_cells(repriced, shard_repriced)
        cells = list(recorded.items())
        report = query.report(query.fold(cells))
        with_repriced(report, query.report(query.fold(repriced.items())), prices.version)
    chart_to_stdout = args.chart == "-"
    out = sys.stderr if chart_to_stdout else sys.stdout
    if args.json:
        out.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_table(report), file=out)
    if args.chart:
        per_day_user = replace(query, group_by=("day", "user")).fold(cells)
        metric = METRICS[args.chart_metric]
        span = f"{report['since']} to {report['until']}"
        subtitle = f"{metric.description} per UTC day, stacked by user; {span}"
        days = (day_of(query.first_hour), day_of(query.end_hour - 1))
        title = f"{metric.title} per day per user"
        html = render_chart(per_day_user, title, subtitle, days, metric)
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
