"""The start every metered route shares: authenticate, meter, read and parse the body, admit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from proxy_service.auth import authenticate
from proxy_service.bodies import logged_prompt, parse_json_object, read_body
from proxy_service.deps import proxy_state
from proxy_service.errors import ProxyError
from proxy_service.metering import UsageMeter
from proxy_service.state import ProxyState
from shared.events import Protocol


@dataclass(slots=True)
class MeteredCall:
    """An authenticated request on its way: everything the route needs, and its meter."""

    state: ProxyState
    client_key: str
    meter: UsageMeter
    raw: bytes = b""
    body: dict[str, Any] | None = None

    @contextlib.contextmanager
    def failures_metered(self) -> Iterator[None]:
        """A ProxyError leaving this block is recorded (status, message, prompt), then raised
        on to be rendered in the route's protocol shape."""
        try:
            yield
        except ProxyError as error:
            prompt = logged_prompt(self.raw, self.body)
            self.meter.finish(status_code=error.status, error=error.message, prompt=prompt)
            raise


async def start_call(request: Request, protocol: Protocol) -> MeteredCall:
    """401 (unmetered) without a valid key; from then on every outcome is metered once."""
    state = proxy_state(request)
    client_key, key = authenticate(request.headers, state.keys)
    call = MeteredCall(state, client_key, UsageMeter(state, protocol, key, request.headers))
    with call.failures_metered():
        call.raw = await read_body(request, state.settings.max_request_bytes)
        await state.limiter.admit(key)
        call.body = parse_json_object(call.raw)
    return call
