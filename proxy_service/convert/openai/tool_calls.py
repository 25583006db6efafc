"""Assembling upstream tool calls from Chat Completions stream fragments.

Servers stream calls in many dialects: keyed by `index` or by list position, ids and names on
the first fragment or on every one, arguments as fragments, cumulative snapshots or objects.
This is where they are normalised, so every target protocol sees the same calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson


@dataclass(frozen=True, slots=True)
class ToolCallFragment:
    """One `tool_calls` entry of a delta, its fields checked and typed."""

    key: int  # the upstream `index`, else the entry's position in the delta
    call_id: str
    name: str
    arguments: str | None  # text, also when a server sent an object


def tool_call_fragment(position: int, call: dict) -> ToolCallFragment:
    """The typed fields of a delta's `tool_calls[position]`; missing or odd fields are empty."""
    index = call.get("index")
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()  # some servers send an object
    return ToolCallFragment(
        key=index if isinstance(index, int) else position,
        call_id=call.get("id") if isinstance(call.get("id"), str) else "",
        name=function.get("name") if isinstance(function.get("name"), str) else "",
        arguments=arguments,
    )


@dataclass(slots=True)
class ToolCallBuffer:
    """One upstream call's id, name and arguments so far; protocols subclass it for their state."""

    upstream_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    length: int = 0

    @property
    def arguments(self) -> str:
        return "".join(self.parts)

    def append(self, fragment: str) -> str:
        """Add arguments, returning what is new: a fragment repeating everything so far is a
        cumulative snapshot (some upstreams resend the full arguments)."""
        if self.length and len(fragment) >= self.length:
            so_far = "".join(self.parts)
            self.parts = [so_far]
            if fragment.startswith(so_far):
                fragment = fragment[self.length :]
        if fragment:
            self.parts.append(fragment)
            self.length += len(fragment)
        return fragment

    def add_name(self, name: str) -> None:
        """A name resent on every chunk (or as a growing snapshot) replaces; fragments append."""
        self.name = name if name.startswith(self.name) else self.name + name


CallT = TypeVar("CallT", bound=ToolCallBuffer)


class ToolCallSlots(Generic[CallT]):
    """Upstream tool index -> the latest call at it."""

    def __init__(self, new_call: Callable[[], CallT]) -> None:
        self._new_call = new_call
        self._at: dict[int, CallT] = {}

    def locate(self, fragment: ToolCallFragment) -> tuple[CallT, bool]:
        """(the call `fragment` belongs to, whether it starts a new one)."""
        call = self._at.get(fragment.key)
        call_id = fragment.call_id
        created = call is None or bool(
            call_id and call.upstream_id and call_id != call.upstream_id and call.name
        )
        if created:
            # A new call; also when Gemini-style layers put every parallel call at index 0.
            call = self._at[fragment.key] = self._new_call()
        assert call is not None
        if call_id and not call.upstream_id:
            call.upstream_id = call_id
        return call, created
