"""A command about to go out on a Redis connection the server has already closed goes out on a
new connection instead, under uvloop as under asyncio's own loop.

uvloop closes a socket's transport as soon as the peer resets it (a Redis node killed, or a
failed-over master dropping its clients) and raises RuntimeError ("unable to perform
operation on <TCPTransport closed=True ...>; the handler is closed") on the next write, where
asyncio's loop drops the write and the read then fails with ConnectionError. redis-py lets
that RuntimeError through (it converts OSError only; MagicStack/uvloop#506), so a pooled
connection to a dead node failed whatever task drew it next (the proxy's key sync after a
cluster failover) instead of counting as the outage every caller already rides out.

Nothing was sent on the closed connection, so sending on a new one is always safe (a MULTI goes
out in one write; pub/sub resubscribes on connect): a server that is gone refuses the new
connection, a ConnectionError; one that only dropped its clients (a demoted master, an idle
timeout) answers; a Sentinel-managed connection connects to the master the sentinels name now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio.connection import AbstractConnection

_unguarded_send = AbstractConnection.send_packed_command


async def _send_unless_closed(
    self: AbstractConnection, command: bytes | str | Iterable[bytes], check_health: bool = True
) -> None:
    writer: Any = self._writer
    if writer is not None and writer.transport.is_closing():
        await self.disconnect(nowait=True)  # and the send connects anew
    await _unguarded_send(self, command, check_health)


def guard_closed_connections() -> None:
    """Make every redis.asyncio connection of this process check its transport before a
    write (idempotent). Called by shared.redis_client.connect, so every client has it."""
    AbstractConnection.send_packed_command = _send_unless_closed  # type: ignore[method-assign]
