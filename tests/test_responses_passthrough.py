"""RESPONSES_MODE=passthrough end to end: real proxies and logger in front of the fake upstream's
own Responses API. Bodies go up unchanged, bytes come back unchanged, usage is read on the side;
compaction and the stored-response routes are forwarded; every record checked for exact tokens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.fake_upstream import (
    RESPONSE_TEXT,
    RESPONSES_RECORDED_USAGE,
    RESPONSES_USAGE,
    named_sse,
    response_object,
    responses_events,
)
from tests.processes import wait_until
from tests.system import System, running_system

KEY = "bsk-responses-pass-0001"


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("responses-passthrough")
    with running_system(
        redis_url, fake_upstream_url, root, 2, RESPONSES_MODE="passthrough"
    ) as system:
        assert system.upsert(KEY, "petra").status_code == 200
        yield system


@pytest.fixture(params=[0, 1], ids=["proxy-1", "proxy-2"])
def base(system: System, request) -> str:
    return system.proxy_urls[request.param]


def client_of(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)


def record_of(system: System, request_id: str) -> dict:
    def found() -> dict | None:
        return next((e for e in system.events() if e["request_id"] == request_id), None)

    return wait_until(found, 10, what="the record")


def wire(events: list[dict]) -> bytes:
    """The bytes the fake upstream writes for `events` (what the client must get, unchanged)."""
    return named_sse(events)


def streamed(base: str, body: dict) -> tuple[int, bytes, str]:
    """(status, the bytes as they came, request id) of a streamed POST /v1/responses."""
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", base + "/v1/responses", json=body, headers=headers) as reply:
        return reply.status_code, b"".join(reply.iter_raw()), reply.headers["x-request-id"]


def test_a_buffered_answer_and_its_body_pass_unchanged(system, base, fake_upstream):
    sent = {"model": "up-model", "input": "Hi", "store": True, "previous_response_id": "resp_0"}
    raw = client_of(base).responses.with_raw_response.create(**sent)
    response = raw.parse()
    assert response.output_text == RESPONSE_TEXT and response.id == "resp_fake_1"
    received = fake_upstream.received()[-1]
    assert received["path"] == "/v1/responses" and received["body"] == sent
    assert received["headers"]["authorization"] == f"Bearer {KEY}"
    record = record_of(system, raw.headers["x-request-id"])
    assert record["protocol"] == "openai_responses" and record["status_code"] == 200
    assert record["usage"] == RESPONSES_RECORDED_USAGE and record["upstream_id"] == "resp_fake_1"
    assert record["model"] == "up-model"


def test_a_stream_is_relayed_byte_for_byte_and_metered(system, base, fake_upstream):
    body = {"model": "up-model", "input": "Hi", "stream": True}
    status, relayed, request_id = streamed(base, body)
    assert status == 200
    assert relayed == wire(responses_events("up-model"))
    assert fake_upstream.received()[-1]["body"] == body
    record = record_of(system, request_id)
    assert record["status_code"] == 200 and record["usage"] == RESPONSES_RECORDED_USAGE
    assert record["upstream_id"] == "resp_fake_1"
    assert record["response"]["assembled"]["output"][0]["content"][0]["text"] == RESPONSE_TEXT


def test_the_sdk_stream_accumulates_the_upstream_response(system, base, fake_upstream):
    with client_of(base).responses.stream(model="up-model", input="Hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == RESPONSE_TEXT
    assert final.usage.input_tokens == RESPONSES_USAGE["input_tokens"]


def test_a_stream_cut_mid_way_ends_in_an_error_event_and_is_estimated(system, base, fake_upstream):
    events = responses_events("up-model")
    fake_upstream.script({"sse": events, "named": True, "no_done": True, "abort_after": 5})
    _, relayed, request_id = streamed(base, {"model": "up-model", "input": "Hi!", "stream": True})
    assert relayed.startswith(wire(events[:5]))
    tail = relayed[len(wire(events[:5])) :]
    assert tail.startswith(b"event: error\ndata: ")
    error = orjson.loads(tail.split(b"data: ", 1)[1])
    assert error["type"] == "error" and error["code"]
    record = record_of(system, request_id)
    assert record["error"] and "mid-stream" in record["error"]
    usage = record["usage"]
    assert usage["estimated"] is True and usage["prompt_tokens"] >= 1
    assert usage["completion_tokens"] >= 1  # "Passed" was relayed


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_errors_come_back_unchanged(system, base, fake_upstream, status):
    error = {"error": {"message": f"no ({status})", "type": "x", "code": "c", "param": None}}
    headers = {"retry-after": "3"} if status == 429 else None
    fake_upstream.script({"status": status, "json": error, "headers": headers})
    reply = httpx.post(
        base + "/v1/responses",
        json={"model": "m", "input": "x", "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert reply.status_code == status and reply.json() == error
    record = record_of(system, reply.headers["x-request-id"])
    assert record["status_code"] == status and record["error"] == f"no ({status})"
    assert record["usage"] is None


def test_compaction_is_forwarded_and_metered(system, base, fake_upstream):
    reply = httpx.post(
        base + "/v1/responses/compact",
        json={"model": "m", "input": [{"role": "user", "content": "long"}]},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert reply.status_code == 200 and reply.json()["path"] == "/v1/responses/compact"
    assert fake_upstream.received()[-1]["body"]["input"][0]["content"] == "long"
    record = record_of(system, reply.headers["x-request-id"])
    assert record["protocol"] == "openai_responses" and record["usage"] == RESPONSES_RECORDED_USAGE


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/v1/responses/resp_abc", ""),
        ("GET", "/v1/responses/resp_abc", "include[]=reasoning.encrypted_content"),
        ("GET", "/v1/responses/resp_abc/input_items", "limit=2&order=asc"),
        ("POST", "/v1/responses/resp_abc/cancel", ""),
        ("DELETE", "/v1/responses/resp_abc", ""),
    ],
)
def test_stored_response_routes_are_forwarded(system, base, fake_upstream, method, path, query):
    url = base + path + (f"?{query}" if query else "")
    reply = httpx.request(method, url, headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200
    echoed = reply.json()
    assert echoed["method"] == method and echoed["path"] == path
    assert httpx.QueryParams(echoed["query"]) == httpx.QueryParams(query)
    assert fake_upstream.received()[-1]["headers"]["authorization"] == f"Bearer {KEY}"


def test_an_upstream_404_for_a_stored_response_comes_back(system, base, fake_upstream):
    missing = {"error": {"message": "No response found", "type": "invalid_request_error"}}
    fake_upstream.script({"status": 404, "json": missing})
    reply = httpx.get(base + "/v1/responses/resp_gone", headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 404 and reply.json() == missing


@pytest.mark.parametrize(
    "path", ["/v1/responses/a%2F..%2Fchat/cancel", "/v1/responses/x/y/z", "/v1/responses/x/other"]
)
def test_paths_outside_the_stored_response_routes_never_reach_the_upstream(
    system, base, fake_upstream, path
):
    reply = httpx.get(base + path, headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    assert fake_upstream.received() == []


def test_stored_response_routes_need_a_key(system, base, fake_upstream):
    reply = httpx.get(base + "/v1/responses/resp_abc", headers={"authorization": "Bearer bsk-no"})
    assert reply.status_code == 401
    assert fake_upstream.received() == []


def test_the_websocket_handshake_still_gets_426(system, base):
    handshake = {
        "authorization": f"Bearer {KEY}",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    assert httpx.get(base + "/v1/responses", headers=handshake).status_code == 426


def test_a_non_stream_answer_is_the_upstream_object(system, base, fake_upstream):
    reply = httpx.post(
        base + "/v1/responses",
        json={"model": "up-model", "input": "x"},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert reply.json() == response_object("up-model")
