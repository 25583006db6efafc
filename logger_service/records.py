"""From a stream entry to the line events.jsonl keeps."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from logger_service.assemble import stream_response
from logger_service.truncate import truncate_record
from shared.events import EVENT_FIELDS
from shared.settings import Settings

log = logging.getLogger(__name__)


def record_line(entry_id: str, fields: dict[bytes, bytes], settings: Settings) -> tuple[str, bytes]:
    """(request_id, one JSON line). A malformed entry still yields a line, so nothing vanishes."""
    try:
        event = orjson.loads(fields[b"e"])
        if not isinstance(event, dict) or not isinstance(event.get("request_id"), str):
            raise ValueError("event without request_id")
    except (KeyError, ValueError) as error:
        raw = b" ".join(fields.values()).decode("utf-8", "replace")
        event = {
            "request_id": f"malformed-{entry_id}",
            "error": f"malformed event: {error}",
            "response": raw,
        }
    try:
        record = build_record(dict(event))
    except Exception as error:  # a bug must cost one record its shape, never the metering
        log.exception("event %s written unprocessed", event["request_id"])
        record = {**event, "unprocessed": f"{type(error).__name__}: {error}"}
    record = truncate_record(
        record,
        max_field_size=settings.max_log_field_size,
        max_chunks=settings.max_log_chunks,
        full_trace=settings.full_trace_logging,
    )
    return record["request_id"], orjson.dumps(record) + b"\n"


def build_record(event: dict[str, Any]) -> dict[str, Any]:
    """README fields first in README order, then extras; streams folded into chunks+result."""
    stream = event.pop("response_stream", None)
    if isinstance(stream, str):
        event["response"] = stream_response(stream, event.get("protocol", "openai_chat"))
    ordered = {field: event.pop(field, None) for field in EVENT_FIELDS}
    return {**ordered, **event}
