"""Builds the one usage event each authenticated request produces."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy_service.ids import random_hex
from proxy_service.limits import has_budget
from proxy_service.spend import charged_nano
from proxy_service.state import ProxyState
from proxy_service.streaming import RelayResponse
from shared.events import Protocol
from shared.keys import KeyRecord
from shared.supervision import describe_failure
from shared.usage_split import split_usage
from shared.users import UserSettings

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 256
"""`model` and `upstream_id` are names: longer ones are cut (they are never truncated later)."""
MAX_ERROR_CHARS = 2000

KNOWN_USER_AGENTS = (
    ("claude-code/", "claude-code"),
    ("codex_", "codex"),
    ("qwencode/", "qwen-code"),
    ("agents/python", "openai-agents-sdk"),
    ("anthropic/python", "anthropic-python-sdk"),
    ("asyncanthropic/python", "anthropic-python-sdk"),
    ("anthropic/js", "anthropic-js-sdk"),
    ("openai/python", "openai-python-sdk"),
    ("asyncopenai/python", "openai-python-sdk"),
    ("openai/js", "openai-js-sdk"),
)
"""User-Agent prefixes (lower case) of clients whose agent names them (tests/test_client_app.py
holds the header sets real clients send). Aider and LangChain's ChatOpenAI send the openai SDK's
own agent and nothing else: only `x-client-app` tells them apart."""
CLAUDE_CLI = "claude-cli/"
"""Claude Code's agent, also sent by qwen-code in its Anthropic mode."""


SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
REQUEST_ID_HEADERS = {
    "openai_chat": "x-request-id",
    "openai_embeddings": "x-request-id",
    "openai_responses": "x-request-id",
    "anthropic_messages": "request-id",
    "anthropic_count_tokens": "request-id",
}
"""Where each API puts its request id (the SDKs expose these)."""


def client_app_from(headers: Mapping[str, str]) -> str:
    """x-client-app if given, else Codex by its `originator` header, else a name for a known
    User-Agent, else its product name."""
    explicit = headers.get("x-client-app", "").strip()
    if explicit:
        return explicit[:64]
    if headers.get("originator", "").lower().startswith("codex"):
        return "codex"
    agent = headers.get("user-agent", "").strip().lower()
    if agent.startswith(CLAUDE_CLI):
        return "claude-code" if _sent_by_claude_code(headers) else "qwen-code"
    for prefix, name in KNOWN_USER_AGENTS:
        if agent.startswith(prefix):
            return name
    product = agent.split("/", 1)[0].split(" ", 1)[0]
    return product[:64] or "unknown"


def _sent_by_claude_code(headers: Mapping[str, str]) -> bool:
    """Claude Code sends its session id and its `claude-code-` beta; qwen-code, which borrows
    its agent, sends neither (research/real-clients.md, F6)."""
    return "x-claude-code-session-id" in headers or "claude-code-" in headers.get(
        "anthropic-beta", ""
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class UsageMeter:
    """Per-request: knows who asked and when; `finish` publishes the event exactly once."""

    __slots__ = (
        "_clock",
        "_finished",
        "_key",
        "_limiter",
        "_metrics",
        "_prices",
        "_publisher",
        "_upstream_wait",
        "_user",
        "asked_model",
        "base",
        "started_at_ms",
    )

    def __init__(
        self,
        state: ProxyState,
        protocol: Protocol,
        key: KeyRecord,
        user: UserSettings | None,
        headers: Mapping[str, str],
    ) -> None:
        self._clock = time.perf_counter()
        self._upstream_wait = 0.0
        self._metrics = state.metrics
        self._publisher = state.events
        self._limiter = state.limiter
        self._prices = state.prices
        self._key = key
        self._user = user
        self.asked_model: str | None = None
        """The model the request asked for (after MODEL_MAP), once its body was read."""
        self._finished = False
        self.started_at_ms = now_ms()
        self.base: dict[str, Any] = {
            "request_id": "req_" + random_hex(16),
            "protocol": protocol,
            "client_app": client_app_from(headers),
            "user_id": key.user_id,
            "key_id": key.key_id,
        }

    @property
    def request_id(self) -> str:
        return self.base["request_id"]

    def upstream_waited(self, seconds: float) -> None:
        self._upstream_wait += seconds
        self._metrics.upstream[self.base["protocol"]].observe(seconds)

    def sse_response(self, frames: AsyncIterator[bytes], status: int = 200) -> RelayResponse:
        """A streamed answer: never cached or buffered by proxies in front of us."""
        headers = {**SSE_HEADERS, **self.response_headers()}
        return RelayResponse(frames, status, headers, media_type="text/event-stream")

    def reply(
        self,
        content: bytes,
        status: int,
        media_type: str,
        describe: Callable[[], dict[str, Any]],
        headers: Mapping[str, str] | None = None,
    ) -> MeteredReply:
        """A buffered answer, metered with `describe()` once it was sent or failed to be."""
        all_headers = {**(headers or {}), **self.response_headers()}
        settle = functools.partial(self.settle, describe, status)
        return MeteredReply(content, status, all_headers, media_type, settle)

    def response_headers(self) -> dict[str, str]:
        """x-request-id and x-b23-overhead-ms (time in the proxy so far, upstream wait
        excluded), observed into the overhead histogram."""
        overhead = time.perf_counter() - self._clock - self._upstream_wait
        self._metrics.overhead[self.base["protocol"]].observe(overhead)
        request_id_header = REQUEST_ID_HEADERS[self.base["protocol"]]
        return {request_id_header: self.request_id, "x-b23-overhead-ms": f"{overhead * 1000:.3f}"}

    def settle(self, describe: Callable[[], dict[str, Any]], failed_status: int) -> None:
        """Finish with the fields `describe()` works out (parsing a reply, say); if that
        fails, finish all the same with `failed_status` and why, so the request keeps its
        one record."""
        try:
            fields = describe()
        except Exception as error:
            reason = describe_failure(error)
            log.error("request %s: metering failed: %s", self.request_id, reason)
            fields = {"status_code": failed_status, "error": f"metering failed: {reason}"}
        self.finish(**fields)

    def finish(
        self,
        *,
        status_code: int,
        error: str | None = None,
        upstream_id: str | None = None,
        model: str | None = None,
        prompt: Any = None,
        response: Any = None,
        response_stream: str | None = None,
        response_stream_cut: dict[str, int] | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        """Publish the event and charge token limits and money budgets; later calls are
        ignored, so every path may call it safely. `response_stream_cut`: how much of a long
        stream the record did not keep (streaming.StreamCopy)."""
        if self._finished:
            return
        self._finished = True
        ended = now_ms()
        event = {
            **self.base,
            "upstream_id": _text(upstream_id, MAX_NAME_CHARS),
            "model": _text(model, MAX_NAME_CHARS),
            "started_at_ms": self.started_at_ms,
            "ended_at_ms": ended,
            "latency_ms": ended - self.started_at_ms,
            "status_code": status_code,
            "error": _text(error, MAX_ERROR_CHARS),
            "prompt": prompt,
            "response": response,
            "usage": usage,
            "tokens": None if usage is None else split_usage(usage),
        }
        if response_stream is not None:
            event["response_stream"] = response_stream
        if response_stream_cut is not None:
            event["response_stream_cut"] = response_stream_cut
        self._publisher.publish(event)
        self._metrics.requests.add(self.base["protocol"], status_code)
        if usage is not None:
            self._metrics.count_tokens(self.base["protocol"], usage)
            self._limiter.charge(self._key, self._user, usage["total_tokens"], self._cost(event))

    def _cost(self, event: dict[str, Any]) -> int:
        """Nano-USD to charge to money budgets: none without one (nothing is priced then)."""
        if not has_budget(self._key, self._user):
            return 0
        models = (event["model"], self.asked_model)
        return charged_nano(self._prices.table, models, event["tokens"])


class MeteredReply(Response):
    """A buffered answer whose metering runs after the send, in a `finally`: the reply is
    parsed for usage off the client's time, and a send that fails (a client gone, a shutdown
    cutting it) still leaves the record."""

    def __init__(
        self,
        content: bytes,
        status: int,
        headers: Mapping[str, str],
        media_type: str,
        settle: Callable[[], None],
    ) -> None:
        super().__init__(content, status, headers, media_type)
        self._settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._settle()


def _text(value: Any, limit: int) -> str | None:
    """A string field of the record: never another type, never unbounded."""
    return value[:limit] if isinstance(value, str) else None
