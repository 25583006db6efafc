"""POST /v1/responses end to end: the official openai SDK through two real proxies and a logger
to the scripted fake Chat Completions upstream; every record checked for exact tokens."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
import zstandard
from pydantic import BaseModel

from tests.fake_upstream import REPLY_TEXT, USAGE, chunk, completion
from tests.processes import wait_until
from tests.system import System, running_system

KEY = "bsk-responses-e2e-0001"
RECORDED_USAGE = {**USAGE, "cached_tokens": 0}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("responses-e2e")
    with running_system(redis_url, fake_upstream_url, root, 2) as system:
        assert system.upsert(KEY, "rita").status_code == 200
        yield system


@pytest.fixture(params=[0, 1], ids=["proxy-1", "proxy-2"])
def client(system: System, request) -> openai.OpenAI:
    return openai.OpenAI(base_url=system.proxy_urls[request.param] + "/v1", api_key=KEY)


def record_of(system: System, request_id: str) -> dict:
    return record_where(system, lambda e: e["request_id"] == request_id)


def record_of_stream(system: System, response_id: str) -> dict:
    """A stream's record, found by the id of the Response its client assembled."""
    return record_where(
        system, lambda e: (e["response"].get("assembled") or {}).get("id") == response_id
    )


def record_where(system: System, matches) -> dict:
    def found() -> dict | None:
        return next((e for e in system.events() if matches(e)), None)

    return wait_until(found, 10, what="the record")


def record_of_answer(system: System, response_id: str) -> dict:
    """A non-streamed answer's record, found by the id of the Response the client got."""
    return record_where(system, lambda e: (e.get("response") or {}).get("id") == response_id)


def usage_chunk() -> dict:
    return {**chunk("m", {}), "choices": [], "usage": USAGE}


def tool_chunk(index: int, call_id: str, name: str, arguments: str) -> dict:
    call = {"index": index, "id": call_id, "function": {"name": name, "arguments": arguments}}
    return chunk("m", {"tool_calls": [call]})


def test_create_returns_the_upstream_text_and_is_recorded(system, client):
    raw = client.responses.with_raw_response.create(model="gw-model", input="Hello")
    response = raw.parse()
    assert response.output_text == REPLY_TEXT and response.status == "completed"
    assert response.usage.input_tokens == 11 and response.usage.output_tokens == 7
    record = record_of(system, raw.headers["x-request-id"])
    assert record["protocol"] == "openai_responses" and record["status_code"] == 200
    assert record["usage"] == RECORDED_USAGE
    assert record["response"]["id"] == response.id


def test_stream_and_get_final_response(system, client):
    with client.responses.stream(model="gw-model", input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == REPLY_TEXT
    record = record_of_stream(system, final.id)
    assert record["usage"] == RECORDED_USAGE and record["status_code"] == 200
    assert record["response"]["assembled"]["id"] == final.id
    assert record["response"]["assembled"]["status"] == "completed"


class Weather(BaseModel):
    city: str
    degrees: int


def test_parse_with_a_pydantic_model(system, client, fake_upstream):
    answer = '{"city": "Oslo", "degrees": -3}'
    fake_upstream.script({"json": completion("m", answer)})
    parsed = client.responses.parse(model="gw-model", input="weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Oslo", degrees=-3)
    sent = fake_upstream.received()[-1]["body"]
    assert sent["response_format"]["json_schema"]["name"] == "Weather"
    assert record_of_answer(system, parsed.id)["usage"] == RECORDED_USAGE


def test_a_function_tool_round_trip(system, client, fake_upstream):
    answer = completion("m")
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    call["function"]["arguments"] = '{"city": "Paris"}'
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    answer["choices"][0].update(message=message, finish_reason="tool_calls")
    fake_upstream.script({"json": answer})
    first = client.responses.create(model="gw-model", input="weather?", tools=[WEATHER])
    (call,) = first.output
    assert call.type == "function_call" and call.call_id == "call_1"
    follow_up = [
        *first.output,
        {"type": "function_call_output", "call_id": "call_1", "output": "9C"},
    ]
    second = client.responses.create(model="gw-model", input=follow_up, tools=[WEATHER])
    assert second.output_text == REPLY_TEXT
    messages = fake_upstream.received()[-1]["body"]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == "call_1"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "9C"}
    for answer in (first, second):
        assert record_of_answer(system, answer.id)["usage"] == RECORDED_USAGE


def test_two_parallel_calls_become_two_items(system, client, fake_upstream):
    fake_upstream.script(
        {
            "sse": [
                tool_chunk(0, "call_a", "get_weather", '{"city": "Oslo"}'),
                tool_chunk(1, "call_b", "get_weather", '{"city": "Rome"}'),
                chunk("m", {}, "tool_calls"),
                usage_chunk(),
            ]
        }
    )
    with client.responses.stream(model="gw-model", input="two", tools=[WEATHER]) as stream:
        final = stream.get_final_response()
    assert [item.call_id for item in final.output] == ["call_a", "call_b"]
    assert [item.arguments for item in final.output] == ['{"city": "Oslo"}', '{"city": "Rome"}']
    assert record_of_stream(system, final.id)["usage"] == RECORDED_USAGE


def test_images_reach_the_upstream_as_image_parts(system, client, fake_upstream):
    image = "data:image/png;base64,iVBORw0KGgo="
    content = [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": image, "detail": "low"},
    ]
    answer = client.responses.create(model="gw-model", input=[{"role": "user", "content": content}])
    parts = fake_upstream.received()[-1]["body"]["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image, "detail": "low"}} in parts
    assert record_of_answer(system, answer.id)["usage"] == RECORDED_USAGE


@pytest.mark.parametrize(
    ("status", "error", "client_status"),
    [
        (429, openai.RateLimitError, 429),
        (400, openai.BadRequestError, 400),
        (500, openai.InternalServerError, 502),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_before_the_stream(
    system, fake_upstream, status, error, client_status, stream
):
    upstream_error = {"error": {"message": f"upstream says {status}", "type": "x"}}
    fake_upstream.script(
        {"status": status, "json": upstream_error, "headers": {"retry-after": "3"}}
    )
    client = openai.OpenAI(base_url=system.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(error) as raised:
        if stream:
            with client.responses.stream(model="gw-model", input="x") as events:
                list(events)
        else:
            client.responses.create(model="gw-model", input="x")
    assert raised.value.status_code == client_status
    assert f"upstream says {status}" in raised.value.message
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "3"
    record = record_of(system, raised.value.response.headers["x-request-id"])
    assert record["status_code"] == client_status
    assert record["usage"] is None  # refused before any token was spent: nothing charged


def test_a_failure_mid_stream_ends_in_response_failed(system, fake_upstream):
    fake_upstream.script({"sse": [chunk("m", {"content": "partial "})] * 3, "abort_after": 2})
    reply = httpx.post(
        system.url + "/v1/responses",
        json={"model": "gw-model", "input": "x", "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=20,
    )
    events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    last = orjson.loads(events[-1])
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    record = record_of(system, reply.headers["x-request-id"])
    assert "mid-stream" in record["error"]
    assert record["response"]["assembled"]["status"] == "failed"
    # No usage came: estimated from the body ("x") and the two deltas relayed ("partial " x 2).
    usage = record["usage"]
    assert usage["estimated"] is True and usage["cached_tokens"] == 0
    assert usage["prompt_tokens"] >= 1 and usage["completion_tokens"] >= 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_client_leaving_cancels_the_upstream(system, fake_upstream):
    fake_upstream.script({"sse": [chunk("m", {"content": "x"})] * 200, "delay": 0.05})
    body = {"model": "gw-model", "input": "x", "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", system.url + "/v1/responses", json=body, headers=headers) as reply:
        request_id = reply.headers["x-request-id"]
        next(reply.iter_raw())
    wait_until(lambda: fake_upstream.open_streams() == 0, 5, what="upstream stream cancelled")
    record = record_of(system, request_id)
    assert record["status_code"] == 499 and record["usage"]["estimated"] is True


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_compressed_bodies_are_decoded(system, coding):
    body = orjson.dumps({"model": "gw-model", "input": "Hello"})
    packed = zstandard.ZstdCompressor().compress(body) if coding == "zstd" else gzip.compress(body)
    reply = httpx.post(
        system.url + "/v1/responses",
        content=packed,
        headers={"authorization": f"Bearer {KEY}", "content-encoding": coding},
    )
    assert (
        reply.status_code == 200 and reply.json()["output"][0]["content"][0]["text"] == REPLY_TEXT
    )
    assert record_of(system, reply.headers["x-request-id"])["usage"] == RECORDED_USAGE


def test_a_corrupt_or_unknown_encoding_is_refused(system):
    headers = {"authorization": f"Bearer {KEY}"}
    corrupt = httpx.post(
        system.url + "/v1/responses",
        content=b"not zstd",
        headers={**headers, "content-encoding": "zstd"},
    )
    unknown = httpx.post(
        system.url + "/v1/responses", content=b"x", headers={**headers, "content-encoding": "lz4"}
    )
    assert corrupt.status_code == 400 and "zstd" in corrupt.json()["error"]["message"]
    assert unknown.status_code == 415


def test_state_is_refused_with_a_param(system):
    client = openai.OpenAI(base_url=system.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gw-model", input="x", previous_response_id="resp_1")
    assert raised.value.code == "previous_response_not_found"
    assert raised.value.param == "previous_response_id"
    record = record_of(system, raised.value.response.headers["x-request-id"])
    assert record["status_code"] == 400 and record["usage"] is None


def test_websocket_probe_and_stored_responses(system):
    headers = {"authorization": f"Bearer {KEY}"}
    handshake = {
        **headers,
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    probe = httpx.get(system.url + "/v1/responses", headers=handshake)
    assert probe.status_code == 426 and probe.json()["error"]["message"]
    assert httpx.get(system.url + "/v1/responses", headers=headers).status_code == 426
    for method, path in [
        ("GET", "/v1/responses/resp_1"),
        ("GET", "/v1/responses/resp_1/input_items"),
        ("POST", "/v1/responses/resp_1/cancel"),
        ("DELETE", "/v1/responses/resp_1"),
    ]:
        reply = httpx.request(method, system.url + path, headers=headers)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
