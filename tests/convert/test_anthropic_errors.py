"""Upstream error answers -> Anthropic error status, body and headers (spec §5, scenario 18)."""

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest

from proxy_service.convert.anthropic.errors import anthropic_error, error_body


def _openai_error(message: str, code: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    )


def test_error_body_shape() -> None:
    assert error_body("api_error", "boom") == {
        "type": "error",
        "error": {"type": "api_error", "message": "boom"},
    }


def test_s18_context_length_becomes_prompt_is_too_long() -> None:
    body = _openai_error(
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130532 tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
    )
    status, error, headers = anthropic_error(400, body, {})
    assert status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(
        "prompt is too long: 130532 tokens > 128000 maximum"
    )
    assert headers == {}


def test_s18_vllm_context_length_shape() -> None:
    body = orjson.dumps(
        {
            "object": "error",
            "message": "This model's maximum context length is 32768 tokens. However, you "
            "requested 40000 tokens (35000 in the messages, 5000 in the completion).",
            "type": "BadRequestError",
            "code": 400,
        }
    )
    status, error, _ = anthropic_error(400, body, {})
    assert (status, error["error"]["type"]) == (400, "invalid_request_error")
    assert error["error"]["message"].startswith("prompt is too long: 40000 tokens > 32768 maximum")


def test_s18_context_length_reported_as_5xx_is_still_a_400() -> None:
    """A 5xx would make Claude Code resend the oversized prompt forever (raine PR #29)."""
    status, error, _ = anthropic_error(500, b"input is too long for the model", {})
    assert status == 400
    assert error["error"]["message"] == "prompt is too long: input is too long for the model"


def test_s18_rate_limit_keeps_retry_after() -> None:
    status, error, headers = anthropic_error(
        429,
        _openai_error("Rate limit reached"),
        {"Retry-After": "7", "Retry-After-Ms": "7000", "X-Other": "1"},
    )
    assert (status, error["error"]["type"]) == (429, "rate_limit_error")
    assert error["error"]["message"] == "Rate limit reached"
    assert headers == {"retry-after": "7", "retry-after-ms": "7000"}


@pytest.mark.parametrize("upstream", [502, 503, 504, 529])
def test_s18_unavailable_becomes_overloaded(upstream: int) -> None:
    status, error, _ = anthropic_error(upstream, b"", {})
    assert (status, error["error"]["type"]) == (529, "overloaded_error")
    assert error["error"]["message"] == f"upstream returned HTTP {upstream}"


def test_500_mentioning_capacity_is_overloaded() -> None:
    status, error, _ = anthropic_error(500, _openai_error("Engine is currently overloaded"), {})
    assert (status, error["error"]["type"]) == (529, "overloaded_error")


def test_401_never_echoes_upstream_text() -> None:
    body = _openai_error("Incorrect API key provided: sk-proj-SECRET123. You can find your key...")
    status, error, headers = anthropic_error(401, body, {"www-authenticate": "Bearer"})
    assert (status, error["error"]["type"]) == (401, "authentication_error")
    assert "SECRET" not in error["error"]["message"]
    assert "upstream" in error["error"]["message"]
    assert headers == {}


@pytest.mark.parametrize(
    ("upstream", "status", "error_type"),
    [
        (400, 400, "invalid_request_error"),
        (402, 402, "billing_error"),
        (403, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (408, 504, "timeout_error"),
        (413, 413, "request_too_large"),
        (422, 400, "invalid_request_error"),
        (418, 418, "invalid_request_error"),
        (500, 500, "api_error"),
        (501, 501, "api_error"),
        (302, 502, "api_error"),
    ],
)
def test_status_table(upstream: int, status: int, error_type: str) -> None:
    got_status, error, _ = anthropic_error(upstream, _openai_error("upstream says no"), {})
    assert (got_status, error["error"]["type"]) == (status, error_type)
    assert error["error"]["message"] == "upstream says no"


def test_404_keeps_the_upstream_message_naming_the_model() -> None:
    body = _openai_error("The model `gpt-9` does not exist", "model_not_found")
    _, error, _ = anthropic_error(404, body, {})
    assert error["error"]["message"] == "The model `gpt-9` does not exist"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"plain text failure", "plain text failure"),
        (b'{"detail": "Not authenticated here"}', "Not authenticated here"),
        (b'{"detail": {"message": "bedrock says"}}', "bedrock says"),
        (b'{"Message": "aws says"}', "aws says"),
        (b'{"error": "just a string"}', "just a string"),
        (b'{"detail": [{"loc": ["body"], "msg": "bad"}]}', '[{"loc":["body"],"msg":"bad"}]'),
        (b'{"type":"error","error":{"type":"invalid_request_error","message":"anth"}}', "anth"),
        (b"<html><body>502 Bad Gateway</body></html>", "upstream returned HTTP 400"),
        (b"   ", "upstream returned HTTP 400"),
        (b"\xff\xfe broken bytes", "\ufffd\ufffd broken bytes"),
        (b"[]", "[]"),
    ],
)
def test_message_extraction(body: bytes, message: str) -> None:
    _, error, _ = anthropic_error(400, body, {})
    assert error["error"]["message"] == message


def test_long_messages_are_bounded() -> None:
    _, error, _ = anthropic_error(400, b"x" * 10_000, {})
    assert len(error["error"]["message"]) == 2000


@pytest.mark.parametrize(
    ("upstream", "body", "exception"),
    [
        (400, _openai_error("maximum context length is 10 tokens"), anthropic.BadRequestError),
        (429, _openai_error("slow down"), anthropic.RateLimitError),
        (503, b"", anthropic.OverloadedError),
        (401, _openai_error("bad key sk-x"), anthropic.AuthenticationError),
        (404, _openai_error("no model"), anthropic.NotFoundError),
    ],
)
def test_s18_sdk_e2e_raises_the_right_exception(
    upstream: int, body: bytes, exception: type[anthropic.APIStatusError]
) -> None:
    status, error, headers = anthropic_error(upstream, body, {"retry-after": "0"})

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=orjson.dumps(error), headers=headers)

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://proxy.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(exception) as caught:
        client.messages.create(
            model="claude-proxy-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body == error
