"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy_service.deps import State
from shared.logger_status import files_report
from shared.redis_client import REDIS_ERRORS
from shared.version import version

router = APIRouter(tags=["health"])


VERSION = version()


@router.get("/healthz")
async def healthz() -> dict[str, bool | str]:
    """Liveness: the process answers, and which version it runs."""
    return {"ok": True, "version": VERSION}


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    """Prometheus text format: overhead histogram, usage-event counters, budget gauges (their
    spend read from Redis first)."""
    settings = state.settings
    await state.metrics.budgets.refresh(state.redis, state.keys, settings.budget_warn_percent)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(state: State) -> Response:
    """Ready when Redis answers, this replica holds the key set the logger loaded, its usage
    events are being published, and every background task runs. A stream past its bounds (the
    logger behind) is shown, not a reason to be unready: every replica would be taken out for
    what only the logger can fix."""
    try:
        redis_ok = bool(await state.redis.ping())
    except REDIS_ERRORS:
        redis_ok = False
    events = state.events
    publishing = events.redis_ok
    tasks_ok = state.supervisor.all_running
    ready = redis_ok and state.keys.loaded and publishing and tasks_ok
    body = {
        "ready": ready,
        "redis": redis_ok,
        "keys_loaded": state.keys.loaded,
        "publishing": publishing,
        "events_pending": events.pending,
        "events_pending_bytes": events.pending_bytes,
        "events_dropped": events.dropped,
        "events_compacted": {
            "buffer": events.buffer_compacted,
            "replay": events.replay_compacted,
            "stream": events.stream_compacted,
        },
        "events_unconfirmed": events.unconfirmed,
        "events_unconfirmed_bytes": events.unconfirmed_bytes,
        "events_replay_dropped": events.replay_dropped,
        "events_sanitised": events.sanitised,
        "stream": {
            "state": events.stream,
            "entries": events.stream_entries,
            "bytes": events.stream_bytes,
        },
        "tasks": state.supervisor.status(),
        "logger": await files_report(state.redis),
    }
    return JSONResponse(body, status_code=200 if ready else 503)
