"""Reading an upstream (OpenAI-style) error answer, whatever protocol it is mapped onto.

The Anthropic and Responses mappings differ in statuses and wording, but must agree on what the
upstream said: its message, whether it is a context overflow, which headers a retry needs.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

_MAX_MESSAGE = 2000
_RETRY_HEADERS = ("retry-after", "retry-after-ms")

CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "too many input tokens",
)
"""Lower-case wording of a context overflow; clients compact on it, so it must not become 5xx."""

KEEP_AS_IS = frozenset({401, 402, 403, 404, 429})
"""Upstream statuses whose text is never reinterpreted as a context overflow or an overload
(a 429 may well mention "context")."""


def upstream_message(body: bytes) -> str:
    """The human message inside any common error body shape, or its plain text, bounded."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        if text.startswith("<"):
            return ""  # an HTML error page from a load balancer says nothing useful
        return text[:_MAX_MESSAGE]
    return _find_message(parsed)[:_MAX_MESSAGE] or text[:_MAX_MESSAGE]


def retry_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's Retry-After headers, lower-cased, for the client's backoff."""
    return {
        name: value
        for name, value in ((k.lower(), v) for k, v in headers.items())
        if name in _RETRY_HEADERS
    }


def chunk_error_status(chunk: object) -> int:
    """The HTTP status an error chunk sent after the 200 stands for; 500 when it names none."""
    error = chunk.get("error") if isinstance(chunk, dict) else None
    code = (error.get("code") or error.get("status")) if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code <= 599 else 500


def _find_message(node: object) -> str:
    """Walk OpenAI `error.message`, vLLM `message`, FastAPI/Bedrock `detail`, AWS `Message`."""
    match node:
        case str():
            return node.strip()
        case {"error": error} if error:
            return _find_message(error)
        case {"message": message} if message:
            return _find_message(message)
        case {"detail": detail} if detail:
            return _find_message(detail)
        case {"Message": message} if message:
            return _find_message(message)
        case dict() | list() if node:
            return orjson.dumps(node).decode()
        case _:
            return ""
