"""Assembles the proxy: lifespan (one upstream client, one Redis client), routes, error shapes."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from proxy_service.admin_guard import AdminGuard
from proxy_service.convert.anthropic.request import ConversionOptions
from proxy_service.convert.model_map import ModelMap
from proxy_service.convert.responses import ResponsesOptions
from proxy_service.deps import proxy_state
from proxy_service.errors import ProxyError, error_response
from proxy_service.gc_tuning import tune_garbage_collector
from proxy_service.keystore import KeyStore
from proxy_service.keywriter import KeyWriter
from proxy_service.limits import Limiter
from proxy_service.malloc_tuning import map_large_blocks
from proxy_service.model_catalog import ModelCatalog
from proxy_service.observability import Metrics
from proxy_service.price_metrics import PriceTableCollector
from proxy_service.publisher import EventBounds, EventPublisher
from proxy_service.routes import (
    admin,
    anthropic,
    embeddings,
    health,
    me,
    models,
    openai,
    responses,
    usage,
    users,
)
from proxy_service.shutdown import ShutdownWatch
from proxy_service.state import ProxyState
from proxy_service.ui.app import create_ui_apps
from proxy_service.upstream import Upstream
from shared.prices import PriceBook
from shared.redis_client import REDIS_ERRORS, connect
from shared.settings import Settings
from shared.supervision import Supervisor

SHUTDOWN_DRAIN_SECONDS = 5.0
MAX_ECHOED_PATH = 200


def conversion_options(settings: Settings) -> ConversionOptions:
    """Anthropic conversion switches from settings; ValueError for a bad MODEL_MAP."""
    return ConversionOptions(
        model_map=ModelMap.parse(settings.model_map),
        max_tokens_cap=settings.max_tokens_cap,
        reasoning_content_in_history=settings.reasoning_content_in_history,
        send_reasoning_effort=settings.send_reasoning_effort,
    )


def responses_options(settings: Settings, conversion: ConversionOptions) -> ResponsesOptions:
    """/v1/responses conversion switches: the Anthropic route's where they mean the same."""
    return ResponsesOptions(
        model_map=conversion.model_map,
        default_max_output_tokens=settings.responses_default_max_output_tokens or None,
        max_tokens_cap=conversion.max_tokens_cap,
        send_reasoning_effort=conversion.send_reasoning_effort,
        reasoning_content_in_history=conversion.reasoning_content_in_history,
        strict_tools=settings.responses_hosted_tools == "error",
    )


def create_app(settings: Settings) -> FastAPI:
    conversion = conversion_options(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect(settings, timeout=5)
        upstream = Upstream(settings)
        keys = KeyStore(redis)
        events = EventPublisher(redis, EventBounds.from_settings(settings), settings.event_shards)
        supervisor = Supervisor()
        catalog = ModelCatalog(upstream)
        prices = PriceBook(settings.prices_file)
        prices.refresh()
        app.state.proxy = ProxyState(
            settings,
            redis,
            keys,
            events,
            upstream,
            KeyWriter(redis, keys),
            Limiter(redis, settings.limits_fail_open),
            ShutdownWatch(),
            conversion,
            Metrics(events),
            supervisor,
            AdminGuard(),
            catalog,
            responses_options(settings, conversion),
            prices,
        )
        app.state.proxy.metrics.registry.register(PriceTableCollector(prices))
        for mounted in dashboard:
            mounted.state.proxy = app.state.proxy
        app.state.proxy.shutdown.install()
        with contextlib.suppress(*REDIS_ERRORS):
            await keys.reload_all()
        supervisor.start("key_sync", keys.run, restart=True)
        supervisor.start("publisher", events.run, restart=True)
        supervisor.start(
            "prices", functools.partial(prices.run, settings.prices_reload_seconds), restart=True
        )
        tune_garbage_collector()
        map_large_blocks(settings.large_block_bytes)
        try:
            yield
        finally:
            await supervisor.stop()
            await events.drain(SHUTDOWN_DRAIN_SECONDS)
            await catalog.aclose()
            await upstream.aclose()
            await redis.aclose()

    # FastAPI's telemetry hooks cost ~1% per request and export nothing here: off.
    telemetry = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="b23-llm-proxy", lifespan=lifespan, telemetry=telemetry)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(anthropic.router)
    app.include_router(responses.router)
    app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(users.router)
    app.include_router(me.router)
    dashboard = create_ui_apps()
    app.mount("/ui", dashboard[0])
    app.mount("/me", dashboard[1])
    install_error_handlers(app)
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the route's protocol shape; never a traceback or `{"detail"}`."""

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'body'}: {issue['msg']}"
            for issue in error.errors()
        )
        return error_response(ProxyError.with_status(400, problems), request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = str(error.detail)
        if unserved(request, error.status_code):
            proxy_state(request).metrics.unknown_routes.seen(request.method, request.url.path)
            message = unserved_message(request, error)
        proxy_error = ProxyError(message, dict(error.headers or {}), error.status_code)
        return error_response(proxy_error, request)

    async def rendered(request: Request, error: Exception) -> Response:
        return error_response(error, request)

    # Registered one by one: Starlette handles these classes without re-raising, but an
    # `Exception` handler runs in ServerErrorMiddleware, which re-raises (logging a traceback).
    for handled in (ProxyError, RedisError, Exception):
        app.add_exception_handler(handled, rendered)


def unserved(request: Request, status: int) -> bool:
    """A request no endpoint took: no route has its path (404), or none its method (405)."""
    return status == 405 or (status == 404 and "endpoint" not in request.scope)


def unserved_message(request: Request, error: HTTPException) -> str:
    path = request.url.path[:MAX_ECHOED_PATH]
    if error.status_code == 404:
        return f"{request.method} {path}: no such route on this gateway"
    allowed = (error.headers or {}).get("Allow", "")
    return f"{request.method} {path}: method not allowed (allowed: {allowed})"
