"""A raw HTTP/1.x upstream that answers exactly the bytes a test scripts, for replies no
well-behaved server library would write: a 101 with a body, a 3xx, gzip the proxy did not ask
for, an HTTP/1.0 body delimited by closing the connection, a stream far larger than memory, an
event with no end (`python -m tests.misbehaving_upstream --port N`).

`POST /_script` queues steps (a JSON list), each answering the next model call, in order:

    {"status_line": "HTTP/1.1 302 Found",      the first line, verbatim
     "headers": [["location", "/elsewhere"]],  sent as given
     "body": "...",                            latin-1 text, or "body_b64": base64 bytes
     "repeat": {"piece": "data: x\\n\\n", "count": 1000},  appended after `body`, written as
                                               the client reads it (flow control respected)
     "tail": "data: [DONE]\\n\\n",              after the repeat
     "framing": "length" | "chunked" | "close"}
                                               content-length added; chunked coding; neither
                                               (the connection closes after the body)

Without a step, a model call gets a plain 200 chat.completion (a two-event chunk stream when
it asked for one). `GET /_stats` answers the number of connections that carried model calls,
requests received, the connection each came on, and repeated body bytes the client has taken;
`DELETE /_stats` clears the script and counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import orjson

COMPLETION = {
    "id": "chatcmpl-raw-1",
    "object": "chat.completion",
    "model": "raw-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "raw"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
STREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"".join(
        f"{len(event):x}\r\n".encode() + event + b"\r\n"
        for event in (
            b'data: {"id":"chatcmpl-raw-2","object":"chat.completion.chunk","model":"raw-model",'
            b'"choices":[{"index":0,"delta":{"role":"assistant","content":"raw"}}]}\n\n',
            b"data: [DONE]\n\n",
        )
    )
    + b"0\r\n\r\n"
)
REPEAT_BATCH_BYTES = 1 << 20
"""How much of a repeated body is written before waiting for the client to read it."""


@dataclass(slots=True)
class Connection:
    number: int
    carried_model_calls: bool = False


class RawUpstream:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.connections = 0
        self.accepted = 0
        self.requests = 0
        self.request_connections: list[int] = []
        """The number of the connection each model call came on, in order."""
        self.body_bytes_written = 0
        """Body bytes of repeated pieces the client has taken (each batch after its drain)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        connection = Connection(self.accepted)
        try:
            while await self._one_request(reader, writer, connection):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: Connection
    ) -> bool:
        """Answer one request; False when the connection is to be closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in header_lines if line)
        )
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if path.startswith("/_"):
            await self._control(method, path, body, writer)
            return True
        self.requests += 1
        self.request_connections.append(connection.number)
        if not connection.carried_model_calls:
            connection.carried_model_calls = True
            self.connections += 1
        step = self.script.pop(0) if self.script else None
        if step is None:
            streamed = body and orjson.loads(body).get("stream") is True
            await _write_reply(writer, STREAM_REPLY if streamed else _json_reply(COMPLETION))
            return True
        return await _play(step, writer, self)

    async def _control(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if path == "/_script" and method == "POST":
            steps = orjson.loads(body)
            self.script.extend(steps if isinstance(steps, list) else [steps])
            answer: dict[str, Any] = {"queued": len(self.script)}
        elif method == "DELETE":
            self.script.clear()
            self.connections = self.requests = self.body_bytes_written = 0
            self.request_connections.clear()
            answer = {"cleared": True}
        else:
            answer = {
                "connections": self.connections,
                "requests": self.requests,
                "request_connections": self.request_connections,
                "body_bytes_written": self.body_bytes_written,
            }
        await _write_reply(writer, _json_reply(answer))


def _json_reply(answer: dict[str, Any]) -> bytes:
    body = orjson.dumps(answer)
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _write_reply(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _body_of(step: dict[str, Any]) -> bytes:
    if "body_b64" in step:
        return base64.b64decode(step["body_b64"])
    return step.get("body", "").encode("latin-1")


async def _play(step: dict[str, Any], writer: asyncio.StreamWriter, stats: RawUpstream) -> bool:
    """Write the step's reply; False when its framing ends the connection."""
    framing = step.get("framing", "length")
    body = _body_of(step)
    repeat = step.get("repeat")
    tail = step.get("tail", "").encode("latin-1")
    piece = repeat["piece"].encode("latin-1") if repeat else b""
    count = repeat["count"] if repeat else 0
    head = step.get("status_line", "HTTP/1.1 200 OK") + "\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in step.get("headers", []))
    if framing == "length":
        head += f"content-length: {len(body) + len(piece) * count + len(tail)}\r\n"
    elif framing == "chunked":
        head += "transfer-encoding: chunked\r\n"
    writer.write(head.encode("latin-1") + b"\r\n")
    await _write_body(writer, [body], framing)
    per_batch = max(1, REPEAT_BATCH_BYTES // max(1, len(piece)))
    while count > 0:
        batch = min(count, per_batch)
        await _write_body(writer, [piece * batch], framing)
        stats.body_bytes_written += len(piece) * batch
        count -= batch
    await _write_body(writer, [tail], framing)
    if framing == "chunked":
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return framing != "close"


async def _write_body(writer: asyncio.StreamWriter, parts: list[bytes], framing: str) -> None:
    for part in parts:
        if not part:
            continue
        if framing == "chunked":
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        else:
            writer.write(part)
        await writer.drain()


async def serve(port: int) -> None:
    upstream = RawUpstream()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
