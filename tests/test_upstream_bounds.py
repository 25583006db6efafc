"""Upstream replies no protocol allows, and replies too big to hold, against a real proxy
process and a raw upstream (tests/misbehaving_upstream.py) that writes exactly the bytes given:
every one becomes a well-formed answer in the route's protocol, with one record saying why.

Routes: the chat passthrough, the Anthropic bridge, the Responses bridge, each streamed or not.
"""

from __future__ import annotations

import base64
import gzip
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import brotli
import httpx
import orjson
import pytest
import zstandard

from tests.fake_upstream import chunk, completion
from tests.processes import ManagedProcess, free_port, wait_http, wait_until
from tests.system import System, running_system

KEY = "bsk-upstream-bounds-0001"
BODY_CAP = 1 << 20
EVENT_CAP = 16 << 20


@dataclass(frozen=True)
class Family:
    name: str
    path: str
    body: dict

    def request(self, stream: bool) -> dict:
        return {**self.body, "stream": stream}


CHAT = Family(
    "chat", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
)
ANTHROPIC = Family(
    "anthropic",
    "/v1/messages",
    {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
)
RESPONSES = Family("responses", "/v1/responses", {"model": "m", "input": "hi"})
FAMILIES = (CHAT, ANTHROPIC, RESPONSES)
HEADERS = {"authorization": f"Bearer {KEY}"}
ANTHROPIC_HEADERS = {**HEADERS, "anthropic-version": "2023-06-01"}
"""`anthropic-version` asks for Anthropic's error shape, so only the Anthropic client sends it."""


class RawUpstreamControl:
    def __init__(self, base: str) -> None:
        self.base = base

    def script(self, *steps: dict) -> None:
        httpx.post(self.base + "/_script", json=list(steps)).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(self.base + "/_stats").json()

    def reset(self) -> None:
        httpx.delete(self.base + "/_stats").raise_for_status()


@pytest.fixture(scope="module")
def raw_upstream(tmp_path_factory) -> Iterator[RawUpstreamControl]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.misbehaving_upstream", "--port", str(port)]
    process = ManagedProcess("raw-upstream", argv, {}, tmp_path_factory.mktemp("raw")).start()
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_stats", process)
    yield RawUpstreamControl(base)
    process.stop()


@pytest.fixture(scope="module")
def system(redis_url, raw_upstream, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("upstream-bounds")
    with running_system(
        redis_url,
        raw_upstream.base + "/v1",
        root,
        MAX_UPSTREAM_BODY_BYTES=str(BODY_CAP),
        MAX_UPSTREAM_EVENT_BYTES=str(EVENT_CAP),
    ) as system:
        assert system.upsert(KEY, "bounds-tester").status_code == 200
        yield system


@pytest.fixture
def upstream(raw_upstream) -> RawUpstreamControl:
    raw_upstream.reset()
    return raw_upstream


def ask(system: System, family: Family, stream: bool) -> httpx.Response:
    return httpx.post(
        system.url + family.path,
        json=family.request(stream),
        headers=ANTHROPIC_HEADERS if family is ANTHROPIC else HEADERS,
        timeout=30,
    )


def record_of(system: System, response: httpx.Response) -> dict:
    """The one record of the request `response` answered."""
    request_id = response.headers.get("x-request-id") or response.headers["request-id"]

    def found() -> list[dict]:
        return [event for event in system.events() if event["request_id"] == request_id]

    records = wait_until(found, 10, what=f"the record of {request_id}")
    time.sleep(0.1)
    assert len(found()) == 1
    return records[0]


def error_message(family: Family, response: httpx.Response) -> str:
    """The message of an error answer, checking it has the protocol's shape."""
    body = response.json()
    if family is ANTHROPIC:
        assert body["type"] == "error" and body["error"]["type"]
    else:
        assert set(body["error"]) >= {"message", "type", "code"}
    return body["error"]["message"]


def stream_failure(family: Family, text: str) -> str:
    """The failure event a stream ended with, in the protocol's terms: its message."""
    events = [block for block in text.split("\n\n") if block.strip()]
    last = events[-1]
    data = orjson.loads(last.split("data: ", 1)[1])
    if family is CHAT:
        return data["error"]["message"]
    if family is ANTHROPIC:
        assert last.startswith("event: error")
        return data["error"]["message"]
    assert data["type"] == "response.failed"
    return data["response"]["error"]["message"]


def sse_body(*chunks: dict) -> str:
    return "".join(f"data: {orjson.dumps(c).decode()}\n\n" for c in chunks) + "data: [DONE]\n\n"


def chat_stream() -> str:
    return sse_body(
        chunk("m", {"role": "assistant", "content": "raw"}),
        chunk("m", {}, "stop"),
        {**chunk("m", {}), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    )


def reply(body: bytes | str, content_type: str, **step) -> dict:
    raw = body.encode() if isinstance(body, str) else body
    headers = [["content-type", content_type], *step.pop("headers", [])]
    return {"body_b64": base64.b64encode(raw).decode(), "headers": headers, **step}


def assert_success(family: Family, stream: bool, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    if not stream:
        body = response.json()
        text = {
            "chat": lambda: body["choices"][0]["message"]["content"],
            "anthropic": lambda: body["content"][0]["text"],
            "responses": lambda: body["output"][0]["content"][0]["text"],
        }[family.name]()
        assert text == "raw"
        return
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "raw" in response.text
    ends = {"chat": "data: [DONE]", "anthropic": "message_stop", "responses": "response.completed"}
    assert ends[family.name] in response.text


def good_reply(stream: bool) -> tuple[bytes, str]:
    if stream:
        return chat_stream().encode(), "text/event-stream"
    return orjson.dumps(completion("m", "raw")), "application/json"


# -- statuses no protocol allows ------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize(
    "step",
    [
        {
            "status_line": "HTTP/1.1 101 Switching Protocols",
            "headers": [["upgrade", "h2c"], ["connection", "upgrade"]],
            "body": '{"choices": "upgraded garbage"}',
            "framing": "close",
        },
        {
            "status_line": "HTTP/1.1 302 Found",
            "headers": [["location", "http://elsewhere.invalid/v1"]],
            "body": "",
        },
        {
            "status_line": "HTTP/1.1 307 Temporary Redirect",
            "headers": [["location", "http://elsewhere.invalid/v1"]],
            "body": '{"redirect": true}',
        },
    ],
    ids=["101-with-body", "302", "307"],
)
def test_1xx_and_3xx_are_a_502_naming_the_status(system, upstream, family, stream, step):
    upstream.script(step)
    response = ask(system, family, stream)
    status = step["status_line"].split()[1]
    assert response.status_code == 502
    assert "location" not in response.headers and "elsewhere" not in response.text
    assert f"HTTP {status}" in error_message(family, response)
    record = record_of(system, response)
    assert record["status_code"] == 502 and f"HTTP {status}" in record["error"]
    ask_again = ask(system, family, stream)  # the connection was not reused as it stood
    assert ask_again.status_code == 200


# -- content codings the proxy did not ask for -----------------------------------------------

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("coding", ENCODERS)
def test_an_encoded_reply_is_decoded(system, upstream, family, stream, coding):
    body, content_type = good_reply(stream)
    encoded = ENCODERS[coding](body)
    upstream.script(reply(encoded, content_type, headers=[["content-encoding", coding]]))
    response = ask(system, family, stream)
    assert_success(family, stream, response)
    assert "content-encoding" not in response.headers
    assert record_of(system, response)["status_code"] == 200


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("coding", ["gzip", "br", "compress"])
def test_a_reply_not_in_its_coding_is_an_upstream_failure(system, upstream, family, stream, coding):
    """Plain bytes labelled gzip or br (invalid data), or a coding we do not know."""
    body, content_type = good_reply(stream)
    upstream.script(reply(body, content_type, headers=[["content-encoding", coding]]))
    response = ask(system, family, stream)
    record = record_of(system, response)
    if response.status_code == 502:
        message = error_message(family, response)
        assert record["status_code"] == 502
    else:  # a stream whose first bytes fail to decode: the failure event, after the 200
        assert stream and coding != "compress" and response.status_code == 200
        message = stream_failure(family, response.text)
    assert coding in message and coding in record["error"]


# -- replies of the other kind ------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_an_event_stream_to_a_non_stream_request_is_a_502(system, upstream, family):
    upstream.script(reply(chat_stream(), "text/event-stream"))
    response = ask(system, family, stream=False)
    assert response.status_code == 502
    assert "event stream" in error_message(family, response)
    assert record_of(system, response)["status_code"] == 502


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_json_to_a_stream_request_is_a_502(system, upstream, family):
    upstream.script(reply(orjson.dumps(completion("m", "raw")), "application/json"))
    response = ask(system, family, stream=True)
    assert response.status_code == 502
    assert "JSON" in error_message(family, response)
    assert record_of(system, response)["status_code"] == 502


@pytest.mark.parametrize("family", [ANTHROPIC, RESPONSES], ids=lambda f: f.name)
@pytest.mark.parametrize("body", ["", "<html>ok</html>", "[1, 2]"], ids=["empty", "html", "list"])
def test_a_200_that_is_not_a_json_object_is_a_502_on_a_bridge(system, upstream, family, body):
    upstream.script(reply(body, "text/html"))
    response = ask(system, family, stream=False)
    assert response.status_code == 502
    assert "not JSON" in error_message(family, response)
    assert record_of(system, response)["status_code"] == 502


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_an_http10_body_delimited_by_close_is_read_whole(system, upstream, family, stream):
    body, content_type = good_reply(stream)
    upstream.script(reply(body, content_type, status_line="HTTP/1.0 200 OK", framing="close"))
    response = ask(system, family, stream)
    assert_success(family, stream, response)
    assert record_of(system, response)["status_code"] == 200


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_non_stream_body_over_the_cap_is_a_502_and_its_connection_closed(
    system, upstream, family, framing
):
    """8 times the cap, so most of it is still on its way when the proxy stops reading (a
    reply that arrived whole leaves its connection clean, and aiohttp may reuse it)."""
    padding = {"role": "assistant", "content": "x" * (8 * BODY_CAP)}
    answer = completion("m")
    answer["choices"][0]["message"] = padding
    upstream.script(reply(orjson.dumps(answer), "application/json", framing=framing))
    response = ask(system, family, stream=False)
    assert response.status_code == 502
    assert str(BODY_CAP) in error_message(family, response)
    record = record_of(system, response)
    assert record["status_code"] == 502 and str(BODY_CAP) in record["error"]
    assert ask(system, family, stream=False).status_code == 200
    refused_on, next_on = upstream.stats()["request_connections"][-2:]
    assert next_on != refused_on  # the connection of the refused reply was closed


def test_a_body_just_under_the_cap_is_served(system, upstream):
    answer = completion("m")
    answer["choices"][0]["message"]["content"] = "x" * (BODY_CAP - 1000)
    upstream.script(reply(orjson.dumps(answer), "application/json"))
    response = ask(system, CHAT, stream=False)
    assert response.status_code == 200 and len(response.content) > BODY_CAP - 1000


def healthz_while(system: System, busy: threading.Thread) -> list[float]:
    """Seconds each /healthz took while `busy` runs."""
    took = []
    while busy.is_alive():
        started = time.perf_counter()
        assert httpx.get(system.url + "/healthz", timeout=10).status_code == 200
        took.append(time.perf_counter() - started)
        time.sleep(0.02)
    return took


@pytest.mark.alone  # /healthz latency while another request is parsed (tests/alone.py)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_an_event_without_end_fails_the_stream_without_stalling_others(system, upstream, family):
    """A 64 MB line with no blank line: read in linear time (others are served meanwhile) and
    cut at MAX_UPSTREAM_EVENT_BYTES with the protocol's failure event."""
    line = "data: " + "x" * 1000
    upstream.script(
        {
            "headers": [["content-type", "text/event-stream"]],
            "body": "data: " + orjson.dumps(chunk("m", {"content": "raw"})).decode() + "\n\n",
            "repeat": {"piece": "y" * 1024, "count": 64 << 10},
            "tail": line + "\n\n",
            "framing": "chunked",
        }
    )
    result: dict[str, httpx.Response] = {}
    busy = threading.Thread(target=lambda: result.update(r=ask(system, family, stream=True)))
    busy.start()
    took = healthz_while(system, busy)
    busy.join()
    response = result["r"]
    assert response.status_code == 200
    assert str(EVENT_CAP) in stream_failure(family, response.text)
    assert max(took) < 1.0, f"/healthz took up to {max(took):.2f}s"  # generous: no stall
    record = record_of(system, response)
    assert str(EVENT_CAP) in record["error"]


# -- backpressure -------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_without_reading(system: System, family: Family) -> socket.socket:
    """A client that sends a stream request and never reads the answer."""
    port = int(system.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    body = orjson.dumps(family.request(stream=True))
    head = (
        f"POST {family.path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def settled(read: callable, interval: float = 0.5) -> int:
    """`read()` once it stopped changing."""
    last = read()
    while True:
        time.sleep(interval)
        now = read()
        if now == last:
            return now
        last = now


@pytest.mark.alone  # the proxy's memory under a 256 MiB flood (tests/alone.py)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_clients_that_do_not_read_hold_the_upstream_back(system, upstream, family):
    """Two 128 MiB replies to clients that read nothing: the proxy stops reading the upstream
    (what it took sits in socket buffers and RELAY_BUFFER_BYTES), its memory barely grows."""
    content = orjson.dumps(chunk("m", {"content": "z" * 1000})).decode()
    piece = f"data: {content}\n\n"
    count = (128 << 20) // len(piece)
    step = {
        "headers": [["content-type", "text/event-stream"]],
        "repeat": {"piece": piece, "count": count},
        "tail": "data: [DONE]\n\n",
        "framing": "chunked",
    }
    upstream.script(step, step)
    pid = system.proxies[0].pid
    before = rss_mib(pid)
    clients = [open_without_reading(system, family) for _ in range(2)]
    try:
        taken = settled(lambda: upstream.stats()["body_bytes_written"])
        grown = rss_mib(pid) - before
    finally:
        for client in clients:
            client.close()
    print(
        f"\nBACKPRESSURE | {family.name} | upstream gave {taken >> 20} MiB of 256 | "
        f"RSS +{grown:.0f} MiB"
    )
    assert taken < 64 << 20
    assert grown < 48
