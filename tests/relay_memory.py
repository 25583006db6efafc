"""Proxy memory with two clients that open a stream of a huge upstream reply and read nothing
(`python -m tests.relay_memory ROUTE MIB`, ROUTE one of openai, anthropic, responses): prints
how much of the two replies the upstream got rid of, and the proxy's RSS before and after."""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from tests.fake_upstream import chunk
from tests.processes import ManagedProcess, RedisServer, free_port, wait_http
from tests.system import running_system

KEY = "bsk-measure-relay-0001"
ROUTES = {
    "openai": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": (
        "/v1/messages",
        {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "responses": ("/v1/responses", {"input": "hi"}),
}


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


def open_without_reading(port: int, path: str, body: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    data = orjson.dumps({"model": "m", "stream": True, **body})
    head = (
        f"POST {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def main() -> None:
    route, mib = sys.argv[1], int(sys.argv[2])
    root = Path(tempfile.mkdtemp())
    (root / "redis").mkdir()
    redis = RedisServer(root / "redis").start()
    port = free_port()
    argv = [sys.executable, "-m", "tests.misbehaving_upstream", "--port", str(port)]
    upstream = ManagedProcess("raw", argv, {}, root).start()
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_stats", upstream)
    piece = "data: " + orjson.dumps(chunk("m", {"content": "x" * 1000})).decode() + "\n\n"
    step = {
        "headers": [["content-type", "text/event-stream"]],
        "repeat": {"piece": piece, "count": (mib << 20) // len(piece)},
        "tail": "data: [DONE]\n\n",
        "framing": "chunked",
    }
    try:
        with running_system(redis.url, base + "/v1", root / "system") as system:
            system.upsert(KEY, "measurer")
            pid = system.proxies[0].pid
            httpx.post(base + "/_script", json=[step, step]).raise_for_status()
            before = rss_mib(pid)
            path, body = ROUTES[route]
            proxy_port = int(system.url.rsplit(":", 1)[1])
            clients = [open_without_reading(proxy_port, path, body) for _ in range(2)]
            taken, peak = -1, before
            while True:
                time.sleep(1.0)
                peak = max(peak, rss_mib(pid))
                now = httpx.get(base + "/_stats").json()["body_bytes_written"]
                if now == taken:
                    break
                taken = now
            print(
                f"{route}: upstream gave {taken >> 20} MiB of {2 * mib} MiB; proxy RSS "
                f"{before} MiB before, {rss_mib(pid)} MiB after, {peak} MiB peak"
            )
            for client in clients:
                client.close()
    finally:
        upstream.stop()
        redis.stop()


if __name__ == "__main__":
    main()
