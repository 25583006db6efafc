"""From a stream entry to its line: every entry gives exactly one line, whatever is in it."""

from __future__ import annotations

import orjson

from logger_service import records
from shared.settings import Settings
from tests.processes import ADMIN_TOKEN

SETTINGS = Settings(_env_file=None, admin_token=ADMIN_TOKEN)


def test_an_event_that_fails_processing_is_written_unprocessed(monkeypatch):
    def broken(event: dict) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(records, "build_record", broken)
    event = {"request_id": "r1", "user_id": "u", "response_stream": "data: x\n\n"}
    request_id, line = records.record_line("1-0", {b"e": orjson.dumps(event)}, SETTINGS)
    record = orjson.loads(line)
    assert request_id == "r1" and record["user_id"] == "u"
    assert record["unprocessed"] == "RuntimeError: a bug"
    assert record["response_stream"] == "data: x\n\n"


def test_a_malformed_entry_is_written_with_its_raw_text():
    request_id, line = records.record_line("7-1", {b"e": b"not json"}, SETTINGS)
    record = orjson.loads(line)
    assert request_id == "malformed-7-1" and record["response"] == "not json"
