"""Instants as operators type them: ISO-8601, unix seconds, or an age such as `7d`. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime

AGE = re.compile(r"(\d+)([smhdw])")
UNIX_SECONDS = re.compile(r"\d+(\.\d*)?")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
HINT = "use ISO-8601 (2024-05-01, 2024-05-01T13:00Z), unix seconds, now, or an age like 7d, 24h"


def parse_instant(text: str, now_ms: int) -> int:
    """Milliseconds since the epoch; naive datetimes are UTC. ValueError names the bad input."""
    text = text.strip()
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
