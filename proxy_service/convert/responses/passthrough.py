"""RESPONSES_MODE=passthrough: what the record needs from an upstream that speaks the Responses
API itself, read on the side of bytes that go to the client unchanged. Pure.

The usage is in the terminal event (`response.completed`, `.incomplete`, `.failed`) or the
answer's `usage`, in the Responses shape (input/output tokens); records keep the Chat
Completions names, so it is renamed here.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from proxy_service.convert.anthropic.token_count import estimate_json, estimate_text
from proxy_service.convert.openai.estimate import estimate_prompt
from proxy_service.convert.openai.stream_tap import OpenAIStreamTap
from proxy_service.convert.openai.usage import usage_record
from proxy_service.convert.responses.errors import InvalidRequest
from proxy_service.convert.responses.request import ResponsesOptions, responses_to_chat_request
from shared.sse import SSEDecoder

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_OPTIONS = ResponsesOptions()


def usage_of(usage: Any) -> dict[str, int] | None:
    """A Responses `usage` object as a record's usage; None when absent or malformed."""
    return usage_record(usage)


class ResponsesStreamTap(OpenAIStreamTap):
    """Responses SSE forwarded as it came; id and model from `response.created`, usage from the
    terminal event, the error from `response.failed` or an `error` event."""

    def __init__(self) -> None:
        super().__init__(drop_usage_chunk=False)

    def _worth_inspecting(self, complete: bytes) -> bool:
        return (
            not self._seen_first
            or b'"usage"' in complete
            or b'"response.failed"' in complete
            or b'"type":"error"' in complete
            or b'"type": "error"' in complete
        )

    def _take(self, payload: bytes) -> bool:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict):
            if not self._seen_first:
                self._seen_first = True
                self.upstream_id = _text(response.get("id"))
                self.model = _text(response.get("model"))
            if kind in TERMINAL_EVENTS:
                self.usage = usage_of(response.get("usage")) or self.usage
            if kind == "response.failed":
                self.error = _message(response.get("error")) or "response.failed"
        elif kind == "error":
            self.error = _message(event) or "error event"
        return False


def error_event(status: int, message: str, code: str | None) -> bytes:
    """The Responses `error` event a passthrough stream ends with when it breaks after the
    first byte (the upstream's own `response.failed` cannot be made up without its response);
    the client sees the stream end without `response.completed` and retries the turn."""
    event = {"type": "error", "code": code or "server_error", "message": message, "param": None}
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


def estimate(body: dict[str, Any], relayed: bytes) -> tuple[int, int]:
    """(prompt, output) tokens of a request whose upstream reported no usage: the prompt as the
    bridge would send it, the output from the text, arguments and inputs relayed."""
    try:
        prompt = estimate_prompt(responses_to_chat_request(body, _OPTIONS).body)
    except InvalidRequest:
        prompt = max(1, math.ceil(estimate_json(body.get("input"))))
    return prompt, _output_estimate(relayed)


def _output_estimate(relayed: bytes) -> int:
    try:
        answer = orjson.loads(relayed)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        return math.ceil(estimate_json(answer.get("output")))
    decoder = SSEDecoder()
    total = 0.0
    for event in [*decoder.feed(relayed), *decoder.flush()]:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict) or not str(data.get("type", "")).endswith(".delta"):
            continue
        if isinstance(delta := data.get("delta"), str):
            total += estimate_text(delta)
    return math.ceil(total)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _message(error: Any) -> str | None:
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message is not None else _text(error.get("code"))
    return None
