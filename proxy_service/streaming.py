"""Streamed replies: a response that notices a client leaving without Starlette's task group,
an upstream reader that notices silence, and the bounded copy of a stream its record keeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy_service.upstream import UpstreamStream
from shared.settings import Settings


async def _cancel_on_disconnect(receive: Receive, relay: asyncio.Task) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    relay.cancel()


class RelayResponse(StreamingResponse):
    """StreamingResponse for relays that meter themselves (no background task).

    uvicorn (ASGI spec 2.3) drops writes to a closed connection silently, so a client that left
    must be noticed on `receive`. Starlette waits for that in an anyio task group, about 8 % of a
    stream's CPU; here one plain task waits and cancels the relay, whose `finally` closes the
    upstream and records the cut.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, relay))
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise  # not the client leaving: a shutdown, pass it on
            relay.uncancel()
        finally:
            watcher.cancel()


_END = object()


class SilenceAwareReader:
    """Reads the upstream in its own task, so a relay can send keep-alives (Anthropic pings,
    Responses in-progress events) while the upstream is silent without cancelling a read half
    way. A timer re-armed from the last chunk notices the silence: a timeout around every read
    cost several % of a stream's CPU.

    The queue between the two is bounded in bytes: while more than `max_queued_bytes` wait for
    a client that does not read, the task stops reading, so the upstream's socket fills and
    TCP holds the upstream back (without the bound, two 300 MB replies cost 600 MB of RSS)."""

    def __init__(self, upstream: UpstreamStream, idle: float, max_queued_bytes: int) -> None:
        self._upstream = upstream
        self._idle = idle
        self._max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._last_activity = self._loop.time()
        self._task = self._loop.create_task(self._pump())
        self._timer = self._loop.call_later(idle, self._on_timer)

    async def _pump(self) -> None:
        try:
            async for chunk in self._upstream.chunks():
                self._last_activity = self._loop.time()
                self._queue.put_nowait(chunk)
                self._queued_bytes += len(chunk)
                if self._queued_bytes > self._max_queued_bytes:
                    self._room.clear()
                    await self._room.wait()
            self._queue.put_nowait(_END)
        except Exception as error:  # handed to the relay, which decides what the client sees
            self._queue.put_nowait(error)

    def _on_timer(self) -> None:
        now = self._loop.time()
        if now - self._last_activity >= self._idle:
            self._queue.put_nowait(None)
            self._last_activity = now
        self._timer = self._loop.call_at(self._last_activity + self._idle, self._on_timer)

    async def chunks(self) -> AsyncIterator[bytes | None]:
        """Upstream chunks; None after every `idle` seconds of silence; raises the reader's
        error."""
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                self._taken(len(item))  # type: ignore[arg-type]
            yield item  # type: ignore[misc]

    def _taken(self, size: int) -> None:
        self._queued_bytes -= size
        if self._queued_bytes <= self._max_queued_bytes:
            self._room.set()

    async def close(self) -> None:
        """Stop reading (the task ends on its own) and free the upstream connection."""
        self._timer.cancel()
        self._task.cancel()
        await self._upstream.aclose()


class StreamCopy:
    """What a relay keeps of the bytes it sent, for the record: the first `limit` of them, and
    how many there were in all. A client reading a 300 MB stream must not make the proxy hold
    300 MB; the logger keeps far less of a stream than this anyway (LOG_MAX_RECORD_BYTES)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._kept = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._limit - self._kept
        if room > 0:
            piece = data if len(data) <= room else data[:room]
            self._parts.append(piece)
            self._kept += len(piece)

    def kept(self) -> bytes:
        return b"".join(self._parts)

    @property
    def cut(self) -> int:
        """Bytes sent but not kept."""
        return self.total - self._kept

    def record_fields(self) -> dict[str, Any]:
        """`response_stream` (as text), and `response_stream_cut` when not all of it was kept."""
        fields: dict[str, Any] = {"response_stream": self.kept().decode("utf-8", "replace")}
        if self.cut:
            fields["response_stream_cut"] = {"kept_bytes": self._kept, "total_bytes": self.total}
        return fields


def stream_copy(settings: Settings) -> StreamCopy:
    """The record's copy of a stream: STREAM_RECORD_BYTES, or with FULL_TRACE_LOGGING the
    largest reply the proxy takes at all."""
    if settings.full_trace_logging:
        return StreamCopy(settings.max_upstream_body_bytes)
    return StreamCopy(settings.stream_record_bytes)
