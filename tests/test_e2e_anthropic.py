"""End to end: the official anthropic SDK through a real proxy process to the fake upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.fake_upstream import REPLY_TEXT, USAGE, chunk, completion
from tests.processes import wait_until
from tests.system import System, running_system

KEY = "bsk-anthropic-e2e-0001"
CONTEXT_OVERFLOW = (
    "This model's maximum context length is 8192 tokens. "
    "However, your messages resulted in 9000 tokens."
)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("e2e-anthropic")
    with running_system(
        redis_url,
        fake_upstream_url,
        root,
        1,
        STREAM_PING_SECONDS="0.3",
        MODEL_MAP="*haiku*=small-model",
    ) as system:
        assert system.upsert(KEY, "ursula").status_code == 200
        yield system


@pytest.fixture
def client(system: System) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=system.url, api_key=KEY, max_retries=0)


def ask(client: anthropic.Anthropic, stream: bool, **extra):
    params = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }
    if stream:
        with client.messages.stream(**params) as events:
            return events.get_final_message()
    return client.messages.create(**params)


def tool_call(call_id: str, name: str, arguments: str, index: int = 0) -> dict:
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_text_reply_usage_and_metering(system: System, client, stream: bool):
    before = len(system.events())
    message = ask(client, stream)
    assert message.content[0].text == REPLY_TEXT and len(message.content) == 1
    assert message.model == "claude-sonnet-4-6" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == USAGE["prompt_tokens"]
    assert message.usage.output_tokens == USAGE["completion_tokens"]
    [event] = system.wait_events(before + 1)[before:]
    assert (
        event["protocol"] == "anthropic_messages" and event["client_app"] == "anthropic-python-sdk"
    )
    assert event["usage"]["total_tokens"] == USAGE["total_tokens"]
    assert event["prompt"]["model"] == "claude-sonnet-4-6"
    response = event["response"]["assembled"] if stream else event["response"]
    assert response["content"][0]["text"] == REPLY_TEXT
    assert response["stop_reason"] == "end_turn"  # the record holds the stream's last frames
    assert response["usage"]["output_tokens"] == USAGE["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_single_tool_call(fake_upstream, client, stream: bool):
    args = '{"city": "Paris"}'
    if stream:
        parts = [
            chunk(
                "m",
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [tool_call("call_1", "get_weather", "")],
                },
            )
        ]
        parts += [
            chunk("m", {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in (args[:5], args[5:11], args[11:])
        ]
        parts += [chunk("m", {}, "tool_calls"), {**chunk("m", {}), "choices": [], "usage": USAGE}]
        fake_upstream.script({"sse": parts})
    else:
        answer = completion("m")
        answer["choices"][0] = {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("call_1", "get_weather", args)],
            },
        }
        fake_upstream.script({"json": answer})
    message = ask(client, stream, tools=[WEATHER_TOOL])
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "Paris"}
    sent = fake_upstream.received()[-1]["body"]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_parallel_tool_calls_stream(fake_upstream, client):
    parts = [chunk("m", {"content": "Checking both."})]
    for i, city in enumerate(("Paris", "Rome")):
        parts.append(
            chunk(
                "m",
                {
                    "tool_calls": [
                        tool_call(f"call_{i}", "get_weather", f'{{"city": "{city}"}}', index=i)
                    ]
                },
            )
        )
    parts.append(chunk("m", {}, "tool_calls"))
    fake_upstream.script({"sse": parts})
    message = ask(client, True, tools=[WEATHER_TOOL])
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert [b.input["city"] for b in message.content[1:]] == ["Paris", "Rome"]
    assert message.content[1].id != message.content[2].id


def test_tool_result_round_trip_reaches_upstream_as_openai_messages(fake_upstream, client):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 21 C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    message = ask(
        client,
        False,
        tools=[WEATHER_TOOL],
        messages=history,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    )
    assert message.content[0].text == REPLY_TEXT
    sent = fake_upstream.received()[-1]["body"]
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assistant, tool, user = sent["messages"][2:]
    assert assistant["tool_calls"][0]["id"] == "toolu_01"
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
    assert tool == {"role": "tool", "tool_call_id": "toolu_01", "content": "Sunny, 21 C"}
    assert user["content"] == "And tomorrow?"
    assert "cache_control" not in str(sent)


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_from_reasoning_content(fake_upstream, client, stream: bool):
    if stream:
        fake_upstream.script(
            {
                "sse": [
                    chunk("m", {"reasoning_content": "Let me think"}),
                    chunk("m", {"reasoning_content": " hard."}),
                    chunk("m", {"content": "42"}),
                    chunk("m", {}, "stop"),
                ]
            }
        )
    else:
        answer = completion("m", "42")
        answer["choices"][0]["message"]["reasoning_content"] = "Let me think hard."
        fake_upstream.script({"json": answer})
    message = ask(client, stream, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think hard." and message.content[1].text == "42"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("upstream", "exception", "check"),
    [
        (
            {
                "status": 429,
                "json": {"error": {"message": "slow down"}},
                "headers": {"retry-after": "7"},
            },
            anthropic.RateLimitError,
            lambda e: e.response.headers["retry-after"] == "7",
        ),
        (
            {
                "status": 400,
                "json": {
                    "error": {
                        "message": CONTEXT_OVERFLOW,
                        "code": "context_length_exceeded",
                    }
                },
            },
            anthropic.BadRequestError,
            lambda e: e.message.find("prompt is too long") >= 0,
        ),
        (
            {"status": 503, "body": "<html>busy</html>", "content_type": "text/html"},
            anthropic.OverloadedError,
            lambda e: e.status_code == 529,
        ),
    ],
)
def test_upstream_errors_raise_the_right_sdk_exception(
    fake_upstream, client, stream, upstream, exception, check
):
    fake_upstream.script(upstream)
    with pytest.raises(exception) as raised:
        ask(client, stream)
    assert check(raised.value)
    assert raised.value.body["type"] == "error"


def test_mid_stream_failure_ends_with_an_error_not_a_hang(system: System, fake_upstream, client):
    before = len(system.events())
    fake_upstream.script(
        {"sse": [chunk("m", {"content": f"w{i} "}) for i in range(6)], "abort_after": 3}
    )
    started = time.monotonic()
    with pytest.raises(anthropic.APIError):
        ask(client, True)
    assert time.monotonic() - started < 5
    [event] = system.wait_events(before + 1)[before:]
    assert "mid-stream" in event["error"]


def test_pings_while_the_upstream_is_silent(system: System, fake_upstream):
    fake_upstream.script(
        {"sse": [chunk("m", {"content": "late"}), chunk("m", {}, "stop")], "initial_delay": 1.2}
    )
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    reply = httpx.post(
        system.url + "/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=10
    )
    events = [line[7:] for line in reply.text.splitlines() if line.startswith("event: ")]
    assert events.count("ping") >= 3, events
    assert events[-1] == "message_stop"


def test_client_disconnect_cancels_the_upstream(system: System, fake_upstream):
    fake_upstream.script({"sse": [chunk("m", {"content": "x"})] * 100, "delay": 0.1})
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.stream(
        "POST", system.url + "/v1/messages", json=body, headers={"x-api-key": KEY}
    ) as reply:
        next(reply.iter_raw())
    wait_until(lambda: fake_upstream.open_streams() == 0, 3, what="upstream stream cancelled")


def test_auth_errors_in_anthropic_shape(system: System):
    with pytest.raises(anthropic.AuthenticationError) as raised:
        ask(
            anthropic.Anthropic(base_url=system.url, api_key="bsk-wrong-key-0000", max_retries=0),
            False,
        )
    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "invalid, inactive or expired API key",
        },
    }
    reply = httpx.post(system.url + "/v1/messages?beta=true", json={})
    assert reply.status_code == 401 and reply.json()["error"]["type"] == "authentication_error"
    assert reply.headers["x-should-retry"] == "false"  # else Claude Code retries for minutes


def test_invalid_body_is_an_anthropic_400(system: System):
    reply = httpx.post(
        system.url + "/v1/messages?beta=true",
        json={"model": "x", "messages": []},
        headers={"x-api-key": KEY},
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: field required (a positive integer)",
    }


def test_claude_code_side_routes(system: System, fake_upstream):
    before = len(system.events())
    assert httpx.head(system.url + "/").status_code == 200
    assert httpx.get(system.url + "/").status_code == 200
    reply = httpx.post(system.url + "/api/event_logging/batch", json={"events": []})
    assert reply.status_code == 204
    body = {
        "model": "claude-haiku-4-6",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello there"}],
        "tools": [WEATHER_TOOL],
    }
    counted = httpx.post(
        system.url + "/v1/messages/count_tokens?beta=true",
        json=body,
        headers={"x-api-key": KEY, "anthropic-beta": "whatever-2099-01-01"},
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 10
    without_tools = httpx.post(
        system.url + "/v1/messages/count_tokens",
        json={**body, "tools": []},
        headers={"x-api-key": KEY},
    ).json()["input_tokens"]
    assert without_tools < counted.json()["input_tokens"]
    assert fake_upstream.received() == []
    # Metered: one record each, no usage charged.
    counts = system.wait_events(before + 2)[before:]
    assert [event["protocol"] for event in counts] == ["anthropic_count_tokens"] * 2
    assert [event["usage"] for event in counts] == [None, None]


def test_model_map_and_headers_not_forwarded(system: System, fake_upstream, client):
    message = client.messages.create(
        model="claude-haiku-4-6",
        max_tokens=5,
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
        extra_body={"context_management": {"edits": []}, "service_tier": "auto"},
    )
    assert message.model == "claude-haiku-4-6"
    received = fake_upstream.received()[-1]
    assert received["body"]["model"] == "small-model"
    assert "context_management" not in received["body"] and "service_tier" not in received["body"]
    assert not any(h.startswith("anthropic") for h in received["headers"])
