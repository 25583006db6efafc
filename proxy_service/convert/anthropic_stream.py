"""OpenAI chat-completion SSE -> Anthropic Messages SSE (conversion spec §4.3).

One translator per stream; all state lives on the instance (a class-level buffer would mix
concurrent streams, the LiteLLM bug in §7.19). Grammar produced, whatever the upstream sends:
message_start, ping, (content_block_start, content_block_delta*, content_block_stop)*,
message_delta, message_stop; or, on failure, an `error` frame and nothing after it.

Tool arguments are buffered per block and sent as one `input_json_delta` when the block closes,
so the client always receives a JSON object: fragments may be cumulative snapshots, broken JSON
is repaired, and nothing has to be retracted (the spec's "buffered mode").
"""

from __future__ import annotations

import enum
import json
import logging
import math
from dataclasses import dataclass, field
from typing import assert_never

import orjson

from proxy_service.convert.anthropic_errors import anthropic_error
from proxy_service.convert.anthropic_request import ConvertedRequest
from proxy_service.convert.anthropic_response import (
    matched_stop,
    reasoning_text,
    stop_reason,
    tool_input,
    tool_use_id,
    usage_from_openai,
    visible_text,
)
from proxy_service.convert.openai_usage import usage_record
from proxy_service.convert.token_count import estimate_text
from shared.sse import SSEDecoder, encode_event

logger = logging.getLogger(__name__)

_PING = encode_event("ping", {"type": "ping"})
_STOP = encode_event("message_stop", {"type": "message_stop"})


class _Phase(enum.Enum):
    NEW = enum.auto()  # message_start not sent yet
    STREAMING = enum.auto()  # between message_start and message_delta
    CLOSED = enum.auto()  # message_stop or error sent; later input is ignored


class _Kind(enum.Enum):
    THINKING = enum.auto()
    TEXT = enum.auto()
    TOOL = enum.auto()


@dataclass(slots=True)
class _ToolCall:
    """One upstream tool call being assembled, until its tool_use block is started."""

    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    length: int = 0
    started: bool = False

    def append(self, fragment: str) -> None:
        """Add arguments; a fragment repeating everything so far is a cumulative snapshot."""
        if self.length and len(fragment) >= self.length:
            so_far = "".join(self.parts)
            self.parts = [so_far]
            if fragment.startswith(so_far):
                fragment = fragment[self.length :]
        self.parts.append(fragment)
        self.length += len(fragment)

    def arguments_json(self) -> str:
        """The buffered arguments as a JSON object text, verbatim when already valid."""
        raw = "".join(self.parts)
        try:
            if isinstance(orjson.loads(raw), dict):
                return raw
        except orjson.JSONDecodeError:
            pass
        return orjson.dumps(tool_input(raw)).decode()


class AnthropicStreamTranslator:
    """Fed raw OpenAI SSE bytes from the upstream (split anywhere), yields Anthropic SSE frames."""

    def __init__(self, request: ConvertedRequest, message_id: str) -> None:
        self._request = request
        self._message_id = message_id
        self._decoder = SSEDecoder()
        self._phase = _Phase.NEW
        self._frames: list[bytes] = []
        self._next_index = 0
        self._open: _Kind | None = None
        self._open_tool: _ToolCall | None = None
        self._calls: list[_ToolCall] = []  # every call in arrival order
        self._call_at: dict[int, _ToolCall] = {}  # upstream tool index -> its latest call
        self._tool_ids: set[str] = set()
        self._finish_reason: object = None
        self._matched_stop: object = None
        self._usage: dict | None = None
        self._output_estimate = 0.0
        self._upstream_id: str | None = None
        self._upstream_model: str | None = None
        self._stop_reason: str | None = None
        self._error: str | None = None

    # -- read-only results, for metering after the stream -------------------------------------

    @property
    def upstream_id(self) -> str | None:
        return self._upstream_id

    @property
    def upstream_model(self) -> str | None:
        return self._upstream_model

    @property
    def usage(self) -> dict[str, int]:
        """OpenAI-style counts known so far; estimated when the upstream reported none."""
        if (record := usage_record(self._usage)) is not None:
            return record
        prompt = self._request.estimated_input_tokens
        completion = math.ceil(self._output_estimate)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        }

    @property
    def usage_estimated(self) -> bool:
        return self._usage is None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    @property
    def error(self) -> str | None:
        """The failure message when the stream ended in an `error` frame."""
        return self._error

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """message_start and one ping; sent before the first upstream byte is awaited."""
        if self._phase is not _Phase.NEW:
            return []
        self._phase = _Phase.STREAMING
        message = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._request.requested_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The real input count arrives in message_delta; a 0 here breaks context meters.
            "usage": usage_from_openai(
                None, estimated_input=self._request.estimated_input_tokens, estimated_output=1
            ),
        }
        return [encode_event("message_start", {"type": "message_start", "message": message}), _PING]

    def feed(self, chunk: bytes) -> list[bytes]:
        frames = self.start()
        if self._phase is _Phase.STREAMING:
            for event in self._decoder.feed(chunk):
                self._on_event(event.event, event.data)
                if self._phase is _Phase.CLOSED:
                    break
        return self._take(frames)

    def finish(self) -> list[bytes]:
        """Upstream ended (with or without `[DONE]`): close blocks, message_delta, message_stop."""
        frames = self.start()
        if self._phase is _Phase.STREAMING:
            for event in self._decoder.flush():
                self._on_event(event.event, event.data)
                if self._phase is _Phase.CLOSED:
                    break
            self._finalize()
        return self._take(frames)

    def fail(self, message: str, error_type: str = "api_error") -> list[bytes]:
        """Mid-stream failure: one `error` frame, no message_stop (the SDKs then raise)."""
        if self._phase is _Phase.CLOSED:
            return []
        self._fail(message, error_type)
        return self._take([])

    def ping(self) -> bytes:
        """A real `ping` event: Claude Code's stall watchdog ignores SSE comments."""
        return _PING

    # -- internals ----------------------------------------------------------------------------

    def _take(self, frames: list[bytes]) -> list[bytes]:
        frames.extend(self._frames)
        self._frames = []
        return frames

    def _emit(self, name: str, payload: dict) -> None:
        self._frames.append(encode_event(name, payload))

    def _fail(self, message: str, error_type: str) -> None:
        self._error = message
        self._phase = _Phase.CLOSED
        self._emit("error", {"type": "error", "error": {"type": error_type, "message": message}})

    def _on_event(self, name: str, data: bytes) -> None:
        if data == b"[DONE]":
            self._finalize()
            return
        chunk = _parse(data)
        if name == "error" or (isinstance(chunk, dict) and chunk.get("error")):
            self._upstream_error(chunk, data)
            return
        if not isinstance(chunk, dict):
            logger.warning("skipping malformed upstream SSE data (%d bytes)", len(data))
            return
        if self._upstream_id is None and isinstance(chunk.get("id"), str):
            self._upstream_id = chunk["id"]
        if self._upstream_model is None and isinstance(chunk.get("model"), str):
            self._upstream_model = chunk["model"]
        if isinstance(usage := chunk.get("usage"), dict):
            self._usage = usage  # may come on every chunk: never a signal to close anything
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return  # the include_usage trailer, or a keep-alive
        choice = choices[0]
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, dict):
            self._on_delta(delta)
        if finish := choice.get("finish_reason"):
            # Recorded only: the usage trailer usually follows, and message_delta must carry it.
            self._finish_reason = finish
            self._matched_stop = matched_stop(choice) or self._matched_stop

    def _on_delta(self, delta: dict) -> None:
        if thinking := reasoning_text(delta):
            if self._open is not _Kind.THINKING:
                self._start_block(
                    _Kind.THINKING, {"type": "thinking", "thinking": "", "signature": ""}
                )
            self._block_delta({"type": "thinking_delta", "thinking": thinking})
            self._output_estimate += estimate_text(thinking)
        if text := visible_text(delta):
            if self._open is not _Kind.TEXT:
                self._start_block(_Kind.TEXT, {"type": "text", "text": ""})
            self._block_delta({"type": "text_delta", "text": text})
            self._output_estimate += estimate_text(text)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._on_tool_call(position, call)
        if isinstance(legacy := delta.get("function_call"), dict):
            self._on_tool_call(0, {"function": legacy})

    def _on_tool_call(self, position: int, call: dict) -> None:
        index = call.get("index")
        key = index if isinstance(index, int) else position
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = call.get("id") if isinstance(call.get("id"), str) else ""
        name = function.get("name") if isinstance(function.get("name"), str) else ""
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()  # some servers send an object

        tool = self._call_at.get(key)
        if tool is None or (call_id and tool.id and call_id != tool.id and tool.name):
            # A new call; also when Gemini-style layers put every parallel call at index 0.
            tool = self._call_at[key] = _ToolCall()
            self._calls.append(tool)
        if call_id and not tool.id:
            tool.id = call_id
        if tool.started:
            if tool is not self._open_tool and arguments:
                logger.warning(
                    "dropping arguments for tool call %r after its block closed", tool.id
                )
                return
        elif name:
            # A name resent on every chunk (or as a growing snapshot) replaces; fragments append.
            tool.name = name if name.startswith(tool.name) else tool.name + name
        if arguments:
            tool.append(arguments)
        if not tool.started and tool.name and tool.length:
            # Open once arguments flow, so a name streamed in fragments is complete by then.
            self._start_tool(tool)

    def _start_tool(self, tool: _ToolCall) -> None:
        call_id = tool_use_id(tool.id)
        if call_id in self._tool_ids:
            call_id = tool_use_id(None)
        self._tool_ids.add(call_id)
        name = self._request.tool_names.get(tool.name, tool.name)
        self._start_block(
            _Kind.TOOL, {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        )
        tool.started = True
        self._open_tool = tool
        self._output_estimate += estimate_text(name)

    def _start_block(self, kind: _Kind, content_block: dict) -> None:
        self._close_block()
        self._open = kind
        self._emit(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": self._next_index,
                "content_block": content_block,
            },
        )
        self._next_index += 1

    def _block_delta(self, delta: dict) -> None:
        self._emit(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta},
        )

    def _close_block(self) -> None:
        match self._open:
            case None:
                return
            case _Kind.TOOL:
                assert self._open_tool is not None
                arguments = self._open_tool.arguments_json()
                self._block_delta({"type": "input_json_delta", "partial_json": arguments})
                self._output_estimate += estimate_text(arguments)
                self._open_tool = None
            case _Kind.THINKING | _Kind.TEXT:
                pass
            case _:
                assert_never(self._open)
        self._emit(
            "content_block_stop", {"type": "content_block_stop", "index": self._next_index - 1}
        )
        self._open = None

    def _finalize(self) -> None:
        """Close everything, then exactly one message_delta (with full usage) and message_stop."""
        if self._phase is not _Phase.STREAMING:
            return
        self._close_block()
        for tool in self._calls:
            if not tool.started and tool.name:  # named but never sent arguments
                self._start_tool(tool)
                self._close_block()
        reason, sequence = stop_reason(
            self._finish_reason,
            tool_use=bool(self._tool_ids),
            matched=self._matched_stop,
            stop_sequences=self._request.stop_sequences,
        )
        self._stop_reason = reason
        usage = usage_from_openai(
            self._usage,
            estimated_input=self._request.estimated_input_tokens,
            estimated_output=max(1, math.ceil(self._output_estimate)),
        )
        self._emit(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage,
            },
        )
        self._frames.append(_STOP)
        self._phase = _Phase.CLOSED

    def _upstream_error(self, chunk: object, data: bytes) -> None:
        """An error payload after the 200: mapped like an HTTP error, then the stream ends (G)."""
        error = chunk.get("error") if isinstance(chunk, dict) else None
        code = (error.get("code") or error.get("status")) if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        _, body, _ = anthropic_error(status, data, {})
        self._fail(body["error"]["message"], body["error"]["type"])


def _parse(data: bytes) -> object:
    """orjson first; the stdlib fallback accepts lone surrogates and bad UTF-8, then scrubs them."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return _scrub(json.loads(data.decode("utf-8", "replace")))
    except ValueError:
        return None


def _scrub(node: object) -> object:
    """Replace lone surrogates so the frame encoder (orjson, strict UTF-8) cannot crash (§4.3 E)."""
    match node:
        case str():
            return node.encode("utf-8", "replace").decode("utf-8")
        case dict():
            return {key: _scrub(value) for key, value in node.items()}
        case list():
            return [_scrub(value) for value in node]
        case _:
            return node
