"""Responses API errors: the conversion refusals, and upstream error answers mapped onto them (§5).

The status matters more than the body: Codex retries every 5xx up to (1+4)x(1+5) = 30 times and
every client retries 429, so whatever a retry cannot fix is a 4xx, and a context overflow is the
400 `context_length_exceeded` Codex recognises (it then tells the user to compact).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from proxy_service.convert.openai.upstream_errors import (
    CONTEXT_MARKERS,
    KEEP_AS_IS,
    chunk_error_status,
    retry_headers,
    upstream_message,
)

# 5xx bodies that describe the request, not the server: a retry would fail the same way.
_DETERMINISTIC_MARKERS = ("chat template", "jinja", "must alternate", "validation error")
_RETRY_IN = re.compile(r"try again in", re.IGNORECASE)
_CONTEXT_MESSAGE = (
    "Your input exceeds the context window of this model. "
    "Please adjust your input and try again. (upstream: {})"
)
_UPSTREAM_AUTH_MESSAGE = (
    "The upstream provider rejected the gateway's credentials; contact the gateway administrator."
)


class InvalidRequest(ValueError):
    """A body the bridge refuses; always a 400, with the field named in the message and `param`."""

    code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class UnsupportedTool(InvalidRequest):
    """A hosted tool (web_search, file_search, mcp...) the upstream cannot run, in strict mode."""

    code = "unsupported_tool_type"


class UnsupportedParameter(InvalidRequest):
    """A stateful feature (conversation, prompt, background) a storeless bridge cannot honour."""

    code = "unsupported_parameter"


class PreviousResponseNotFound(InvalidRequest):
    """Nothing is stored, so no previous response exists; silently ignoring it loses context."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"Previous response with id '{response_id}' not found.", param="previous_response_id"
        )


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict:
    """The one Responses error shape: `{"error": {"message", "type", "code", "param"}}`."""
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}


def request_error(error: InvalidRequest) -> tuple[int, dict]:
    """(400, body) for a conversion refusal; the route sends it before any upstream call."""
    return 400, error_body(str(error), code=error.code, param=error.param)


def responses_error(
    status: int, body: bytes, headers: Mapping[str, str]
) -> tuple[int, dict, dict[str, str]]:
    """Map an upstream non-2xx answer to (client status, Responses error body, headers to keep)."""
    if status in (401, 403):
        # The gateway's own upstream key failed: not the client's key (so no 401), and nothing a
        # retry fixes (so no 5xx, which Codex would resend 30 times). The text may quote the key.
        return (
            403,
            error_body(_UPSTREAM_AUTH_MESSAGE, "permission_error", "upstream_auth_error"),
            {},
        )
    message = upstream_message(body) or f"upstream returned HTTP {status}"
    lowered = f"{message} {_upstream_code(body)}".lower()
    retry = retry_headers(headers)
    if status not in KEEP_AS_IS and any(marker in lowered for marker in CONTEXT_MARKERS):
        text = _CONTEXT_MESSAGE.format(message)
        return 400, error_body(text, code="context_length_exceeded", param="input"), {}
    if status == 429:
        text = _rate_limit_message(message, retry)
        return 429, error_body(text, "rate_limit_error", "rate_limit_exceeded"), retry
    if status >= 500 and any(marker in lowered for marker in _DETERMINISTIC_MARKERS):
        return 400, error_body(message), {}
    client_status, error_type, code = _by_status(status, lowered)
    return client_status, error_body(message, error_type, code), retry if status >= 500 else {}


def stream_failure(chunk: object, data: bytes) -> tuple[str, str]:
    """(code, message) for `response.failed` from an error chunk the upstream sent after its 200.

    Codex retries the turn for every code but `context_length_exceeded`, which is what we want.
    """
    client_status, body, _ = responses_error(chunk_error_status(chunk), data, {})
    code = body["error"]["code"]
    if code not in ("context_length_exceeded", "rate_limit_exceeded"):
        code = "server_error" if client_status >= 500 else code or "invalid_request_error"
    return code, body["error"]["message"]


def _by_status(status: int, lowered: str) -> tuple[int, str, str | None]:
    """(client status, type, code) by status class: 5xx become 502/503/504, never a bare 500
    (Codex prints only "high demand" for a 500), and odd non-errors become 502."""
    if status == 404:
        return 404, "invalid_request_error", "model_not_found" if "model" in lowered else None
    if status in (408, 504):
        return 504, "server_error", "server_error"
    if status in (503, 529):
        return 503, "server_error", "server_error"
    if 400 <= status < 500:
        return (400 if status == 422 else status), "invalid_request_error", None
    return 502, "server_error", "server_error"


def _rate_limit_message(message: str, retry: dict[str, str]) -> str:
    """Codex reads the wait out of "try again in Ns"; add it from Retry-After when missing."""
    seconds = retry.get("retry-after", "")
    if _RETRY_IN.search(message) or not seconds.strip().isdigit():
        return message
    return f"{message.rstrip('.')}. Please try again in {int(seconds)}s."


def _upstream_code(body: bytes) -> str:
    """OpenAI-style `error.code` (e.g. `context_length_exceeded` with a terse message)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else ""
