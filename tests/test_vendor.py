"""The vendored files are exactly the ones VENDOR.md lists, byte for byte (sha256)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VENDOR_DIR = Path(__file__).resolve().parent.parent / "proxy_service" / "ui" / "static" / "vendor"
VENDOR_MD = VENDOR_DIR / "VENDOR.md"
COLUMNS = ("name", "version", "file", "sha256", "licence", "source")


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]


def listed_files() -> dict[str, dict[str, str]]:
    """VENDOR.md's first table, by file: the one whose header is COLUMNS."""
    lines = VENDOR_MD.read_text(encoding="utf-8").splitlines()
    start = next(
        (i for i, line in enumerate(lines) if tuple(_cells(line)) == COLUMNS),
        None,
    )
    assert start is not None, f"VENDOR.md has no table with the columns {' | '.join(COLUMNS)}"
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.strip().startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(COLUMNS), f"VENDOR.md row has {len(cells)} cells: {line}"
        row = dict(zip(COLUMNS, cells, strict=True))
        assert row["file"] not in rows, f"{row['file']} is listed twice in VENDOR.md"
        rows[row["file"]] = row
    return rows


def vendored_files() -> set[str]:
    return {
        path.relative_to(VENDOR_DIR).as_posix()
        for path in VENDOR_DIR.rglob("*")
        if path.is_file() and path != VENDOR_MD and "__pycache__" not in path.parts
    }


def test_vendor_table_is_complete() -> None:
    rows = listed_files()
    assert rows, "VENDOR.md lists no file"
    for row in rows.values():
        for column in COLUMNS:
            assert row[column], f"VENDOR.md: {row['file']} has an empty {column}"
        assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"]), f"bad sha256 for {row['file']}"


def test_every_vendored_file_is_listed() -> None:
    unlisted = vendored_files() - set(listed_files())
    assert not unlisted, f"in static/vendor but not in VENDOR.md: {sorted(unlisted)}"


def test_every_listed_file_exists() -> None:
    missing = set(listed_files()) - vendored_files()
    assert not missing, f"listed in VENDOR.md but not in static/vendor: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(listed_files()))
def test_vendored_file_sha256(name: str) -> None:
    path = VENDOR_DIR / name
    assert path.is_file(), f"{name} is listed in VENDOR.md but missing"
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = listed_files()[name]["sha256"]
    assert actual == expected, (
        f"{name} changed: sha256 {actual}, VENDOR.md says {expected} "
        "(re-vendor it from the package, or update VENDOR.md with its new version and source)"
    )


def test_uplot_banner_matches_listed_version() -> None:
    """The minified build names its version in its first line: it must be the listed one."""
    row = listed_files()["uPlot.iife.min.js"]
    banner = (VENDOR_DIR / "uPlot.iife.min.js").read_text(encoding="utf-8").splitlines()[0]
    assert f"(v{row['version']})" in banner, banner
