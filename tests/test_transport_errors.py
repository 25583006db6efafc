"""Transport errors as statuses: the README's table says 502 when the upstream was never reached
(refused, unresolvable, connect timed out) and 504 when it went silent after answering."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from proxy_service.upstream import describe_transport_error

REQUEST = httpx.Request("POST", "http://upstream.invalid/v1/chat/completions")


def wrapped(cause: BaseException) -> BaseException:
    """As httpx-aiohttp raises them: an httpx error whose cause is aiohttp's."""
    error = httpx.TransportError("transport failed")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (aiohttp.ConnectionTimeoutError(), 502),
        (wrapped(aiohttp.ConnectionTimeoutError()), 502),
        (httpx.ConnectTimeout("connect", request=REQUEST), 502),
        (httpx.PoolTimeout("pool", request=REQUEST), 502),
        (httpx.ConnectError("refused", request=REQUEST), 502),
        (wrapped(ConnectionRefusedError()), 502),
        (aiohttp.ServerTimeoutError(), 504),
        (wrapped(aiohttp.SocketTimeoutError()), 504),
        (httpx.ReadTimeout("read", request=REQUEST), 504),
        (TimeoutError(), 504),
        (aiohttp.ServerDisconnectedError(), 502),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_never_reached_is_502_and_silent_is_504(error: BaseException, status: int) -> None:
    assert describe_transport_error(error).status == status
