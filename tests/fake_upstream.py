"""A scripted fake OpenAI server for tests (`python -m tests.fake_upstream`): chat completions,
embeddings, the model list, and the Responses API (for RESPONSES_MODE=passthrough).

Without a script it answers like OpenAI: a fixed text reply, streamed or not, with usage (and
the usage-only chunk when `stream_options.include_usage` is set); EMBEDDING_DIMENSIONS-float
vectors, one per input string, as floats or base64 as `encoding_format` asks, with
EMBEDDING_USAGE; MODELS for `GET /v1/models`. `POST /_script` queues replies for the next
requests to any of the three, in order:

    {"status": 429, "json": {...}, "headers": {"retry-after": "7"}}   any JSON answer
    {"status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html"}
    {"respond_after": 2.0, ...}    wait before sending anything (status line included)
    {"sse": [chunk, ...], "delay": 0.01, "initial_delay": 0, "abort_after": 3, "hang": false}
        chunks are dicts (sent as JSON) or strings (sent verbatim after `data: `); `abort_after`
        drops the connection after that many events; `hang` never ends the stream; `named`
        puts an `event: <type>` line before each dict that has a `type` (Responses SSE).

`POST /v1/responses` answers RESPONSE_TEXT with RESPONSES_USAGE (streamed as
`responses_events()`, no `[DONE]`); `POST /v1/responses/compact` and the stored-response routes
(`GET|DELETE /v1/responses/{id}`, `GET .../input_items`, `POST .../cancel`) answer an object
echoing the method, path and query.

Any string of a step may hold `{credential}`: it becomes the bearer token the request carried
(an upstream quoting the key it was given, as many do in their error messages).

`GET /_requests` lists what was received (path, body and headers; a GET's body is null);
`DELETE /_requests` clears it.

Model `cc-tool-loop` (when no script step is queued) plays a two-turn tool loop for a real agent
such as Claude Code, whatever side requests it makes besides:
    - a `tool` message after the last assistant message: the final text
      `TOOL-LOOP-DONE: <what the tool returned>`;
    - else, a `Bash` tool on offer: a call of it with `{"command": "cat b23-marker.txt"}`
      (the test puts that file in the agent's working directory);
    - else (session titles, quota probes, ...): a short text, or a JSON object of the required
      fields when `response_format` asks for a json_schema.
Streamed or not, as asked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import struct
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.sse import encode_event

REPLY_TEXT = "Hello! How can I help?"
REPLY_PARTS = ("Hello", "!", " How can I help?")
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
EMBEDDING_USAGE = {"prompt_tokens": 6, "total_tokens": 6}
RESPONSES_USAGE = {
    "input_tokens": 23,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 32,
}
RESPONSES_RECORDED_USAGE = {
    "prompt_tokens": 23,
    "completion_tokens": 9,
    "total_tokens": 32,
    "cached_tokens": 5,
    "reasoning_tokens": 2,
}
"""RESPONSES_USAGE as a record keeps it (OpenAI's names), written out, not computed."""
EMBEDDING_DIMENSIONS = 8
EMBEDDING_VECTOR = [round(0.125 * (i + 1), 3) for i in range(EMBEDDING_DIMENSIONS)]
MODELS = [
    {"id": "fake-model", "object": "model", "created": 1700000000, "owned_by": "fake"},
    {"id": "fake-embedding", "object": "model", "created": 1700000001, "owned_by": "fake"},
]
TOOL_LOOP_MODEL = "cc-tool-loop"
TOOL_LOOP_DONE = "TOOL-LOOP-DONE"
TOOL_LOOP_FILE = "b23-marker.txt"
TOOL_LOOP_OTHER = "cc-tool-loop side reply"
TOOL_LOOP_CALL = {
    "id": "call_b23_bash",
    "type": "function",
    "function": {
        "name": "Bash",
        "arguments": orjson.dumps(
            {"command": f"cat {TOOL_LOOP_FILE}", "description": "Show the marker file"}
        ).decode(),
    },
}


class Aborted(Exception):
    """Raised inside a stream to drop the connection without a proper end."""


class FakeUpstream:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.open_streams = 0

    def receive(self, request: Request, body: Any) -> dict[str, Any] | None:
        """Note the request; the next scripted step, if any."""
        entry = {"path": request.url.path, "body": body, "headers": dict(request.headers)}
        self.received.append(entry)
        return self.script.pop(0) if self.script else None

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        step = self.receive(request, body)
        if step is None:
            return self.default_reply(body)
        return await self.scripted_reply(step, request)

    async def embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        step = self.receive(request, body)
        if step is None:
            return JSONResponse(embedding_reply(body))
        return await self.scripted_reply(step, request)

    async def responses(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        step = self.receive(request, body)
        if step is not None:
            return await self.scripted_reply(step, request)
        model = body.get("model", "fake-model")
        if not body.get("stream"):
            return JSONResponse(response_object(model))
        step = {"sse": responses_events(model), "named": True, "no_done": True}
        return StreamingResponse(self.scripted_stream(step), media_type="text/event-stream")

    async def stored_response(self, request: Request) -> Response:
        raw = await request.body()
        step = self.receive(request, orjson.loads(raw) if raw else None)
        if step is not None:
            return await self.scripted_reply(step, request)
        echo = {"method": request.method, "path": request.url.path, "query": request.url.query}
        return JSONResponse({"object": "echo", **echo, "usage": RESPONSES_USAGE})

    async def models(self, request: Request) -> Response:
        step = self.receive(request, None)
        if step is None:
            return JSONResponse({"object": "list", "data": MODELS})
        return await self.scripted_reply(step, request)

    async def scripted_reply(self, step: dict[str, Any], request: Request) -> Response:
        step = with_credential(step, request.headers.get("authorization", ""))
        await asyncio.sleep(step.get("respond_after", 0))
        if "sse" in step:
            return StreamingResponse(self.scripted_stream(step), media_type="text/event-stream")
        if "json" in step:
            return JSONResponse(step["json"], step.get("status", 200), step.get("headers"))
        return Response(
            step.get("body", ""),
            step.get("status", 200),
            step.get("headers"),
            step.get("content_type", "text/plain"),
        )

    def default_reply(self, body: dict[str, Any]) -> Response:
        model = body.get("model", "fake-model")
        if model == TOOL_LOOP_MODEL:
            return self.tool_loop_reply(body)
        if not body.get("stream"):
            return JSONResponse(completion(model))
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        chunks = default_chunks(model, include_usage)
        return StreamingResponse(
            self.scripted_stream({"sse": chunks}), media_type="text/event-stream"
        )

    def tool_loop_reply(self, body: dict[str, Any]) -> Response:
        """The `cc-tool-loop` model: tool result -> final text; Bash (Claude Code) or a shell
        tool (Codex CLI's `exec_command` or `shell`) offered -> call it."""
        model, call = body["model"], None
        result = tool_loop_result(body.get("messages") or [])
        tools = [(tool.get("function") or {}).get("name") for tool in body.get("tools") or []]
        shell = shell_tool(body.get("tools") or [])
        if result is not None:
            text = f"{TOOL_LOOP_DONE}: {result}"
        elif "Bash" in tools:
            text, call = "", TOOL_LOOP_CALL
        elif shell is not None:
            text, call = "", shell_call(shell)
        else:
            text = tool_loop_side_text(body.get("response_format"))
        if not body.get("stream"):
            answer = completion(model, text)
            if call is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                answer["choices"][0].update(message=message, finish_reason="tool_calls")
            return JSONResponse(answer)
        if call is None:
            chunks = [
                chunk(model, {"role": "assistant", "content": text}),
                chunk(model, {}, "stop"),
            ]
        else:
            delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}
            chunks = [chunk(model, delta), chunk(model, {}, "tool_calls")]
        if (body.get("stream_options") or {}).get("include_usage") is True:
            chunks.append({**chunk(model, {}), "choices": [], "usage": USAGE})
        return StreamingResponse(
            self.scripted_stream({"sse": chunks}), media_type="text/event-stream"
        )

    async def scripted_stream(self, step: dict[str, Any]):
        self.open_streams += 1
        try:
            await asyncio.sleep(step.get("initial_delay", 0))
            for sent, chunk in enumerate(step["sse"]):
                if step.get("abort_after") is not None and sent >= step["abort_after"]:
                    raise Aborted("scripted connection drop")
                if step.get("named") and isinstance(chunk, dict) and "type" in chunk:
                    yield encode_event(chunk["type"], chunk)
                    continue
                data = chunk.encode() if isinstance(chunk, str) else orjson.dumps(chunk)
                yield b"data: " + data + b"\n\n"
                await asyncio.sleep(step.get("delay", 0))
            while step.get("hang"):
                await asyncio.sleep(3600)
            if not step.get("no_done"):
                yield b"data: [DONE]\n\n"
        finally:
            self.open_streams -= 1

    async def set_script(self, request: Request) -> Response:
        steps = orjson.loads(await request.body())
        self.script.extend(steps if isinstance(steps, list) else [steps])
        return JSONResponse({"queued": len(self.script)})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.received.clear()
            self.script.clear()
            return JSONResponse({"cleared": True})
        return JSONResponse({"requests": self.received, "open_streams": self.open_streams})


def with_credential(step: dict[str, Any], authorization: str) -> dict[str, Any]:
    """The step with every `{credential}` replaced by the request's bearer token."""
    raw = orjson.dumps(step)
    if b"{credential}" not in raw:
        return step
    token = orjson.dumps(authorization.removeprefix("Bearer "))[1:-1]
    return orjson.loads(raw.replace(b"{credential}", token))


SHELL_TOOLS = ("exec_command", "shell", "local_shell")


def shell_tool(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The function of the first shell-like tool on offer (Codex names them these)."""
    for tool in tools:
        function = tool.get("function") or {}
        if function.get("name") in SHELL_TOOLS:
            return function
    return None


def shell_call(function: dict[str, Any]) -> dict[str, Any]:
    """A call of `function` running `cat` on the marker file: its command parameter (the first
    required one) as a string, or as an argv when the schema wants an array."""
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    name = next(iter(parameters.get("required") or properties or ["cmd"]))
    command: Any = f"cat {TOOL_LOOP_FILE}"
    if (properties.get(name) or {}).get("type") == "array":
        command = ["bash", "-lc", command]
    arguments = orjson.dumps({name: command}).decode()
    return {**TOOL_LOOP_CALL, "function": {"name": function["name"], "arguments": arguments}}


def tool_loop_result(messages: list[dict[str, Any]]) -> str | None:
    """The text of the tool messages after the last assistant message, or None if there are none."""
    results = []
    for message in reversed(messages):
        if message.get("role") == "assistant":
            break
        if message.get("role") == "tool":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(
                    part.get("text", "") for part in content if isinstance(part, dict)
                )
            results.insert(0, str(content or ""))
    return "\n".join(results) if results else None


def tool_loop_side_text(response_format: Any) -> str:
    """A short text; JSON with each required string field when a json_schema is asked for
    (Claude Code's session-title request asks for `{"title": ...}`)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return TOOL_LOOP_OTHER
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    return orjson.dumps(dict.fromkeys(schema.get("required") or [], TOOL_LOOP_OTHER)).decode()


def completion(model: str, text: str = REPLY_TEXT) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake-2",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def default_chunks(model: str, include_usage: bool) -> list[dict[str, Any]]:
    chunks = [chunk(model, {"role": "assistant", "content": ""})]
    chunks += [chunk(model, {"content": part}) for part in REPLY_PARTS]
    chunks.append(chunk(model, {}, "stop"))
    if include_usage:
        chunks.append({**chunk(model, {}), "choices": [], "usage": USAGE})
    return chunks


def named_sse(events: list[dict[str, Any]]) -> bytes:
    """The bytes of a stream of named events (`event: <type>` before each), as written with
    the `named` option: what a Responses or Anthropic upstream sends."""
    return b"".join(encode_event(event["type"], event) for event in events)


RESPONSE_TEXT = "Passed through!"


def response_object(model: str, status: str = "completed") -> dict[str, Any]:
    """A Response as an upstream with the Responses API answers RESPONSE_TEXT."""
    message = {
        "id": "msg_fake_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": RESPONSE_TEXT, "annotations": []}],
    }
    return {
        "id": "resp_fake_1",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": model,
        "output": [message] if status == "completed" else [],
        "usage": RESPONSES_USAGE if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def responses_events(model: str) -> list[dict[str, Any]]:
    """The reference event sequence of one text message (created ... completed)."""
    started = response_object(model, "in_progress")
    message = response_object(model)["output"][0]
    opened = {**message, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_fake_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": opened},
        {"type": "response.content_part.added", **where, "part": part},
        *(
            {"type": "response.output_text.delta", **where, "delta": piece}
            for piece in ("Passed", " through!")
        ),
        {"type": "response.output_text.done", **where, "text": RESPONSE_TEXT},
        {"type": "response.content_part.done", **where, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": response_object(model)},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def embedding_reply(body: dict[str, Any]) -> dict[str, Any]:
    """One EMBEDDING_VECTOR per input string (one for any other input), as `encoding_format`
    asks: JSON floats, or base64 of little-endian float32s as OpenAI sends them."""
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and isinstance(inputs[0], str) else 1
    vector: Any = EMBEDDING_VECTOR
    if body.get("encoding_format") == "base64":
        vector = base64.b64encode(struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *vector)).decode()
    model = body.get("model")
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)],
        "model": model if isinstance(model, str) else "fake-embedding",
        "usage": EMBEDDING_USAGE,
    }


def create_app() -> Starlette:
    fake = FakeUpstream()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.chat, methods=["POST"]),
            Route("/v1/embeddings", fake.embeddings, methods=["POST"]),
            Route("/v1/models", fake.models, methods=["GET"]),
            Route("/v1/responses", fake.responses, methods=["POST"]),
            Route(
                "/v1/responses/{rest:path}",
                fake.stored_response,
                methods=["GET", "POST", "DELETE"],
            ),
            Route("/_script", fake.set_script, methods=["POST"]),
            Route("/_requests", fake.requests, methods=["GET", "DELETE"]),
        ]
    )
    app.state.fake = fake
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
