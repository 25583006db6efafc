"""A small load generator for fault-injection tests: a fixed number of requests at a steady
rate, streaming and not, and a verdict on whether each answer was well formed."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from dataclasses import dataclass

import httpx
import orjson


@dataclass(frozen=True)
class Outcome:
    status: int
    """0: the request never reached a proxy (connection refused or similar)."""
    well_formed: bool
    complete: bool
    """A full answer (not an error, not a cut stream)."""
    detail: str = ""
    request_id: str | None = None


def _judge_openai(reply: httpx.Response, stream: bool) -> Outcome:
    if reply.status_code != 200:
        body = orjson.loads(reply.content)
        return Outcome(reply.status_code, "message" in body.get("error", {}), False)
    if not stream:
        return Outcome(200, bool(orjson.loads(reply.content).get("choices")), True)
    text = reply.text
    complete = text.endswith("data: [DONE]\n\n")
    errored = '"error"' in text.rsplit("data: ", 1)[-1]
    return Outcome(200, complete or errored, complete, text[-200:])


def _judge_anthropic(reply: httpx.Response, stream: bool) -> Outcome:
    if reply.status_code != 200:
        body = orjson.loads(reply.content)
        return Outcome(reply.status_code, body.get("type") == "error", False)
    if not stream:
        return Outcome(200, orjson.loads(reply.content).get("type") == "message", True)
    text = reply.text
    complete = text.rstrip().endswith('data: {"type":"message_stop"}')
    errored = "event: error" in text
    return Outcome(200, complete or errored, complete, text[-200:])


def send(url: str, key: str, protocol: str, stream: bool, model: str = "gpt-test") -> Outcome:
    """One request; transport failures count as not well formed."""
    return _send(url, key, protocol, stream, model)


def _with_request_id(outcome: Outcome, reply: httpx.Response) -> Outcome:
    request_id = reply.headers.get("x-request-id") or reply.headers.get("request-id")
    return dataclasses.replace(outcome, request_id=request_id)


def _send(url: str, key: str, protocol: str, stream: bool, model: str) -> Outcome:
    headers = {"authorization": f"Bearer {key}"}
    messages = [{"role": "user", "content": "Hi"}]
    try:
        if protocol == "openai":
            body = {"model": model, "messages": messages, "stream": stream}
            reply = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
            return _with_request_id(_judge_openai(reply, stream), reply)
        body = {"model": model, "max_tokens": 64, "messages": messages, "stream": stream}
        reply = httpx.post(url + "/v1/messages", json=body, headers=headers, timeout=30)
        return _with_request_id(_judge_anthropic(reply, stream), reply)
    except (httpx.HTTPError, ValueError) as error:
        return Outcome(0, False, False, repr(error))


def run_load(
    urls: list[str],
    key: str,
    count: int,
    rate: float,
    protocols: tuple[str, ...] = ("openai",),
    model: str = "gpt-test",
    streams: tuple[bool, ...] = (False, True),
) -> list[Outcome]:
    """`count` requests at `rate` per second, rotating over replicas, protocols and stream modes."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        started = time.monotonic()
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            protocol = protocols[i % len(protocols)]
            stream = streams[(i // len(protocols)) % len(streams)]
            slot = i // len(protocols)  # so every replica sees every protocol
            futures.append(pool.submit(_send_to_one_of, urls, slot, key, protocol, stream, model))
        return [future.result() for future in futures]


def _send_to_one_of(urls: list[str], slot: int, key: str, *args) -> Outcome:
    """Pick the replica when the request is sent, not when it was queued: `urls` may change
    (a rolling restart takes a replica out of the list)."""
    return send(urls[slot % len(urls)], key, *args)


class Background:
    """Run `run_load` in a thread while the test injects faults."""

    def __init__(self, *args, **kwargs) -> None:
        self.result: list[Outcome] | None = None
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self._thread.start()

    def _run(self, *args, **kwargs) -> None:
        self.result = run_load(*args, **kwargs)

    def join(self, timeout: float = 60) -> list[Outcome]:
        self._thread.join(timeout)
        assert self.result is not None, "load generator did not finish"
        return self.result
