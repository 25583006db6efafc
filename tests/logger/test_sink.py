"""events.jsonl sink: whole lines, no request_id twice, across restarts and two writers."""

from __future__ import annotations

import os
import stat

import orjson

from logger_service.sink import EventSink


def line(request_id: str, filler: str = "") -> tuple[str, bytes]:
    return request_id, orjson.dumps({"request_id": request_id, "x": filler}) + b"\n"


def ids(path) -> list[str]:
    return [orjson.loads(raw)["request_id"] for raw in path.read_bytes().splitlines()]


def test_appends_and_skips_ids_already_written(tmp_path):
    sink = EventSink(tmp_path / "events.jsonl")
    sink.open()
    assert sink.append([line("a"), line("b")]) == 2
    assert sink.append([line("b"), line("c")]) == 1
    assert ids(sink.path) == ["a", "b", "c"]


def test_restart_remembers_what_the_file_holds(tmp_path):
    first = EventSink(tmp_path / "events.jsonl")
    first.open()
    first.append([line("a"), line("b")])
    first.close()
    second = EventSink(tmp_path / "events.jsonl")
    second.open()
    assert second.append([line("b"), line("c")]) == 1
    assert ids(second.path) == ["a", "b", "c"]


def test_partial_last_line_left_by_a_crash_is_cut(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line("a")[1] + b'{"request_id": "b", "x": "cut sho')
    sink = EventSink(path)
    sink.open()
    sink.append([line("b")])
    assert ids(path) == ["a", "b"]


def test_two_writers_never_duplicate_or_interleave(tmp_path):
    path = tmp_path / "events.jsonl"
    one, two = EventSink(path), EventSink(path)
    one.open()
    two.open()
    one.append([line("a", "1" * 100_000)])
    assert two.append([line("a"), line("b", "2" * 100_000)]) == 1
    assert one.append([line("b"), line("c")]) == 1
    assert ids(path) == ["a", "b", "c"]


def test_file_is_owner_only(tmp_path):
    sink = EventSink(tmp_path / "events.jsonl")
    sink.open()
    assert stat.S_IMODE(os.stat(sink.path).st_mode) == 0o600
