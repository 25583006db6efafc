"""Upstream errors -> Responses errors (spec §5); scenarios 10, 11 and 12.

The rule under test: Codex retries every 5xx up to 30 times, so nothing a retry cannot fix is a
5xx, and a context overflow is the 400 `context_length_exceeded` Codex recognises.
"""

from __future__ import annotations

import orjson
import pytest

from proxy_service.convert.responses import error_body, responses_error
from proxy_service.convert.responses.errors import stream_failure


def openai_error(message: str, **extra: object) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", **extra}})


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            openai_error(
                "This model's maximum context length is 32768 tokens. However, you requested "
                "40000 tokens (39000 in the messages, 1000 in the completion)."
            ),
        ),  # vLLM
        (
            400,
            orjson.dumps(
                {
                    "object": "error",
                    "message": "The input (40000 tokens) is longer than the model's context "
                    "length (32768 tokens).",
                    "code": 400,
                }
            ),
        ),  # SGLang, vLLM's flat shape
        (400, openai_error("too long", code="context_length_exceeded")),
        (413, b"prompt is too long: 210000 tokens > 200000 maximum"),
        (422, orjson.dumps({"detail": "Input is too long for this model"})),
        (500, openai_error("context window exceeded")),  # a 5xx would be retried 30 times
    ],
)
def test_s10_context_overflow_is_400_context_length_exceeded(status: int, body: bytes) -> None:
    client_status, error, headers = responses_error(status, body, {})
    assert client_status == 400 and headers == {}
    assert error["error"]["code"] == "context_length_exceeded"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == "input"
    assert error["error"]["message"].startswith("Your input exceeds the context window")


@pytest.mark.parametrize(
    ("headers", "message", "kept"),
    [
        ({"Retry-After": "7"}, "Rate limit reached. Please try again in 7s.", {"retry-after": "7"}),
        (
            {"retry-after-ms": "1500", "X-Other": "x"},
            "Rate limit reached",
            {"retry-after-ms": "1500"},
        ),
        ({}, "Rate limit reached", {}),
    ],
)
def test_s11_429_keeps_retry_after_and_says_when(headers: dict, message: str, kept: dict) -> None:
    status, error, extra = responses_error(429, openai_error("Rate limit reached"), headers)
    assert (status, extra) == (429, kept)
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert error["error"]["message"] == message  # Codex reads the wait from "try again in Ns"


def test_s11_429_mentioning_context_stays_a_rate_limit() -> None:
    status, error, _ = responses_error(429, openai_error("tokens per minute in context window"), {})
    assert (status, error["error"]["code"]) == (429, "rate_limit_exceeded")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, 502),
        (501, 502),
        (502, 502),
        (503, 503),
        (504, 504),
        (529, 503),
        (408, 504),
        (302, 502),
    ],
)
def test_s12_server_errors_are_502_503_504_never_a_bare_500(status: int, expected: int) -> None:
    client_status, error, headers = responses_error(
        status, b"<html>oops</html>", {"Retry-After": "3"}
    )
    assert client_status == expected
    assert error["error"] == {
        "message": f"upstream returned HTTP {status}",
        "type": "server_error",
        "code": "server_error",
        "param": None,
    }
    assert headers == ({"retry-after": "3"} if status >= 500 else {})


@pytest.mark.parametrize(
    "message",
    [
        "jinja2.exceptions.TemplateError: Conversation roles must alternate user/assistant",
        "Error in chat template rendering",
        "1 validation error for ChatCompletionRequest",
    ],
)
def test_s12_deterministic_5xx_become_400(message: str) -> None:
    status, error, headers = responses_error(500, openai_error(message), {})
    assert (status, error["error"]["type"], headers) == (400, "invalid_request_error", {})
    assert error["error"]["message"] == message


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (400, 400, None),
        (402, 402, None),
        (404, 404, "model_not_found"),
        (409, 409, None),
        (413, 413, None),
        (422, 400, None),
    ],
)
def test_client_errors_stay_4xx(status: int, expected: int, code: str | None) -> None:
    client_status, error, _ = responses_error(
        status, openai_error("The model `x` does not exist"), {}
    )
    assert (client_status, error["error"]["code"]) == (expected, code)
    assert error["error"]["message"] == "The model `x` does not exist"


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_auth_failure_is_403_and_hides_the_upstream_text(status: int) -> None:
    body = openai_error("Incorrect API key provided: sk-live-SECRET")
    client_status, error, headers = responses_error(status, body, {"Retry-After": "1"})
    assert (client_status, headers) == (403, {})
    assert error["error"]["code"] == "upstream_auth_error"
    assert "SECRET" not in orjson.dumps(error).decode()


def test_error_body_shape() -> None:
    assert error_body("m") == {
        "error": {"message": "m", "type": "invalid_request_error", "code": None, "param": None}
    }


@pytest.mark.parametrize(
    ("chunk", "code"),
    [
        ({"error": {"message": "overloaded", "code": 503}}, "server_error"),
        ({"error": {"message": "slow down", "code": 429}}, "rate_limit_exceeded"),
        ({"error": {"message": "maximum context length is 8k"}}, "context_length_exceeded"),
        ({"error": {"message": "bad value", "code": 400}}, "invalid_request_error"),
        ({"error": "plain string"}, "server_error"),
        (None, "server_error"),
    ],
)
def test_mid_stream_failure_codes(chunk: object, code: str) -> None:
    got_code, message = stream_failure(chunk, orjson.dumps(chunk))
    assert got_code == code and message
