"""A Redis connection the server reset while it sat idle in a pool sends its next command on a
new connection under uvloop (the proxies' and the logger's loop), and a server that is gone
gives redis-py's ConnectionError, never uvloop's RuntimeError (shared/closed_connections.py).

The server is our own, on loopback: it speaks just enough RESP for a client's handshake and
PING, and resets (RST, SO_LINGER 0) every connection it holds when told to, as a killed or
failed-over Redis node does to its clients."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.closed_connections import guard_closed_connections
from shared.redis_client import connect
from shared.settings import Settings


class ResettingRedis:
    """Answers PING with PONG, a MULTI ... EXEC as Redis does (QUEUED, then one OK each), and
    anything else with OK; keeps the size of every SET value it took, and `reset_all` resets
    every connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.stored: list[int] = []
        """The size of each SET value taken, in order."""
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def refuse_new_connections(self) -> None:
        """Stop listening (the open connections stay): a node killed once they are reset."""
        assert self._server is not None
        self._server.close()

    async def stop(self) -> None:
        self.refuse_new_connections()
        self.reset_all()

    def reset_all(self) -> None:
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        queued: int | None = None
        try:
            while line := await reader.readline():
                words = [await _bulk_string(reader) for _ in range(int(line[1:]))]
                name = words[0].upper()
                if name == b"SET":
                    self.stored.append(len(words[2]))
                if name == b"MULTI":
                    queued, reply = 0, b"+OK\r\n"
                elif name == b"EXEC":
                    queued, reply = None, b"*%d\r\n" % queued + b"+OK\r\n" * (queued or 0)
                elif queued is not None:
                    queued, reply = queued + 1, b"+QUEUED\r\n"
                else:
                    reply = b"+PONG\r\n" if name == b"PING" else b"+OK\r\n"
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass


async def _bulk_string(reader: asyncio.StreamReader) -> bytes:
    """One `$<length>` bulk string of a command, of any size."""
    length = int((await reader.readline())[1:])
    return (await reader.readexactly(length + 2))[:-2]


async def reset_while_idle(server: ResettingRedis, connection: Connection) -> None:
    """Reset the server's side and wait until the client's transport is closed (uvloop saw
    the reset), as it is when the next command comes."""
    server.reset_all()
    for _ in range(200):
        if connection._writer is not None and connection._writer.transport.is_closing():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the client never saw the reset: the scenario did not happen")


def run_on_uvloop(scenario: Callable[[ResettingRedis, int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = ResettingRedis()
        port = await server.start()
        try:
            await scenario(server, port)
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def ping_client(client: Redis) -> None:
    assert await client.ping() is True


async def set_large(client: Redis) -> None:
    """A Claude Code turn's size: one 300 KB value."""
    assert await client.set("b23:{events}:big", b"x" * 300_000) is True


async def transaction(client: Redis) -> None:
    """A MULTI of three 100 KB values, sent in one write."""
    async with client.pipeline(transaction=True) as pipe:
        for index in range(3):
            pipe.set(f"b23:{{events}}:{index}", b"y" * 100_000)
        assert await pipe.execute() == [True, True, True]


@pytest.mark.parametrize(
    ("command", "stored"),
    [(ping_client, []), (set_large, [300_000]), (transaction, [100_000] * 3)],
    ids=["ping", "set-300KB", "multi-3x100KB"],
)
def test_a_client_from_connect_sends_on_a_new_connection(
    command: Callable[[Redis], Awaitable[None]], stored: list[int]
):
    """Whatever goes out next, whole, on the new connection: nothing of it reached the reset
    one (so nothing can run twice)."""

    async def scenario(server: ResettingRedis, port: int) -> None:
        settings = Settings(
            _env_file=None, admin_token="a" * 32, redis_url=f"redis://127.0.0.1:{port}/0"
        )
        client = connect(settings, timeout=2.0)
        assert isinstance(client, Redis)
        try:
            await client.ping()
            (pooled,) = client.connection_pool._available_connections
            await reset_while_idle(server, pooled)
            await command(client)
            assert server.connections == 2
            assert server.stored == stored
        finally:
            await client.aclose()

    run_on_uvloop(scenario)


def single_try_connection(port: int) -> Connection:
    """Made as a cluster client makes its nodes' connections: no retries (the cluster client
    handles a ConnectionError: it re-reads the slot map and goes to the promoted master)."""
    guard_closed_connections()
    return Connection(host="127.0.0.1", port=port, socket_timeout=2.0, retry=Retry(NoBackoff(), 0))


async def ping(connection: Connection) -> object:
    await connection.send_command("PING")
    return await connection.read_response()


@pytest.mark.parametrize("commands_before", [1, 3])
def test_a_connection_without_retries_sends_on_a_new_connection(commands_before: int):
    async def scenario(server: ResettingRedis, port: int) -> None:
        connection = single_try_connection(port)
        try:
            for _ in range(commands_before):
                assert await ping(connection) == b"PONG"
            await reset_while_idle(server, connection)
            assert await ping(connection) == b"PONG"
            assert server.connections == 2
        finally:
            await connection.disconnect()

    run_on_uvloop(scenario)


def test_a_server_that_is_gone_gives_a_connection_error():
    async def scenario(server: ResettingRedis, port: int) -> None:
        connection = single_try_connection(port)
        try:
            assert await ping(connection) == b"PONG"
            server.refuse_new_connections()
            await reset_while_idle(server, connection)
            with pytest.raises(RedisConnectionError):
                await ping(connection)
            assert server.connections == 1
        finally:
            await connection.disconnect()

    run_on_uvloop(scenario)
