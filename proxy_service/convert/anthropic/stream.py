"""OpenAI chat-completion SSE -> Anthropic Messages SSE (conversion spec §4.3).

One translator per stream; all state lives on the instance (a class-level buffer would mix
concurrent streams, the LiteLLM bug in §7.19), and the upstream is read by ChatChunkReader, like
the Responses translator's. Grammar produced, whatever the upstream sends:
message_start, ping, (content_block_start, content_block_delta*, content_block_stop)*,
message_delta, message_stop; or, on failure, an `error` frame and nothing after it.

Tool arguments are buffered per block and sent as one `input_json_delta` when the block closes,
so the client always receives a JSON object: fragments may be cumulative snapshots, broken JSON
is repaired, and nothing has to be retracted (the spec's "buffered mode").
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import assert_never

import orjson

from proxy_service.convert.anthropic.errors import anthropic_error
from proxy_service.convert.anthropic.request import ConvertedRequest
from proxy_service.convert.anthropic.response import (
    matched_stop,
    stop_reason,
    tool_input,
    tool_use_id,
    usage_from_openai,
)
from proxy_service.convert.anthropic.token_count import estimate_text
from proxy_service.convert.openai.chunks import ChatChunkReader, Phase
from proxy_service.convert.openai.tool_calls import ToolCallBuffer, ToolCallFragment, ToolCallSlots
from proxy_service.convert.openai.upstream_errors import chunk_error_status
from shared.sse import encode_event

logger = logging.getLogger(__name__)

_PING = encode_event("ping", {"type": "ping"})
_STOP = encode_event("message_stop", {"type": "message_stop"})


class _Kind(enum.Enum):
    THINKING = enum.auto()
    TEXT = enum.auto()
    TOOL = enum.auto()


@dataclass(slots=True)
class _ToolCall(ToolCallBuffer):
    """One upstream tool call being assembled, until its tool_use block is started."""

    started: bool = False

    def arguments_json(self) -> str:
        """The buffered arguments as a JSON object text, verbatim when already valid."""
        raw = self.arguments
        try:
            if isinstance(orjson.loads(raw), dict):
                return raw
        except orjson.JSONDecodeError:
            pass
        return orjson.dumps(tool_input(raw)).decode()


class AnthropicStreamTranslator(ChatChunkReader):
    """Fed raw OpenAI SSE bytes from the upstream (split anywhere), yields Anthropic SSE frames."""

    def __init__(self, request: ConvertedRequest, message_id: str) -> None:
        super().__init__()
        self._request = request
        self._message_id = message_id
        self._next_index = 0
        self._open: _Kind | None = None
        self._open_tool: _ToolCall | None = None
        self._calls: list[_ToolCall] = []  # every call in arrival order
        self._call_at = ToolCallSlots(_ToolCall)
        self._tool_ids: set[str] = set()
        self._matched_stop: object = None
        self._output_estimate = 0.0
        self._stop_reason: str | None = None

    # -- read-only results, for metering after the stream -------------------------------------

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    # -- driving ------------------------------------------------------------------------------

    def _opening(self) -> list[bytes]:
        """message_start and one ping; sent before the first upstream byte is awaited."""
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

    def finish(self) -> list[bytes]:
        """Upstream ended (with or without `[DONE]`): close blocks, message_delta, message_stop."""
        frames = self.start()
        if self._phase is Phase.STREAMING:
            self._read(self._decoder.flush())
            self._finalize()
        return self._take(frames)

    def fail(self, message: str, error_type: str = "api_error") -> list[bytes]:
        """Mid-stream failure: one `error` frame, no message_stop (the SDKs then raise)."""
        if self._phase is Phase.CLOSED:
            return []
        self._fail(message, error_type)
        return self._take([])

    def ping(self) -> bytes:
        """A real `ping` event: Claude Code's stall watchdog ignores SSE comments."""
        return _PING

    # -- internals ----------------------------------------------------------------------------

    def _emit(self, name: str, payload: dict) -> None:
        self._frames.append(encode_event(name, payload))

    def _fail(self, message: str, error_type: str) -> None:
        self._error = message
        self._phase = Phase.CLOSED
        self._emit("error", {"type": "error", "error": {"type": error_type, "message": message}})

    def _estimated_input(self) -> int:
        return self._request.estimated_input_tokens

    def _estimated_output(self) -> int:
        return math.ceil(self._output_estimate)

    def _on_finish(self, finish: object, choice: dict) -> None:
        super()._on_finish(finish, choice)
        self._matched_stop = matched_stop(choice) or self._matched_stop

    def _on_reasoning(self, text: str) -> None:
        if self._open is not _Kind.THINKING:
            self._start_block(_Kind.THINKING, {"type": "thinking", "thinking": "", "signature": ""})
        self._block_delta({"type": "thinking_delta", "thinking": text})
        self._output_estimate += estimate_text(text)

    def _on_text(self, text: str) -> None:
        if self._open is not _Kind.TEXT:
            self._start_block(_Kind.TEXT, {"type": "text", "text": ""})
        self._block_delta({"type": "text_delta", "text": text})
        self._output_estimate += estimate_text(text)

    def _on_tool_call(self, fragment: ToolCallFragment) -> None:
        tool, created = self._call_at.locate(fragment)
        if created:
            self._calls.append(tool)
        arguments = fragment.arguments
        if tool.started:
            if tool is not self._open_tool and arguments:
                logger.warning(
                    "dropping arguments for tool call %r after its block closed", tool.upstream_id
                )
                return
        elif fragment.name:
            tool.add_name(fragment.name)
        if arguments:
            tool.append(arguments)
        if not tool.started and tool.name and tool.length:
            # Open once arguments flow, so a name streamed in fragments is complete by then.
            self._start_tool(tool)

    def _start_tool(self, tool: _ToolCall) -> None:
        call_id = tool_use_id(tool.upstream_id)
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
        if self._phase is not Phase.STREAMING:
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
        self._phase = Phase.CLOSED

    def _upstream_error(self, chunk: object, data: bytes) -> None:
        """An error payload after the 200: mapped like an HTTP error, then the stream ends (G)."""
        _, body, _ = anthropic_error(chunk_error_status(chunk), data, {})
        self._fail(body["error"]["message"], body["error"]["type"])
