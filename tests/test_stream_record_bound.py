"""The copy of a relayed stream a record keeps is bounded (STREAM_RECORD_BYTES): the client gets
every byte, the record the first ones and the total, on every streamed route."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from proxy_service.streaming import StreamCopy
from tests.fake_upstream import chunk
from tests.processes import wait_until
from tests.system import System, running_system

KEY = "bsk-stream-record-0001"
LIMIT = 64 << 10


@pytest.mark.parametrize("limit", [1, 10, 100])
@pytest.mark.parametrize("sizes", [[5, 5, 5], [0, 30, 1], [200], [3] * 40])
def test_the_copy_keeps_the_first_bytes_and_counts_all(limit: int, sizes: list[int]) -> None:
    copy = StreamCopy(limit)
    data = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    for piece in data:
        copy.add(piece)
    whole = b"".join(data)
    assert copy.kept() == whole[:limit] and copy.total == len(whole)
    assert copy.cut == max(0, len(whole) - limit)
    fields = copy.record_fields()
    assert fields["response_stream"] == whole[:limit].decode()
    assert ("response_stream_cut" in fields) == (len(whole) > limit)


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("stream-record")
    with running_system(
        redis_url, fake_upstream_url, root, 1, STREAM_RECORD_BYTES=str(LIMIT)
    ) as system:
        assert system.upsert(KEY, "sam").status_code == 200
        yield system


ROUTES = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    "anthropic": (
        "/v1/messages",
        {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    ),
    "responses": ("/v1/responses", {"input": "x"}),
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_long_stream_reaches_the_client_whole_and_the_record_bounded(
    system, fake_upstream, route
):
    pieces = [chunk("m", {"content": "y" * 2000}) for _ in range(150)]  # ~330 KB of SSE
    fake_upstream.script({"sse": pieces})
    path, body = ROUTES[route]
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    with httpx.stream(
        "POST", system.url + path, json={**body, "model": "m", "stream": True}, headers=headers
    ) as reply:
        received = b"".join(reply.iter_raw())
        request_id = reply.headers.get("x-request-id") or reply.headers["request-id"]
    assert reply.status_code == 200 and received.count(b"y" * 2000) >= 150

    def record() -> dict | None:
        return next((e for e in system.events() if e["request_id"] == request_id), None)

    found = wait_until(record, 10, what="the record")
    assert found["status_code"] == 200
    assert found["response_stream_cut"] == {"kept_bytes": LIMIT, "total_bytes": len(received)}
