"""From a stream entry to the line events.jsonl keeps."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import orjson

from logger_service.assemble import stream_response
from logger_service.tallies import usage_fields
from logger_service.truncate import cut_text, fit, truncate_record
from shared.events import EVENT_FIELDS
from shared.settings import Settings
from shared.supervision import MAX_ERROR_CHARS, describe_failure

log = logging.getLogger(__name__)

LEADING_REQUEST_ID = re.compile(rb'\{"request_id":("(?:[^"\\]|\\.)*")')
"""The proxy writes request_id first: enough to find it in an entry that does not parse."""


def record_line(entry_id: str, fields: dict[bytes, bytes], settings: Settings) -> tuple[str, bytes]:
    """(request_id, one JSON line). Whatever the entry holds, it yields a line: one that fails
    any step (parsing, assembly, truncation, serialisation) is written unprocessed, so it can
    neither stop the logger nor vanish."""
    try:
        record = truncate_record(
            build_record(_parse_event(fields)),
            max_field_size=settings.max_log_field_size,
            max_chunks=settings.max_log_chunks,
            full_trace=settings.full_trace_logging,
        )
        line = orjson.dumps(record)
    except Exception as error:  # any input, or a bug: one record loses its shape, nothing more
        record = unprocessed_record(entry_id, fields, error, settings)
        log.warning(
            "event %r written unprocessed: %s", record["request_id"], describe_failure(error)
        )
        line = orjson.dumps(record)
    return record["request_id"], line + b"\n"


def _parse_event(fields: dict[bytes, bytes]) -> dict[str, Any]:
    event = orjson.loads(fields.get(b"e", b""))
    if not isinstance(event, dict) or not isinstance(event.get("request_id"), str):
        raise ValueError("event without request_id")
    return event


def build_record(event: dict[str, Any]) -> dict[str, Any]:
    """README fields first in README order, then extras; streams folded into chunks+result."""
    stream = event.pop("response_stream", None)
    if isinstance(stream, str):
        event["response"] = stream_response(stream, event.get("protocol", "openai_chat"))
    ordered = {field: event.pop(field, None) for field in EVENT_FIELDS}
    return {**ordered, **event}


def unprocessed_record(
    entry_id: str, fields: dict[bytes, bytes], error: Exception, settings: Settings
) -> dict[str, Any]:
    """A record that always serialises: the event's top-level fields (request_id for the
    dedupe, what the rollup counts), `unprocessed` saying why, and the raw entry text in place
    of prompt and response (cut to about MAX_LOG_FIELD_SIZE unless FULL_TRACE_LOGGING)."""
    budget = None if settings.full_trace_logging else settings.max_log_field_size
    known = _top_level_fields(fields.get(b"e", b""))
    raw = b" ".join(fields.values()).decode("utf-8", "replace")
    record: dict[str, Any] = {}
    for name in EVENT_FIELDS:
        if name == "prompt":
            record["raw"] = raw if budget is None else cut_text(raw, budget)
        elif name != "response":
            record[name] = _kept(known.get(name), budget)
    if not isinstance(record["request_id"], str):
        record["request_id"] = f"malformed-{entry_id}"
    record["unprocessed"] = cut_text(f"{type(error).__name__}: {error}", MAX_ERROR_CHARS)
    return record


def _top_level_fields(event: bytes) -> dict[str, Any]:
    """The event's fields as far as they can be read: all of them when it parses; when it does
    not (nested past orjson's depth limit), the head and usage the rollup reads; else the
    leading request_id; else none."""
    found = usage_fields(event)
    if found is not None:
        return found
    match = LEADING_REQUEST_ID.match(event)
    with contextlib.suppress(orjson.JSONDecodeError):
        return {"request_id": orjson.loads(match[1])} if match else {}
    return {}


def _kept(value: Any, budget: int | None) -> Any:
    """A top-level value as the fallback keeps it: a string cut to the budget, a structure
    only if it serialises (fitted to the budget), any other JSON scalar as it is."""
    if isinstance(value, str):
        return value if budget is None else cut_text(value, budget)
    if isinstance(value, dict | list):
        try:
            orjson.dumps([value])  # one level down, as in the record
        except TypeError:  # nested past the 254 levels orjson writes
            return None
        return value if budget is None else fit(value, budget)
    return value
