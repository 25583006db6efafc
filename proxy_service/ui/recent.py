"""The Requests listing of the dashboard, the key page and /me: rows of the recent-requests
window (shared/recent_requests.py) shaped for the pages, and the page's filters from its URL."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from redis.asyncio import Redis

from shared.recent_requests import OUTCOMES, RecentFilter, RecentRequest, recent_page
from shared.usage_query import named_instant

RECENT_FILTERS = ("key_id", "user_id", "model", "status", "since", "until")
STATUS_CLASS = re.compile(r"([1-5])(xx)?", re.IGNORECASE)
PAGE_ROWS = 50
INPUT_CATEGORIES = ("input", "cache_read", "cache_write_5m", "cache_write_1h")


def recent_filter(filters: Mapping[str, str], now_ms: int | None = None) -> RecentFilter:
    """The window's filter of the page's: `status` is a class (4xx, or 4) or an outcome;
    `since` and `until` an instant or an age, as /admin/usage takes them (`2h`, ISO-8601, unix
    seconds); ValueError for anything else."""
    status = filters.get("status", "").strip()
    status_class, outcome = None, None
    if status:
        match = STATUS_CLASS.fullmatch(status)
        if match:
            status_class = int(match[1])
        elif status in OUTCOMES:
            outcome = status
        else:
            raise ValueError(f"status: a class (2xx, 4xx, 5xx) or one of {', '.join(OUTCOMES)}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    since, until = (filters.get(name, "").strip() for name in ("since", "until"))
    return RecentFilter(
        since_ms=named_instant("since", since, now) if since else None,
        until_ms=named_instant("until", until, now) if until else None,
        key_id=filters.get("key_id") or None,
        user_id=filters.get("user_id") or None,
        model=filters.get("model") or None,
        status_class=status_class,
        outcome=outcome,
    )


def row(request: RecentRequest) -> dict[str, Any]:
    """What the requests table shows of one window entry."""
    tokens = request.tokens or {}
    started = request.started_at_ms
    return {
        "time_text": datetime.fromtimestamp(started / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if started is not None
        else "",
        "key_id": request.key_id,
        "user_id": request.user_id,
        "model": request.model,
        "status_code": request.status_code,
        "outcome": request.outcome,
        "input_total": sum(tokens.get(c, 0) for c in INPUT_CATEGORIES),
        "output_tokens": tokens.get("output", 0),
        "cost_usd": request.cost_usd,
        "latency_ms": request.latency_ms,
        "request_id": request.request_id,
    }


@dataclass(frozen=True, slots=True)
class Rows:
    rows: list[dict[str, Any]]
    scanned: int
    next_before: str | None

    def older_query(self, filters: Mapping[str, str]) -> str | None:
        """The query string of the next, older page (same filters); None at the window's end."""
        if self.next_before is None:
            return None
        return "?" + urlencode({**filters, "before": self.next_before})


async def recent_rows(
    redis: Redis,
    filters: Mapping[str, str],
    before: str | None,
    limit: int = PAGE_ROWS,
    shards: int = 1,
) -> Rows:
    """A page of the windows, newest first; ValueError for a bad filter or cursor."""
    page = await recent_page(
        redis, recent_filter(filters), before or None, limit=limit, shards=shards
    )
    return Rows([row(r) for r in page.rows], page.scanned, page.next_before)
