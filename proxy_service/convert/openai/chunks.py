"""Reading an upstream Chat Completions SSE stream, for the translators into other protocols.

The Anthropic and Responses translators read the same upstream: chat.completion.chunk events,
`[DONE]`, error payloads after the 200, keep-alives and usage trailers. ChatChunkReader parses
each event once, keeps what metering needs (upstream id and model, usage, finish reason) and
leaves the target protocol's events to its hooks, so both read every upstream dialect alike.
"""

from __future__ import annotations

import enum
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable

import orjson

from proxy_service.convert.openai.message import reasoning_text, visible_text
from proxy_service.convert.openai.tool_calls import ToolCallFragment, tool_call_fragment
from proxy_service.convert.openai.usage import usage_record
from shared.sse import ServerSentEvent, SSEDecoder

logger = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Where a translator is in its output grammar: nothing is read before the opening frames
    or after the terminal one."""

    NEW = enum.auto()  # the protocol's opening events not sent yet
    STREAMING = enum.auto()
    CLOSED = enum.auto()  # a terminal event was sent; later input is ignored


def parse_chunk(data: bytes) -> object:
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


class ChatChunkReader(ABC):
    """One upstream stream's reading state; subclasses turn its hooks into their own frames.

    All state lives on the instance (a class-level buffer would mix concurrent streams).
    """

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._phase = Phase.NEW
        self._frames: list[bytes] = []
        self._usage: dict | None = None
        self._upstream_id: str | None = None
        self._upstream_model: str | None = None
        self._finish_reason: object = None
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
        prompt = self._estimated_input()
        completion = self._estimated_output()
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
    def error(self) -> str | None:
        """The failure message when the stream ended in the protocol's failure event."""
        return self._error

    # -- driving ------------------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """The protocol's opening frames, the first time only (routes send them before the
        upstream's first byte, so the client sees the stream begin at once)."""
        if self._phase is not Phase.NEW:
            return []
        self._phase = Phase.STREAMING
        return self._opening()

    def limit_event_bytes(self, limit: int) -> None:
        """Bound every upstream event: `feed` raises EventTooLarge past `limit` bytes."""
        self._decoder.max_event_bytes = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        """Raw upstream bytes (split anywhere) in, the protocol's frames out."""
        frames = self.start()
        if self._phase is Phase.STREAMING:
            self._read(self._decoder.feed(chunk))
        return self._take(frames)

    def _read(self, events: Iterable[ServerSentEvent]) -> None:
        for event in events:
            self._on_event(event.event, event.data)
            if self._phase is Phase.CLOSED:
                break

    def _take(self, frames: list[bytes]) -> list[bytes]:
        frames.extend(self._frames)
        self._frames = []
        return frames

    # -- upstream events ----------------------------------------------------------------------

    def _on_event(self, name: str, data: bytes) -> None:
        if data == b"[DONE]":
            self._finalize()
            return
        chunk = parse_chunk(data)
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
            self._on_finish(finish, choice)

    def _on_delta(self, delta: dict) -> None:
        if thinking := reasoning_text(delta):
            self._on_reasoning(thinking)
        if text := visible_text(delta):
            self._on_text(text)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._on_tool_call(tool_call_fragment(position, call))
        if isinstance(legacy := delta.get("function_call"), dict):
            self._on_tool_call(tool_call_fragment(0, {"function": legacy}))

    def _on_finish(self, finish: object, choice: dict) -> None:
        """Recorded only: the usage trailer usually follows, and the terminal event carries it."""
        self._finish_reason = finish

    # -- protocol hooks -----------------------------------------------------------------------

    @abstractmethod
    def _opening(self) -> list[bytes]:
        """The frames that open the stream, in the STREAMING phase already."""

    @abstractmethod
    def _on_reasoning(self, text: str) -> None:
        """A piece of the upstream's reasoning."""

    @abstractmethod
    def _on_text(self, text: str) -> None:
        """A piece of the visible answer."""

    @abstractmethod
    def _on_tool_call(self, fragment: ToolCallFragment) -> None:
        """A piece of one tool call."""

    @abstractmethod
    def _upstream_error(self, chunk: object, data: bytes) -> None:
        """An error event or chunk after the 200: fail the stream."""

    @abstractmethod
    def _finalize(self) -> None:
        """`[DONE]` (or the end of input): close everything with one terminal event."""

    @abstractmethod
    def _estimated_input(self) -> int:
        """Prompt tokens to report when the upstream sent no usage."""

    @abstractmethod
    def _estimated_output(self) -> int:
        """Completion tokens to report when the upstream sent no usage."""
