"""Instants as operators type them: ISO-8601, unix seconds, or an age such as `7d`. Pure.

Only instants from 2000-01-01 to a day from now are accepted: nothing the proxy counted lies
outside, and bounded instants keep every later step (hours to read, buckets to build) small.
The text's length is checked first, so no absurd number (`99999999999999999999d`) gets as far
as any arithmetic.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

AGE = re.compile(r"(\d+)([smhdw])")
UNIX_SECONDS = re.compile(r"\d+(\.\d*)?")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HINT = "use ISO-8601 (2024-05-01, 2024-05-01T13:00Z), unix seconds, now, or an age like 7d, 24h"
EARLIEST_MS = 946_684_800_000
"""2000-01-01T00:00:00Z."""
MAX_AHEAD_MS = 86_400_000
"""How far past now an instant may be: a day (clocks differ, time zones are forgotten)."""
MAX_TEXT = 40
"""More than any accepted instant needs (ISO-8601 with microseconds and an offset: 32)."""


def parse_instant(text: str, now_ms: int) -> int:
    """Milliseconds since the epoch, within the accepted range; naive datetimes are UTC.
    ValueError names the bad input."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"not a time: {len(text)} characters, at most {MAX_TEXT} ({HINT})")
    moment_ms = _parse(text, now_ms)
    if not EARLIEST_MS <= moment_ms <= now_ms + MAX_AHEAD_MS:
        raise ValueError(
            f"{text!r} is out of range: times lie between 2000-01-01 and a day from now"
        )
    return moment_ms


def _parse(text: str, now_ms: int) -> int:
    if text == "now":
        return now_ms
    if age := AGE.fullmatch(text):
        return now_ms - int(age[1]) * UNIT_SECONDS[age[2]] * 1000
    if UNIX_SECONDS.fullmatch(text):
        return round(float(text) * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} ({HINT})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
