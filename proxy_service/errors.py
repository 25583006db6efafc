"""Errors the proxy answers with, rendered in the calling protocol's own shape.

ProxyError                  status + message, rendered per protocol
├── NotRetryable            sent with x-should-retry: false
│   ├── AuthenticationFailed    401: missing, unknown, inactive or expired key
│   └── AdminForbidden          403: missing or wrong x-admin-token
├── InvalidRequest          400: a body the protocol cannot accept
├── RequestTooLarge         413: body over MAX_REQUEST_BYTES
├── ClientGone              499: the client left before its request was complete
├── InternalError           500: a bug; logged in one line, recorded, never a traceback
└── UpstreamFailure         502/504: upstream unreachable, failing or silent
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import orjson
from fastapi import Request
from fastapi.responses import Response

from proxy_service.convert.anthropic.errors import error_body, status_error_type
from shared.redis_client import REDIS_FAILURES
from shared.sse import EventTooLarge
from shared.supervision import describe_failure

log = logging.getLogger(__name__)

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}
STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limit_exceeded",
    503: "unavailable",
}
"""The `code` of an error whose class names none: the usual one for its status."""


class ProxyError(Exception):
    """An error with the HTTP status and message the client should see."""

    status: int = 500
    code: str | None = None
    """Set by each subclass; else STATUS_CODES' for the status (a client branching on `code`
    must not read `internal_error` on a 404)."""

    def __init__(
        self, message: str, headers: dict[str, str] | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if self.code is None:
            fallback = "invalid_request" if self.status < 500 else "internal_error"
            self.code = STATUS_CODES.get(self.status, fallback)

    @classmethod
    def with_status(cls, status: int, message: str) -> ProxyError:
        """A plain error for a status the framework decided (404, 405, validation)."""
        return cls(message, status=status)


class NotRetryable(ProxyError):
    """Errors a retry cannot fix: `x-should-retry: false` stops the SDKs' (and Claude Code's)
    automatic retries, which otherwise back off for minutes on a 401."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "false"})


class ChangeReplaced(ProxyError):
    """An admin change keys.json was loaded over before the logger wrote it (a hand edit of
    the file, or a failover of the key set's Redis node): not in force; make it again."""

    status = 409
    code = "change_replaced"

    def __init__(self) -> None:
        super().__init__(
            "keys.json was loaded into Redis again before this change was written to it (the "
            "file was edited, or the key set's Redis node failed over): the change is not in "
            "force; make it again"
        )


class AuthenticationFailed(NotRetryable):
    status = 401
    code = "invalid_api_key"


class AdminForbidden(NotRetryable):
    status = 403
    code = "forbidden"


class InvalidRequest(ProxyError):
    status = 400
    code = "invalid_request"


class RequestTooLarge(ProxyError):
    status = 413
    code = "request_too_large"


class ClientGone(ProxyError):
    """Nobody reads the answer; rendered only so the server has something to close with."""

    status = 499
    code = "client_closed_request"


class InternalError(ProxyError):
    status = 500
    code = "internal_error"


class UpstreamFailure(ProxyError):
    """The upstream could not be reached (502) or went silent (504)."""

    status = 502
    code = "upstream_error"


@contextlib.contextmanager
def event_bounds() -> Iterator[None]:
    """Around a relay's reading: an upstream event past MAX_UPSTREAM_EVENT_BYTES fails the
    stream as the upstream's failure, like a connection cut (the relay says so to the client)."""
    try:
        yield
    except EventTooLarge as error:
        raise UpstreamFailure(str(error)) from None


def openai_error_body(status: int, message: str, code: str | None = None) -> bytes:
    """`{"error": {"message", "type", "code"}}` as the OpenAI API and SDK expect."""
    error_type = OPENAI_ERROR_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return orjson.dumps({"error": {"message": message, "type": error_type, "code": code}})


def anthropic_error_body(status: int, message: str) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}` as the Anthropic API and SDK expect."""
    return orjson.dumps(error_body(status_error_type(status)[1], message))


def render_error(error: ProxyError, protocol: str) -> Response:
    """The error as a JSON response in `protocol`'s shape (`anthropic` or anything else)."""
    body = (
        anthropic_error_body(error.status, error.message)
        if protocol == "anthropic"
        else openai_error_body(error.status, error.message, error.code)
    )
    return Response(body, error.status, headers=error.headers, media_type="application/json")


def protocol_of(path: str, headers: Mapping[str, str]) -> str:
    """Anthropic's shape on Anthropic routes and for requests that carry `anthropic-version`
    (every Anthropic client sends it, e.g. Claude Code listing models); OpenAI's otherwise."""
    anthropic = path.startswith("/v1/messages") or "anthropic-version" in headers
    return "anthropic" if anthropic else "openai"


def error_response(error: Exception, request: Request) -> Response:
    """Any exception a route let out, as the client should see it: a ProxyError as itself,
    Redis trouble as 503, anything else as a logged 500 (never a traceback)."""
    path = request.url.path
    if isinstance(error, ProxyError):
        proxy_error = error
    elif isinstance(error, REDIS_FAILURES):
        proxy_error = ProxyError.with_status(503, "key store unavailable (Redis); retry shortly")
    else:
        log.error("unhandled error on %s: %s", path, describe_failure(error))
        proxy_error = InternalError("internal proxy error")
    return render_error(proxy_error, protocol_of(path, request.headers))
