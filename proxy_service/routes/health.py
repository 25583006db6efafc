"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from proxy_service.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    """Liveness: the process answers."""
    return {"ok": True}


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    """Prometheus text format: overhead histogram and usage-event counters."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(state: State) -> Response:
    """Ready when Redis answers and this replica holds the key set the logger loaded."""
    try:
        redis_ok = bool(await state.redis.ping())
    except (RedisError, OSError):
        redis_ok = False
    ready = redis_ok and state.keys.loaded
    body = {
        "ready": ready,
        "redis": redis_ok,
        "keys_loaded": state.keys.loaded,
        "events_pending": state.events.pending,
        "events_dropped": state.events.dropped,
    }
    return JSONResponse(body, status_code=200 if ready else 503)
