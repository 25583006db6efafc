"""client_app: x-client-app, else Codex's originator, else a known User-Agent (Claude Code only
with its own headers), else the agent's product, else unknown.

The header sets are those real clients sent (research/real-clients.md, and Claude Code 2.1.197
captured against a listening socket), trimmed to what the rules could look at.
"""

import pytest

from proxy_service.metering import client_app_from

CLAUDE_CODE_2_1_197 = {
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-claude-code-session-id": "893a9afc-92ea-4f22-845d-a4ae2aa56183",
    "anthropic-beta": "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14",
    "anthropic-version": "2023-06-01",
    "x-app": "cli",
    "x-stainless-package-version": "0.94.0",
}
QWEN_CODE_ANTHROPIC = {
    "user-agent": "claude-cli/0.24.4 (external, cli)",
    "anthropic-beta": "interleaved-thinking-2025-05-14",
    "anthropic-version": "2023-06-01",
    "x-app": "cli",
    "x-stainless-package-version": "0.36.3",
}
CODEX_EXEC = {
    "originator": "codex_exec",
    "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
    "x-codex-beta-features": "remote_compaction_v2",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-client-app": "billing-bot", "user-agent": "OpenAI/Python 1.0"}, "billing-bot"),
        ({**CODEX_EXEC, "x-client-app": "codex-ci"}, "codex-ci"),
        (CLAUDE_CODE_2_1_197, "claude-code"),
        ({**CLAUDE_CODE_2_1_197, "anthropic-beta": "oauth-2025-04-20"}, "claude-code"),
        (
            {k: v for k, v in CLAUDE_CODE_2_1_197.items() if k != "x-claude-code-session-id"},
            "claude-code",
        ),
        # Claude Code 2.1.332's gateway model discovery (GET /v1/models)
        ({"user-agent": "claude-code/2.1.332", "anthropic-version": "2023-06-01"}, "claude-code"),
        (QWEN_CODE_ANTHROPIC, "qwen-code"),
        ({"user-agent": "QwenCode/0.24.4 (linux; x64)"}, "qwen-code"),
        (CODEX_EXEC, "codex"),
        (
            {"originator": "codex_cli_rs", "user-agent": "codex_cli_rs/0.171.0 (Mac OS 15.7.3)"},
            "codex",
        ),
        ({"originator": "codex_exec", "user-agent": "reqwest/0.12"}, "codex"),
        ({"user-agent": "Agents/Python 0.24.0", "x-stainless-lang": "python"}, "openai-agents-sdk"),
        ({"user-agent": "opencode/1.18.33", "x-session-affinity": "ses_1"}, "opencode"),
        ({"user-agent": "pydantic-ai/2.68.0"}, "pydantic-ai"),
        ({"user-agent": "langchain-anthropic/1.7.10"}, "langchain-anthropic"),
        # aider (through litellm) and LangChain's ChatOpenAI send the openai SDK's agent alone
        ({"user-agent": "OpenAI/Python 2.20.0", "x-stainless-lang": "python"}, "openai-python-sdk"),
        ({"user-agent": "OpenAI/Python 3.57.0", "x-client-app": "aider"}, "aider"),
        ({"user-agent": "Anthropic/Python 0.40.0"}, "anthropic-python-sdk"),
        ({"user-agent": "OpenAI/JS 4.0.0"}, "openai-js-sdk"),
        ({"user-agent": "curl/8.5.0"}, "curl"),
        ({}, "unknown"),
    ],
)
def test_client_app(headers, expected):
    assert client_app_from(headers) == expected
