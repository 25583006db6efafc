"""Anthropic error bodies, and the mapping of an upstream (OpenAI-style) error answer onto them.

The status/type table follows the Anthropic errors page; the SDKs pick their exception class from
the status and retry 408/409/429/>=500, so the status matters as much as `error.type`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from proxy_service.convert.openai.upstream_errors import (
    CONTEXT_MARKERS,
    KEEP_AS_IS,
    retry_headers,
    upstream_message,
)

# status -> (client status, error type); statuses not listed fall back by class (4xx / 5xx).
_STATUS_MAP: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (402, "billing_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    502: (529, "overloaded_error"),
    503: (529, "overloaded_error"),
    504: (529, "overloaded_error"),
    529: (529, "overloaded_error"),
}
_OVERLOAD_MARKERS = ("overloaded", "capacity")
_MAX_TOKENS_RE = re.compile(r"(?:maximum context length|context length|limit) is (\d+)")
_PROMPT_TOKENS_RE = re.compile(r"(?:resulted in|you requested|requested|prompt contains) (\d+)")
_UPSTREAM_AUTH_MESSAGE = (
    "The upstream provider rejected the proxy's credentials; contact the proxy administrator."
)


def error_body(error_type: str, message: str) -> dict:
    """The one Anthropic error shape, used for JSON answers and in-stream `error` frames alike."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def status_error_type(status: int) -> tuple[int, str]:
    """(client status, Anthropic error type) for an upstream status, by table then by class."""
    if mapped := _STATUS_MAP.get(status):
        return mapped
    if 400 <= status < 500:
        return status, "invalid_request_error"
    if status >= 500:
        return status, "api_error"
    return 502, "api_error"  # 1xx/3xx reaching here means the upstream answered nonsense


def anthropic_error(
    status: int, body: bytes, headers: Mapping[str, str]
) -> tuple[int, dict, dict[str, str]]:
    """Map an upstream non-2xx answer to (client status, Anthropic error body, extra headers)."""
    client_status, error_type = status_error_type(status)
    if status == 401:
        # The upstream text may quote the proxy's own key; never forward it.
        return client_status, error_body(error_type, _UPSTREAM_AUTH_MESSAGE), {}
    message = upstream_message(body) or f"upstream returned HTTP {status}"
    lowered = message.lower()
    if status not in KEEP_AS_IS:
        if any(marker in lowered for marker in CONTEXT_MARKERS):
            # Claude Code compacts on this wording; a 5xx here would make it resend forever.
            return 400, error_body("invalid_request_error", _prompt_too_long(message)), {}
        if status >= 500 and any(marker in lowered for marker in _OVERLOAD_MARKERS):
            client_status, error_type = 529, "overloaded_error"
    return client_status, error_body(error_type, message), retry_headers(headers)


def _prompt_too_long(message: str) -> str:
    """Anthropic's context-overflow wording, with the token counts when the upstream gives them."""
    if message.lower().startswith("prompt is too long"):
        return message
    limit = _MAX_TOKENS_RE.search(message)
    used = _PROMPT_TOKENS_RE.search(message)
    if limit and used:
        return f"prompt is too long: {used[1]} tokens > {limit[1]} maximum ({message})"
    return f"prompt is too long: {message}"
