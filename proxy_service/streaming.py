"""Streamed replies: a response that notices a client leaving without Starlette's task group,
and an upstream reader that notices silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy_service.upstream import UpstreamStream


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
    way. A timer re-armed from the last chunk notices
    the silence: a timeout around every read cost several % of a stream's CPU."""

    def __init__(self, upstream: UpstreamStream, idle: float) -> None:
        self._upstream = upstream
        self._idle = idle
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
            yield item  # type: ignore[misc]

    async def close(self) -> None:
        """Stop reading (the task ends on its own) and free the upstream connection."""
        self._timer.cancel()
        self._task.cancel()
        await self._upstream.aclose()
