"""What a running proxy process holds: built once in the lifespan, read by every request."""

from __future__ import annotations

from dataclasses import dataclass

from proxy_service.admin_guard import AdminGuard
from proxy_service.convert.anthropic.request import ConversionOptions
from proxy_service.convert.responses import ResponsesOptions
from proxy_service.keystore import KeyStore
from proxy_service.keywriter import KeyWriter
from proxy_service.limits import Limiter
from proxy_service.model_catalog import ModelCatalog
from proxy_service.observability import Metrics
from proxy_service.publisher import EventPublisher
from proxy_service.shutdown import ShutdownWatch
from proxy_service.upstream import Upstream
from shared.prices import PriceBook
from shared.redis_client import RedisClient
from shared.settings import Settings
from shared.supervision import Supervisor


@dataclass(frozen=True, slots=True)
class ProxyState:
    settings: Settings
    redis: RedisClient
    keys: KeyStore
    events: EventPublisher
    upstream: Upstream
    key_writer: KeyWriter
    limiter: Limiter
    shutdown: ShutdownWatch
    conversion: ConversionOptions
    metrics: Metrics
    supervisor: Supervisor
    admin_guard: AdminGuard
    models: ModelCatalog
    responses_options: ResponsesOptions
    prices: PriceBook
    """The price table in force: money budgets and unpriced-model refusals use it."""
