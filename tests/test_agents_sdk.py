"""The OpenAI Agents SDK's default model (the Responses API) through a real proxy: a two-tool
agent runs its tools and finishes, tracing off, every request recorded with exact tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from tests.fake_upstream import USAGE, completion
from tests.system import System, running_system

KEY = "bsk-agents-sdk-e2e-0001"
CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(f"weather:{city}")
    return f"sunny in {city}"


@function_tool
def get_time(city: str) -> str:
    """The local time in a city."""
    CALLS.append(f"time:{city}")
    return f"noon in {city}"


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("agents-sdk")
    with running_system(redis_url, fake_upstream_url, root, 1) as system:
        assert system.upsert(KEY, "agatha").status_code == 200
        yield system


def tool_calls_reply() -> dict:
    answer = completion("m")
    calls = [
        {"id": f"call_{name}", "type": "function", "function": {"name": name}}
        for name in ("get_weather", "get_time")
    ]
    for call in calls:
        call["function"]["arguments"] = '{"city": "Oslo"}'
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    answer["choices"][0].update(message=message, finish_reason="tool_calls")
    return answer


def test_a_two_tool_agent_runs_through_the_gateway(system: System, fake_upstream):
    set_tracing_disabled(True)
    CALLS.clear()
    fake_upstream.script(
        {"json": tool_calls_reply()}, {"json": completion("m", "Sunny, and it is noon.")}
    )
    client = AsyncOpenAI(base_url=system.url + "/v1", api_key=KEY, max_retries=0)
    agent = Agent(
        name="helper",
        instructions="Answer with the tools.",
        tools=[get_weather, get_time],
        model=OpenAIResponsesModel(model="gw-model", openai_client=client),
    )
    before = len(system.events())
    result = Runner.run_sync(agent, "Weather and time in Oslo?")
    assert result.final_output == "Sunny, and it is noon."
    assert sorted(CALLS) == ["time:Oslo", "weather:Oslo"]
    second = fake_upstream.received()[-1]["body"]["messages"]
    outputs = {m["tool_call_id"]: m["content"] for m in second if m["role"] == "tool"}
    assert outputs == {"call_get_weather": "sunny in Oslo", "call_get_time": "noon in Oslo"}
    records = system.wait_events(before + 2)[before:]
    assert [r["protocol"] for r in records] == ["openai_responses"] * 2
    assert all(r["usage"] == {**USAGE, "cached_tokens": 0} for r in records)
    assert {r["status_code"] for r in records} == {200}
    assert {r["client_app"] for r in records} == {"openai-agents-sdk"}
