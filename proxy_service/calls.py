"""The one way into a metered route: authenticate, then meter every outcome exactly once.

`metered` runs a route's handler inside the guard every authenticated request goes through:
whatever happens after the key was accepted (a refused body, a limit, an upstream failure, a
client gone mid-body, a shutdown cutting the request, a bug in a converter), the request leaves
one usage event with its status and why, and the client gets an error in its protocol's shape.
Handlers that know more (an upstream reply's usage) meter first; `finish` keeps the first.

Before the handler runs, the key's limits and budgets (and its user's) admit the request, and
the model it asks for (`model_of`: after MODEL_MAP on the routes that map it) is checked for a
price when a money budget applies (proxy_service/spend.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from starlette.requests import ClientDisconnect

from proxy_service.auth import authenticate
from proxy_service.bodies import logged_prompt, parse_json_object, read_body
from proxy_service.convert.openai.usage import estimated_usage
from proxy_service.deps import proxy_state
from proxy_service.encodings import decoded_body
from proxy_service.errors import ClientGone, InternalError, InvalidRequest, ProxyError
from proxy_service.limits import RateLimited, has_budget
from proxy_service.metering import UsageMeter
from proxy_service.spend import check_priced
from proxy_service.state import ProxyState
from shared.events import Protocol
from shared.settings import Settings
from shared.supervision import describe_failure

log = logging.getLogger(__name__)


@dataclass(slots=True)
class MeteredCall:
    """An authenticated request on its way: everything the route needs, and its meter."""

    state: ProxyState
    client_key: str
    meter: UsageMeter
    headers: Mapping[str, str]
    raw: bytes = b""
    body: dict[str, Any] | None = None

    @property
    def prompt(self) -> Any:
        settings = self.state.settings
        budget = None if settings.full_trace_logging else settings.max_log_field_size
        return logged_prompt(self.raw, self.body, budget)

    def fail(self, status: int, error: str) -> None:
        model = (self.body or {}).get("model")
        self.meter.finish(status_code=status, error=error, prompt=self.prompt, model=model)

    def translated_usage(self, usage: dict[str, Any], estimated: bool) -> dict[str, Any] | None:
        """A stream translator's usage: the upstream's, or the translator's estimate marked as
        one (none at all when ESTIMATE_MISSING_USAGE is off)."""
        if not estimated:
            return usage
        if not self.state.settings.estimate_missing_usage:
            return None
        return estimated_usage(usage["prompt_tokens"], usage["completion_tokens"])

    def answered(self, error: ProxyError) -> ProxyError:
        """`error` carrying this request's id header, as every metered answer does."""
        error.headers = {**error.headers, **self.meter.response_headers()}
        return error


Handler = Callable[[MeteredCall], Awaitable[Response]]
ModelOf = Callable[[ProxyState, dict[str, Any]], str | None]
"""The model a request asks the upstream for, from its parsed body."""


def asked_model(state: ProxyState, body: dict[str, Any]) -> str | None:
    """The body's `model`, sent upstream as it is."""
    model = body.get("model")
    return model if isinstance(model, str) else None


def mapped_model(state: ProxyState, body: dict[str, Any]) -> str | None:
    """The body's `model` as MODEL_MAP turns it into the upstream's (Anthropic, Responses)."""
    model = asked_model(state, body)
    return None if model is None else state.conversion.model_map.resolve(model)


async def metered(
    request: Request,
    protocol: Protocol,
    handler: Handler,
    model_of: ModelOf | None = asked_model,
) -> Response:
    """401 (unmetered) without a valid key; from then on every outcome is metered once.
    `model_of` None: the route calls no model (nothing to price)."""
    state = proxy_state(request)
    client_key, key = authenticate(request.headers, state.keys)
    user = state.keys.user(key.user_id)
    meter = UsageMeter(state, protocol, key, user, request.headers)
    call = MeteredCall(state, client_key, meter, request.headers)
    try:
        limit = state.settings.max_request_bytes
        raw = await read_body(request, limit)
        call.raw = decoded_body(raw, request.headers.get("content-encoding"), limit)
        try:
            await state.limiter.admit(key, user)
        except RateLimited as refused:
            state.metrics.limit_refusals.add(refused.limit)
            with contextlib.suppress(ProxyError):  # for the record: its prompt and model
                call.body = parse_request(call.raw, state.settings)
            raise
        call.body = parse_request(call.raw, state.settings)
        if model_of is not None and has_budget(key, user):  # else nothing is priced here
            meter.asked_model = model_of(state, call.body)
            check_priced(state, meter.asked_model)
        return await handler(call)
    except ProxyError as error:
        call.fail(error.status, error.message)
        raise call.answered(error) from None
    except ClientDisconnect:
        call.fail(499, "client disconnected before the request body was complete")
        raise call.answered(ClientGone("client disconnected")) from None
    except asyncio.CancelledError:
        call.fail(*state.shutdown.cut_reason("request"))
        raise
    except Exception as error:
        reason = describe_failure(error)
        log.error("request %s failed: %s", call.meter.request_id, reason)
        call.fail(500, f"internal proxy error: {reason}")
        internal = InternalError(f"internal proxy error (request {call.meter.request_id})")
        raise call.answered(internal) from None


def parse_request(raw: bytes, settings: Settings) -> dict[str, Any]:
    """The body as every API takes it: a JSON object within the settings' depth and value
    bounds whose `stream`, if given, is a boolean (a `"true"` or `1` would take the non-stream
    path while a lax upstream streams)."""
    body = parse_json_object(raw, settings.max_json_depth, settings.max_json_values)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean")
    return body
