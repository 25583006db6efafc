"""events.jsonl rotation: every line exactly once across the files, none split, with one or two
writers; retention deletes old rotated files only; sidecars stand in for their files."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import ExitStack
from decimal import Decimal

import orjson

from logger_service.eventfiles import (
    EventFileSet,
    rotated_files,
    rotation_target,
)
from logger_service.rotated import (
    delete_expired,
    missing_sidecars,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from logger_service.sink import EventSink
from logger_service.tallies import tally_file, usage_fields
from shared.usage import Tally
from tests.usage_data import lines_of, random_records

ROTATE_BYTES = 1024
DAY = 86400


def line(request_id: str, filler: str = "") -> tuple[str, bytes]:
    return request_id, orjson.dumps({"request_id": request_id, "x": filler}) + b"\n"


def event_files(events_path) -> list:
    """Rotated files, then the current one: the order lines were written in."""
    return [*rotated_files(events_path), events_path]


def ids_in_order(events_path) -> list[str]:
    """request_ids of every file in writing order; fails on a split or partial line."""
    ids = []
    for path in event_files(events_path):
        data = path.read_bytes()
        assert data.endswith(b"\n") or (data == b"" and path == events_path), path
        ids += [orjson.loads(raw)["request_id"] for raw in data.splitlines()]
    return ids


def test_small_batches_rotate_keeping_every_line_once_in_order(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = EventSink(path, rotate_bytes=ROTATE_BYTES)
    sink.open()
    sent = [f"r{n}" for n in range(600)]
    for start in range(0, len(sent), 7):
        sink.append([line(rid, "x" * (start % 50)) for rid in sent[start : start + 7]])
        sink.append([line(sent[start])])  # a redelivered entry, across rotations too
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 20
    assert ids_in_order(path) == sent
    for rotated in event_files(path)[:-1]:
        assert ROTATE_BYTES <= rotated.stat().st_size < ROTATE_BYTES + 7 * 200


def test_two_writers_rotating_concurrently_keep_every_line_once(tmp_path):
    path = tmp_path / "events.jsonl"
    sinks = [EventSink(path, rotate_bytes=ROTATE_BYTES), EventSink(path, rotate_bytes=ROTATE_BYTES)]
    for sink in sinks:
        sink.open()
    sent = [f"r{n}" for n in range(2000)]

    def write(sink: EventSink, offset: int) -> None:
        # Each writer sends its own half and, like a redelivery, part of the other's.
        for start in range(offset, len(sent), 20):
            batch = sent[start : start + 10] + sent[max(0, start - 5) : start]
            sink.append([line(rid, "y" * 30) for rid in batch])

    threads = [threading.Thread(target=write, args=(sink, n * 10)) for n, sink in enumerate(sinks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = ids_in_order(path)
    assert sorted(written) == sorted(sent)
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 30


def test_a_restart_after_another_replica_rotated_still_skips_lines_written(tmp_path):
    path = tmp_path / "events.jsonl"
    crashed = EventSink(path, rotate_bytes=ROTATE_BYTES)
    crashed.open()
    crashed.append([line("a", "x" * ROTATE_BYTES)])  # written, never acknowledged
    other = EventSink(path, rotate_bytes=ROTATE_BYTES)
    other.open()
    other.append([line("b")])  # rotates the file holding "a"
    restarted = EventSink(path, rotate_bytes=ROTATE_BYTES)
    restarted.open()
    assert restarted.append([line("a"), line("c")]) == 1
    assert ids_in_order(path) == ["a", "b", "c"]


def test_a_file_last_written_on_an_earlier_day_rotates_on_the_next_append(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = EventSink(path, rotate_bytes=1 << 30)
    sink.open()
    sink.append([line("yesterday")])
    sink.append([line("still-today")])
    assert list(tmp_path.glob("events-*.jsonl")) == []
    os.utime(path, (time.time() - DAY, time.time() - DAY))
    sink.append([line("today")])
    assert [p.name for p in event_files(path)][-1] == "events.jsonl"
    assert ids_in_order(path) == ["yesterday", "still-today", "today"]
    assert path.read_bytes().count(b"\n") == 1


def test_rotated_names_sort_in_writing_order_even_when_the_clock_goes_back(tmp_path):
    path = tmp_path / "events.jsonl"
    now = 1_780_000_000.0
    first = rotation_target(path, now)
    first.write_bytes(b"{}\n")
    second = rotation_target(path, now)  # same second
    second.write_bytes(b"{}\n")
    third = rotation_target(path, now - 3600)  # clock set back an hour
    third.write_bytes(b"{}\n")
    path.write_bytes(b"{}\n")
    assert first.name == "events-20260528T202640.jsonl"
    assert event_files(path) == [first, second, third, path]


def test_a_rotation_while_the_files_are_listed_shows_each_file_once(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"request_id": "old"}\n')
    import logger_service.eventfiles as eventfiles

    listing = eventfiles.rotated_files

    target = rotation_target(path, time.time())

    def rotate_then_list(events_path):
        os.rename(path, target)
        path.write_bytes(b'{"request_id": "new"}\n')
        return listing(events_path)

    monkeypatch.setattr(eventfiles, "rotated_files", rotate_then_list)
    with ExitStack() as stack:
        files = EventFileSet(path, stack)
        assert len(files) == 1 and files.paths[0] is not None
        assert files.open(0).read() == b'{"request_id": "old"}\n'


def test_retention_deletes_old_rotated_files_and_their_sidecars_only(tmp_path):
    path = tmp_path / "events.jsonl"
    now = time.time()
    old = rotation_target(path, now - 91 * DAY)
    old.write_bytes(b'{"request_id": "a", "started_at_ms": 1}\n')
    write_sidecar(old)
    recent = rotation_target(path, now - 89 * DAY)
    recent.write_bytes(b'{"request_id": "b", "started_at_ms": 2}\n')
    path.write_bytes(b'{"request_id": "c", "started_at_ms": 3}\n')
    delete_expired(path, 90, now)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, recent.name])
    assert missing_sidecars(path) == [recent]


def test_a_sidecar_holds_its_files_cells_and_goes_stale_with_it(tmp_path):
    rotated = tmp_path / "events-20260101T000000.jsonl"
    rotated.write_bytes(
        b'{"request_id": "a", "user_id": "u", "started_at_ms": 7200000, "latency_ms": 40,'
        b' "status_code": 200, "usage": {"prompt_tokens": 5, "total_tokens": 5}}\n'
        b'{"request_id": "b", "user_id": "v", "started_at_ms": 7300000, "latency_ms": 9,'
        b' "status_code": 500, "error": "x", "usage": null}\nnot json\n'
    )
    write_sidecar(rotated)
    with rotated.open("rb") as file:
        assert dict(read_sidecar(rotated, {("hour", 2)})) == tally_file(file)
    day = {group[0]: tally.counts for (_, group), tally in read_sidecar(rotated, {("day", 0)})}
    assert (day["u"]["requests"], day["u"]["input_tokens"], day["v"]["errors"]) == (1, 5, 1)
    assert read_sidecar(rotated, {("hour", 3)}) == []
    with rotated.open("ab") as file:
        file.write(b'{"request_id": "c"}\n')
    assert read_sidecar(rotated, {("hour", 2)}) is None


def test_a_sidecar_carries_spend_and_token_categories_and_an_older_one_is_made_again(tmp_path):
    rotated = tmp_path / "events-20260101T000000.jsonl"
    records = random_records(300, seed=11, start_ms=7_200_000, hours=30)
    rotated.write_bytes(b"".join(lines_of(records)))
    write_sidecar(rotated)
    with rotated.open("rb") as file:
        from_lines = tally_file(file)
    from_sidecar = dict(read_sidecar(rotated, {("hour", hour) for hour in range(2, 32)}))
    assert from_sidecar == from_lines
    total = Tally()
    for tally in from_sidecar.values():
        total.add(tally)
    summary = total.summary()
    assert Decimal(summary["cost_usd"]) > 0 and summary["unpriced_requests"] > 0
    assert summary["cache_write_1h_tokens"] > 0
    sidecar = sidecar_path(rotated)
    document = orjson.loads(sidecar.read_bytes())
    assert missing_sidecars(tmp_path / "events.jsonl") == []
    sidecar.write_bytes(orjson.dumps({**document, "version": 2}))  # an older logger's
    assert read_sidecar(rotated, {("hour", 2)}) is None
    assert missing_sidecars(tmp_path / "events.jsonl") == [rotated]
    write_sidecar(rotated)
    assert orjson.loads(sidecar.read_bytes()) == document


def test_usage_fields_skip_the_prompt_and_response_but_only_when_that_is_exact():
    record = {
        "request_id": "r",
        "protocol": "openai_chat",
        "client_app": "cli",
        "user_id": "u",
        "key_id": "k",
        "upstream_id": None,
        "model": "m",
        "started_at_ms": 7,
        "ended_at_ms": 9,
        "latency_ms": 2,
        "status_code": 200,
        "error": None,
        "prompt": {"messages": [{"content": 'say ,"usage":{"prompt_tokens":99}'}]},
        "response": {"usage": {"prompt_tokens": 98}, "x": {"a": 1, "usage": 97}},
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        "extra": {"b": 2},
    }
    fast = usage_fields(orjson.dumps(record))
    assert fast == {k: v for k, v in record.items() if k not in ("prompt", "response")}
    nested = {**record, "extra": {"b": 2, "usage": {"prompt_tokens": 96}}}
    assert usage_fields(orjson.dumps(nested)) == nested  # the last `,"usage":` is nested: whole
    assert usage_fields(orjson.dumps({**record, "usage": None}))["usage"] is None
    moved = {k: v for k, v in record.items() if k != "model"} | {"model": "m"}
    assert usage_fields(orjson.dumps(moved)) == moved  # model after the prompt: parsed whole
    spaced = json.dumps(record).encode()
    assert usage_fields(spaced) == record
    assert usage_fields(b"[1, 2]") is None and usage_fields(b"not json") is None
