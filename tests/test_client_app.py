"""client_app: x-client-app, else a known User-Agent, else the agent's product, else unknown."""

import pytest

from proxy_service.metering import client_app_from


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-client-app": "billing-bot", "user-agent": "OpenAI/Python 1.0"}, "billing-bot"),
        ({"user-agent": "claude-cli/2.1.126 (external, cli)"}, "claude-code"),
        ({"user-agent": "Anthropic/Python 0.40.0"}, "anthropic-python-sdk"),
        ({"user-agent": "OpenAI/Python 1.54.0"}, "openai-python-sdk"),
        ({"user-agent": "OpenAI/JS 4.0.0"}, "openai-js-sdk"),
        ({"user-agent": "curl/8.5.0"}, "curl"),
        ({}, "unknown"),
    ],
)
def test_client_app(headers, expected):
    assert client_app_from(headers) == expected
