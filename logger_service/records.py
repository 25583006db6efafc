"""From a stream entry to the line events.jsonl keeps, priced.

Every line gets `tokens` (the proxy's split of the usage; for an event of a proxy that did not
split it, the split of its `usage`) and their `cost` under the price table the worker read for
the batch (one table per batch, so one price version per record), unprocessed lines too.

With truncation on, every line is at most LOG_MAX_RECORD_BYTES, whatever the event holds
(`bounded`), and what it costs to make is bounded too: an entry over PARSE_CHECK_BYTES whose
text holds more than MAX_PARSED_VALUES commas or SSE events (an upper bound on its JSON values,
what parsing costs) is not parsed at all but written unprocessed, from its head and usage only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from typing import Any

import orjson

from logger_service.assemble import stream_response
from logger_service.tallies import head_and_usage, usage_fields
from shared.events import EVENT_FIELDS
from shared.prices import PriceTable, cost_of
from shared.settings import Settings
from shared.supervision import MAX_ERROR_CHARS, describe_failure
from shared.truncate import MAX_KEY_CHARS, MIN_KEPT_CHARS, cut_text, fit, truncate_record
from shared.usage import record_tokens

log = logging.getLogger(__name__)

LEADING_REQUEST_ID = re.compile(rb'\{"request_id":("(?:[^"\\]|\\.)*")')
"""The proxy writes request_id first: enough to find it in an entry that does not parse."""
PARSE_CHECK_BYTES = 1 << 20
"""Entries this large or smaller are parsed without counting (they hold ~350,000 values at most,
some 40 ms of parsing)."""
MAX_PARSED_VALUES = 500_000
"""Commas plus SSE events an entry may hold to be parsed (about 70 ms of orjson, 40 MB)."""
MAX_REQUEST_ID_CHARS = 128
MAX_EXTRA_FIELDS = 8
"""Fields beyond the README's a bounded record keeps (then `…[omitted]`: how many were not)."""
BIG_FIELDS = ("prompt", "response", "raw")
SMALL_SHARE = 64
FIELD_SHARES = {"error": 16, "usage": 16, "tokens": 16, "cost": 8}
"""Fields a bounded line gives 1/N of its bytes rather than 1/SMALL_SHARE, so real ones are
kept whole: `tokens` takes 180 bytes at most, a `cost` with every category at its largest count
and a tier ~330 plus the length of the price table's model name (the share is 512 at least)."""


class TooManyValues(ValueError):
    """An entry that would cost too much to parse."""


def record_line(
    entry_id: str, fields: dict[bytes, bytes], settings: Settings, prices: PriceTable | None
) -> tuple[str, bytes]:
    """(request_id, one JSON line), its cost under `prices` (None: every model unpriced).
    Whatever the entry holds, it yields a line: one that fails any step (parsing, assembly,
    truncation, serialisation) is written unprocessed, so it can neither stop the logger nor
    vanish."""
    parsable = _parsable(fields)
    try:
        if not parsable:
            raise TooManyValues(f"more than {MAX_PARSED_VALUES} JSON values, not parsed")
        record = truncate_record(
            priced(build_record(_parse_event(fields)), prices),
            max_field_size=settings.max_log_field_size,
            max_chunks=settings.max_log_chunks,
            full_trace=settings.full_trace_logging,
        )
        line = _line(record, settings)
    except Exception as error:  # any input, or a bug: one record loses its shape, nothing more
        record = unprocessed_record(entry_id, fields, error, settings, parse=parsable)
        priced(record, prices)
        log.warning(
            "event %r written unprocessed: %s", record["request_id"], describe_failure(error)
        )
        line = _line(record, settings)
    return record["request_id"], line + b"\n"


def _parsable(fields: dict[bytes, bytes]) -> bool:
    """Whether parsing the entry costs little enough (a count, in C, of what bounds its values)."""
    values = 0
    for value in fields.values():
        if len(value) > PARSE_CHECK_BYTES:
            values += value.count(b",") + value.count(b"data:")
    return values <= MAX_PARSED_VALUES


def _line(record: dict[str, Any], settings: Settings) -> bytes:
    if settings.full_trace_logging:
        return orjson.dumps(record)
    record["request_id"] = bounded_request_id(record["request_id"])
    line = orjson.dumps(record)
    if len(line) <= settings.log_max_record_bytes:
        return line
    return orjson.dumps(bounded(record, settings.log_max_record_bytes))


def bounded_request_id(request_id: str) -> str:
    """A request_id of at most MAX_REQUEST_ID_CHARS: a longer one (no proxy makes one) keeps its
    start and a digest of the whole, so its re-deliveries are still deduped."""
    if len(request_id) <= MAX_REQUEST_ID_CHARS:
        return request_id
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{request_id[:MIN_KEPT_CHARS]}…{digest}"


def bounded(record: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The record cut to serialise to at most `max_bytes`: each small field to a small share of
    it (those of FIELD_SHARES a larger one, so real usage, tokens and cost are kept whole), at
    most MAX_EXTRA_FIELDS fields beyond the README's (keys cut), then prompt and response (or
    raw) sharing the rest."""
    out: dict[str, Any] = {}
    extras = left_out = 0
    for name, value in record.items():
        if name in BIG_FIELDS or name == "request_id":
            out[name] = value
        elif name in EVENT_FIELDS or extras < MAX_EXTRA_FIELDS:
            extras += name not in EVENT_FIELDS
            key = cut_text(name, MIN_KEPT_CHARS) if len(name) > MAX_KEY_CHARS else name
            out[key] = fit(value, max_bytes // FIELD_SHARES.get(name, SMALL_SHARE))
        else:
            left_out += 1
    if left_out:
        out["…[omitted]"] = f"{left_out} fields"
    big = [name for name in BIG_FIELDS if name in out]
    rest = max_bytes - len(orjson.dumps({**out, **dict.fromkeys(big)}))
    share = rest // max(len(big), 1)
    for name in big:
        out[name] = fit(out[name], share)
    return out


def _parse_event(fields: dict[bytes, bytes]) -> dict[str, Any]:
    event = orjson.loads(fields.get(b"e", b""))
    if not isinstance(event, dict) or not isinstance(event.get("request_id"), str):
        raise ValueError("event without request_id")
    return event


def priced(record: dict[str, Any], prices: PriceTable | None) -> dict[str, Any]:
    """The record with its `tokens` (record_tokens: the proxy's split, or that of its usage)
    and their `cost` under `prices`, in place: what the logger writes, and what
    `report --reprice` recomputes."""
    model = record.get("model")
    tokens = record["tokens"] = record_tokens(record)
    record["cost"] = cost_of(prices, model if isinstance(model, str) else None, tokens)
    return record


def build_record(event: dict[str, Any]) -> dict[str, Any]:
    """README fields first in README order, then extras; streams folded into chunks+result."""
    stream = event.pop("response_stream", None)
    if isinstance(stream, str):
        event["response"] = stream_response(stream, event.get("protocol", "openai_chat"))
    ordered = {field: event.pop(field, None) for field in EVENT_FIELDS}
    return {**ordered, **event}


def unprocessed_record(
    entry_id: str,
    fields: dict[bytes, bytes],
    error: Exception,
    settings: Settings,
    parse: bool = True,
) -> dict[str, Any]:
    """A record that always serialises: the event's top-level fields (request_id for the
    dedupe, what the rollup counts), `unprocessed` saying why, and the raw entry text in place
    of prompt and response (cut to about MAX_LOG_FIELD_SIZE unless FULL_TRACE_LOGGING). With
    `parse` false the entry is never parsed whole."""
    budget = None if settings.full_trace_logging else settings.max_log_field_size
    known = _top_level_fields(fields.get(b"e", b""), parse)
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


def _top_level_fields(event: bytes, parse: bool) -> dict[str, Any]:
    """The event's fields as far as they can be read: all of them when it parses; when it does
    not (nested past orjson's depth limit), or must not be parsed whole (`parse` false), the
    head and usage the rollup reads; else the leading request_id; else none."""
    found = usage_fields(event) if parse else head_and_usage(event, MAX_PARSED_VALUES)
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
