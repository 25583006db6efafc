"""Rotated event files: a rollup sidecar next to each, deletion after the retention period.

A sidecar (`events-<time>.jsonl.rollup.json`) holds the usage of its file per hour and per UTC
day, like the aggregates in Redis, so a report over months reads a few of them (the day cells of
the days it covers whole) instead of every line. A logger writes it after the rotation, outside
the sink's lock (any replica: same content, atomic rename), and writes it again when it is of
an older version (counters added since). A report that finds it missing, stale (made for another
file size) or of another version, reads the file itself.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from pathlib import Path

import orjson

from logger_service.durable import write_atomically
from logger_service.eventfiles import expired_files, rotated_files
from logger_service.tallies import tally_file
from shared.usage import Cell, Tally
from shared.usage_layout import Bucket, by_bucket, first_hour

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".rollup.json"
SIDECAR_VERSION = 3
"""3: spend and the token categories (shared/usage.py COUNTERS_VERSION 2)."""
SIDECAR_HEAD = b'{"version":%d,' % SIDECAR_VERSION
"""How a sidecar of this version begins (orjson keeps the document's key order)."""


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: Path) -> None:
    with path.open("rb") as file:
        cells = tally_file(file)
        size = file.tell()
    buckets = [
        [kind, index, group, tally.to_fields()]
        for ((kind, index), group), tally in by_bucket(cells).items()
    ]
    document = {"version": SIDECAR_VERSION, "file_bytes": size, "buckets": buckets}
    write_atomically(sidecar_path(path), orjson.dumps(document))


def read_sidecar(path: Path, buckets: Container[Bucket]) -> list[tuple[Cell, Tally]] | None:
    """A rotated file's cells in these buckets (hours and days, as `covering` picks them) from
    its sidecar, a day's as its first hour's; None when it has no valid sidecar."""
    try:
        document = orjson.loads(sidecar_path(path).read_bytes())
        size = path.stat().st_size
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    if document.get("version") != SIDECAR_VERSION or document.get("file_bytes") != size:
        return None
    return [
        ((first_hour((kind, index)), tuple(group)), Tally.from_fields(fields))
        for kind, index, group, fields in document["buckets"]
        if (kind, index) in buckets
    ]


def delete_expired(events_path: Path, retention_days: int, now_s: float) -> None:
    """Delete rotated files past retention, with their sidecars."""
    for path in expired_files(events_path, retention_days, now_s):
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
        log.info("deleted %s (older than %d days)", path.name, retention_days)


def missing_sidecars(events_path: Path) -> list[Path]:
    """Rotated files without a sidecar of this version yet."""
    return [path for path in rotated_files(events_path) if not _current(sidecar_path(path))]


def _current(sidecar: Path) -> bool:
    try:
        with sidecar.open("rb") as file:
            return file.read(len(SIDECAR_HEAD)) == SIDECAR_HEAD
    except FileNotFoundError:
        return False
