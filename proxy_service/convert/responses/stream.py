"""Chat Completions SSE -> Responses SSE events (bridge spec §4).

One translator per stream; all state lives on the instance, and the upstream is read by
ChatChunkReader, like the Anthropic translator's. Grammar produced, whatever the
upstream sends: `response.created`, `response.in_progress`, then per output item
`output_item.added` (+ `content_part.added` / `reasoning_summary_part.added`) before its deltas
and its `.done` events before the single terminal event (`response.completed`, or
`response.incomplete` for a length or content-filter stop), every payload with a contiguous
`sequence_number`; or, on failure, `response.failed` and nothing after it. That is what the
openai SDK's stream accumulator and Codex check (§4.3): Codex drops a delta whose item was not
added and executes what `output_item.done` carries.

Reasoning and message items are open one at a time; parallel tool calls stay open side by side
until the upstream ends (their fragments are keyed by upstream `index`). Function-call arguments
stream as deltas; freeform-tool input is unwrapped from its JSON wrapper, so it is sent whole
when the call closes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from proxy_service.convert.openai.chunks import ChatChunkReader, Phase
from proxy_service.convert.openai.tool_calls import ToolCallBuffer, ToolCallFragment, ToolCallSlots
from proxy_service.convert.responses.errors import stream_failure
from proxy_service.convert.responses.request import ConvertedRequest
from proxy_service.convert.responses.response import (
    call_item,
    call_item_id,
    message_item,
    new_item_id,
    new_response_id,
    output_estimate,
    output_text,
    reasoning_item,
    response_object,
    response_status,
    responses_usage,
    summary_part,
    unique_call_id,
)
from shared.sse import encode_event

logger = logging.getLogger(__name__)

_TRUNCATED_STREAM = "the upstream stream ended before the response was complete"


@dataclass(slots=True)
class _Text:
    """The open reasoning or message item and its deltas so far."""

    kind: Literal["reasoning", "message"]
    output_index: int
    item_id: str
    parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Call(ToolCallBuffer):
    """One upstream tool call, from its first fragment to its `output_item.done`."""

    output_index: int | None = None  # set when its output_item.added is sent
    item_id: str = ""
    call_id: str = ""
    custom: bool = False
    search: bool = False  # tool_search_call: no argument events, the item carries an object
    closed: bool = False

    @property
    def streams_arguments(self) -> bool:
        return not (self.custom or self.search)


class ResponsesStreamTranslator(ChatChunkReader):
    """Fed raw Chat Completions SSE bytes (split anywhere), yields Responses SSE frames."""

    def __init__(
        self,
        request: ConvertedRequest,
        *,
        response_id: str | None = None,
        created_at: int | None = None,
    ) -> None:
        super().__init__()
        self._request = request
        self._response_id = response_id or new_response_id()
        self._created_at = created_at or int(time.time())
        self._sequence = 0
        self._output: list[dict | None] = []  # final items by output_index; None while open
        self._text: _Text | None = None
        self._waiting: list[_Call] = []  # calls not opened yet, in arrival order
        self._open_calls: list[_Call] = []  # opened, not closed, in output_index order
        self._call_at = ToolCallSlots(_Call)
        self._call_ids: set[str] = set()
        self._response: dict | None = None

    # -- read-only results, for metering and for non-stream clients ---------------------------

    @property
    def response_id(self) -> str:
        return self._response_id

    @property
    def response(self) -> dict | None:
        """The Response object of the terminal event (completed, incomplete or failed)."""
        return self._response

    # -- driving ------------------------------------------------------------------------------

    def _opening(self) -> list[bytes]:
        """`response.created` and `response.in_progress`; sent before the upstream says anything."""
        snapshot = self._snapshot()
        self._emit("response.created", response=snapshot)
        self._emit("response.in_progress", response=snapshot)
        return self._take([])

    def finish(self) -> list[bytes]:
        """Upstream ended: close items and send the terminal event; `response.failed` when it
        ended before a finish_reason or `[DONE]` (a cut connection: Codex retries the turn)."""
        frames = self.start()
        if self._phase is Phase.STREAMING:
            self._read(self._decoder.flush())
        if self._phase is Phase.STREAMING:
            if self._finish_reason is None:
                self._fail(_TRUNCATED_STREAM, "server_error")
            else:
                self._finalize()
        return self._take(frames)

    def fail(self, message: str, code: str = "server_error") -> list[bytes]:
        """A failure after the first byte: `response.failed` with the items so far, then
        nothing. Open items are not closed: Codex would execute a half-streamed call."""
        frames = self.start()
        if self._phase is Phase.STREAMING:
            self._fail(message, code)
        return self._take(frames)

    def heartbeat(self) -> bytes:
        """A `response.in_progress` frame for a silent upstream: Codex's idle timer counts
        events, so SSE comments alone let it time out a long prefill (§4.6)."""
        if self._phase is Phase.NEW:
            return b"".join(self.start())
        if self._phase is Phase.CLOSED:
            return b""
        self._emit("response.in_progress", response=self._snapshot())
        return b"".join(self._take([]))

    # -- ChatChunkReader hooks ----------------------------------------------------------------

    def _estimated_input(self) -> int:
        return self._request.estimated_input_tokens

    def _estimated_output(self) -> int:
        return output_estimate(self._items_so_far())

    def _upstream_error(self, chunk: object, data: bytes) -> None:
        code, message = stream_failure(chunk, data)
        self._fail(message, code)

    def _on_reasoning(self, text: str) -> None:
        self._text_delta("reasoning", text)

    def _on_text(self, text: str) -> None:
        self._text_delta("message", text)

    def _text_delta(self, kind: Literal["reasoning", "message"], text: str) -> None:
        if self._text is None or self._text.kind != kind:
            self._close_open()
            self._open_text(kind)
        assert self._text is not None
        self._text.parts.append(text)
        where = self._where(self._text)
        if kind == "reasoning":
            self._emit(
                "response.reasoning_summary_text.delta", **where, summary_index=0, delta=text
            )
        else:
            self._emit(
                "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
            )

    def _on_tool_call(self, fragment: ToolCallFragment) -> None:
        tool, created = self._call_at.locate(fragment)
        if created:
            self._waiting.append(tool)
        if tool.closed:
            if fragment.arguments:
                logger.warning("dropping arguments for tool call %r after it closed", tool.call_id)
            return
        if tool.output_index is None and fragment.name:
            tool.add_name(fragment.name)
        new = tool.append(fragment.arguments) if fragment.arguments else ""
        if tool.output_index is not None:
            if new and tool.streams_arguments:
                self._emit("response.function_call_arguments.delta", **self._where(tool), delta=new)
        elif tool.name and tool.length:
            # Opened once arguments flow, so a name streamed in fragments is complete by then.
            self._open_waiting(tool)

    # -- items --------------------------------------------------------------------------------

    def _open_text(self, kind: Literal["reasoning", "message"]) -> None:
        output_index = len(self._output)
        self._output.append(None)
        if kind == "reasoning":
            text = _Text(kind, output_index, new_item_id("rs"))
            item: dict = {"id": text.item_id, "type": "reasoning", "summary": []}
        else:
            text = _Text(kind, output_index, new_item_id("msg"))
            item = message_item(text.item_id, "", "in_progress") | {"content": []}
        self._text = text
        self._emit("response.output_item.added", output_index=output_index, item=item)
        if kind == "reasoning":
            self._emit(
                "response.reasoning_summary_part.added",
                **self._where(text),
                summary_index=0,
                part=summary_part(""),
            )
        else:
            self._emit(
                "response.content_part.added",
                **self._where(text),
                content_index=0,
                part=output_text(""),
            )

    def _close_text(self, status: str) -> None:
        text, self._text = self._text, None
        if text is None:
            return
        item = self._text_item(text, status)
        full = "".join(text.parts)
        where = self._where(text)
        if text.kind == "reasoning":
            self._emit("response.reasoning_summary_text.done", **where, summary_index=0, text=full)
            self._emit(
                "response.reasoning_summary_part.done",
                **where,
                summary_index=0,
                part=summary_part(full),
            )
        else:
            self._emit(
                "response.output_text.done", **where, content_index=0, text=full, logprobs=[]
            )
            self._emit(
                "response.content_part.done", **where, content_index=0, part=output_text(full)
            )
        self._done_item(text.output_index, item)

    def _open_waiting(self, last: _Call) -> None:
        """Open every named call that arrived up to `last`, in arrival order: parallel calls
        then keep the upstream's order even when an earlier one has no arguments yet."""
        self._close_text("completed")
        position = self._waiting.index(last) + 1
        head, tail = self._waiting[:position], self._waiting[position:]
        for tool in head:
            if tool.name:
                self._open_call(tool)
        self._waiting = [tool for tool in head if not tool.name] + tail

    def _open_call(self, tool: _Call) -> None:
        tool.output_index = len(self._output)
        self._output.append(None)
        target = self._request.tools.get(tool.name)
        tool.custom = bool(target and target.custom)
        tool.search = bool(target and target.search)
        tool.item_id = call_item_id(tool.name, self._request)
        tool.call_id = unique_call_id(tool.upstream_id, self._call_ids)
        item = self._call_item(tool, "in_progress", truncated=True)  # truncated: no repair work
        if tool.search:
            item["arguments"] = {}
        else:
            item["input" if tool.custom else "arguments"] = ""  # the SDK appends deltas to it
        self._open_calls.append(tool)
        self._emit("response.output_item.added", output_index=tool.output_index, item=item)
        if tool.length and tool.streams_arguments:
            self._emit(
                "response.function_call_arguments.delta",
                **self._where(tool),
                delta=tool.arguments,
            )

    def _close_call(self, tool: _Call, status: str, truncated: bool) -> None:
        assert tool.output_index is not None
        tool.closed = True
        item = self._call_item(tool, status, truncated)
        where = self._where(tool)
        if tool.search:
            pass  # the done item carries the arguments; the grammar has no events for them
        elif tool.custom:
            if item["input"]:
                self._emit("response.custom_tool_call_input.delta", **where, delta=item["input"])
            self._emit("response.custom_tool_call_input.done", **where, input=item["input"])
        else:
            if not tool.length and item["arguments"]:  # nothing streamed: "{}" for no arguments
                self._emit(
                    "response.function_call_arguments.delta", **where, delta=item["arguments"]
                )
            self._emit(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        self._done_item(tool.output_index, item)

    def _close_open(self, *, cut: bool = False) -> None:
        """Close the open text item or the open calls (never both are open), in output_index
        order; with `cut`, the last of them is the one the output limit cut off."""
        self._close_text("incomplete" if cut else "completed")
        calls, self._open_calls = self._open_calls, []
        for position, tool in enumerate(calls):
            last = cut and position == len(calls) - 1
            self._close_call(tool, "incomplete" if last else "completed", truncated=last)

    def _done_item(self, output_index: int, item: dict) -> None:
        self._output[output_index] = item
        self._emit("response.output_item.done", output_index=output_index, item=item)

    def _text_item(self, text: _Text, status: str) -> dict:
        full = "".join(text.parts)
        if text.kind == "reasoning":
            return reasoning_item(text.item_id, full, self._request)
        return message_item(text.item_id, full, status)

    def _call_item(self, tool: _Call, status: str, truncated: bool) -> dict:
        return call_item(
            tool.item_id,
            tool.call_id,
            tool.name,
            tool.arguments,
            self._request,
            status=status,
            truncated=truncated,
        )

    def _items_so_far(self) -> list[dict]:
        """Every item in output_index order; open ones as they stand, marked incomplete."""
        partial: dict[int, dict] = {}
        if self._text is not None:
            partial[self._text.output_index] = self._text_item(self._text, "incomplete")
        for tool in self._open_calls:
            partial[tool.output_index] = self._call_item(tool, "incomplete", truncated=True)
        return [item or partial[index] for index, item in enumerate(self._output)]

    # -- the end ------------------------------------------------------------------------------

    def _finalize(self) -> None:
        """Close everything, then exactly one terminal event with the full output and usage."""
        if self._phase is not Phase.STREAMING:
            return
        status, reason = response_status(self._finish_reason)
        if named := [t for t in self._waiting if t.name]:
            self._open_waiting(named[-1])  # named calls that never sent arguments
        self._close_open(cut=status == "incomplete")
        output = self._items_so_far()
        self._response = self._terminal(status, output, incomplete_reason=reason)
        event = "response.completed" if status == "completed" else "response.incomplete"
        self._emit(event, response=self._response)
        self._phase = Phase.CLOSED

    def _fail(self, message: str, code: str) -> None:
        self._error = message
        self._response = self._terminal(
            "failed", self._items_so_far(), error={"code": code, "message": message}
        )
        self._emit("response.failed", response=self._response)
        self._phase = Phase.CLOSED

    def _terminal(
        self,
        status: str,
        output: list[dict],
        *,
        error: dict | None = None,
        incomplete_reason: str | None = None,
    ) -> dict:
        usage = responses_usage(
            self._usage,
            estimated_input=self._request.estimated_input_tokens,
            estimated_output=output_estimate(output),
        )
        return response_object(
            self._request,
            response_id=self._response_id,
            created_at=self._created_at,
            status=status,
            output=output,
            usage=usage,
            error=error,
            incomplete_reason=incomplete_reason,
        )

    # -- framing ------------------------------------------------------------------------------

    def _snapshot(self) -> dict:
        """The in-progress Response of created/in_progress: no output (the SDK would otherwise
        match its items against the ones it assembles)."""
        return response_object(
            self._request,
            response_id=self._response_id,
            created_at=self._created_at,
            status="in_progress",
            output=[],
            usage=None,
        )

    @staticmethod
    def _where(item: _Text | _Call) -> dict:
        return {"item_id": item.item_id, "output_index": item.output_index}

    def _emit(self, event_type: str, **fields: object) -> None:
        payload = {"type": event_type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        self._frames.append(encode_event(event_type, payload))
