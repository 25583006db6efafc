"""A streamed response that notices a client leaving without Starlette's task group."""

from __future__ import annotations

import asyncio

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


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
