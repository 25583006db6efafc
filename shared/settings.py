"""Settings shared by the proxy and the logger, read from the environment and `.env`."""

from __future__ import annotations

import os
import signal
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_ADMIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Every variable of the original README plus what the split into services needs."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    upstream_base_url: str = Field(
        "https://api.openai.com/v1",
        description="Base URL of the OpenAI-compatible upstream; /chat/completions etc. appended.",
    )
    upstream_api_key: SecretStr | None = Field(
        None,
        description="Credential sent upstream. Unset: the client's own key is forwarded.",
    )
    upstream_connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect upstream.")
    upstream_read_timeout: float = Field(
        600.0, gt=0, description="Seconds the upstream may stay silent before we give up."
    )
    data_dir: Path = Field(Path("./data"), description="Directory of keys.json and events.jsonl.")
    admin_token: SecretStr = Field(..., description="Token required in x-admin-token for /admin.")
    admin_token_previous: SecretStr | None = Field(
        None,
        description="During a rotation only: the old admin token, still accepted until every "
        "replica runs with the new ADMIN_TOKEN (then unset it).",
    )
    port: int = Field(8866, ge=1, le=65535, description="Port the proxy listens on.")
    host: str = Field("0.0.0.0", description="Address the proxy listens on.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests and streams may finish."
    )
    max_log_chunks: int = Field(50, ge=0, description="SSE chunks kept per logged stream.")
    max_log_field_size: int = Field(
        2000, ge=100, description="Approximate max characters of prompt and response per record."
    )
    full_trace_logging: bool = Field(False, description="Log prompts and responses untruncated.")
    log_max_record_bytes: int = Field(
        16384,
        ge=4096,
        description="Largest line of events.jsonl unless FULL_TRACE_LOGGING, whatever the event.",
    )
    logger_batch_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        description="Stream entry bytes the logger reads a batch (one entry more at most).",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis used as bus and cache.")
    redis_mode: Literal["standalone", "cluster", "sentinel"] = Field(
        "standalone",
        description="How Redis is reached: the one server at REDIS_URL (standalone), a Redis "
        "Cluster (REDIS_CLUSTER_NODES, else REDIS_URL as its startup node), or the master "
        "REDIS_SENTINELS know as REDIS_SENTINEL_MASTER (sentinel).",
    )
    redis_cluster_nodes: str = Field(
        "",
        description="REDIS_MODE=cluster: startup nodes, comma-separated host:port (empty: "
        "REDIS_URL's); REDIS_URL's user and password apply to them.",
    )
    redis_sentinels: str = Field(
        "",
        validate_default=True,
        description="REDIS_MODE=sentinel: the sentinels, comma-separated host:port.",
    )
    redis_sentinel_master: str = Field(
        "",
        validate_default=True,
        description="REDIS_MODE=sentinel: the name the sentinels monitor the master under; "
        "REDIS_URL's user, password and database apply to it.",
    )
    event_buffer_bytes: int = Field(
        16 << 20,
        ge=1 << 16,
        description="Bytes of usage events a proxy holds while Redis is unreachable (or the "
        "stream is full); past it the oldest are compacted (usage kept), then dropped.",
    )
    replay_max_bytes: int = Field(
        16 << 20,
        ge=1 << 16,
        description="Bytes of published events a proxy keeps until the logger has them, to "
        "publish again if Redis restarts empty; past it the oldest are compacted, then dropped.",
    )
    stream_compact_bytes: int = Field(
        128 << 20,
        ge=1 << 16,
        description="Estimated bytes in the Redis stream past which proxies publish compacted "
        "events (prompt and response left out, usage kept) and raise the backlog alarm.",
    )
    stream_max_entries: int = Field(
        100_000,
        ge=1,
        description="Entries in the Redis stream past which proxies stop publishing and keep "
        "events in their own buffer (EVENT_BUFFER_BYTES) until the logger catches up.",
    )
    persist_confirm_timeout: float = Field(
        3.0, gt=0, description="Seconds an admin call waits for keys.json to be written."
    )
    logger_consumer: str = Field(
        "logger-1", description="Stable consumer name of this logger in the Redis group."
    )
    event_shards: int = Field(
        1,
        ge=1,
        le=1024,
        description="Event streams the proxies spread usage events over (by a hash of the "
        "request_id); shard 0 keeps events.jsonl, shard k writes events-<k>.jsonl. Every proxy "
        "and logger must have the same value.",
    )
    logger_replicas: int = Field(
        1,
        ge=1,
        description="Loggers sharing the shards: logger k owns the shards s with s % "
        "LOGGER_REPLICAS == k (at most EVENT_SHARDS); logger 0 also owns keys.json.",
    )
    logger_ordinal: int = Field(
        0,
        ge=0,
        description="This logger's k among LOGGER_REPLICAS (on Kubernetes, the StatefulSet "
        "pod's index).",
    )
    events_rotate_bytes: int = Field(
        100 << 20, ge=1 << 10, description="Rotate events.jsonl when it grows past this size."
    )
    events_retention_days: int = Field(
        90, ge=1, description="Delete rotated event files older than this many days."
    )
    recent_requests_max: int = Field(
        50_000,
        ge=0,
        description="Requests the recent-requests window in Redis keeps (the dashboard's "
        "Requests page), about 280 bytes each; 0 disables it.",
    )
    model_map: str = Field(
        "",
        description="Anthropic model names to upstream names: `pattern=target,...`, first match.",
    )
    max_tokens_cap: int | None = Field(
        None, ge=1, description="Clamp max_tokens sent upstream on the Anthropic route."
    )
    send_reasoning_effort: bool = Field(
        False,
        description="Map Anthropic thinking/effort to reasoning_effort (reasoning upstreams only).",
    )
    reasoning_content_in_history: bool = Field(
        False, description="Send thinking history back as reasoning_content (DeepSeek, Kimi)."
    )
    stream_ping_seconds: float = Field(
        10.0, gt=0, description="Anthropic streams: a ping after this much upstream silence."
    )
    max_request_bytes: int = Field(
        32 << 20, ge=1 << 10, description="Largest request body accepted (413 above)."
    )
    relay_buffer_bytes: int = Field(
        1 << 20,
        ge=1 << 12,
        description="Streams: upstream bytes a bridged relay holds for a slow client before "
        "it stops reading the upstream (backpressure).",
    )
    max_upstream_event_bytes: int = Field(
        16 << 20,
        ge=1 << 12,
        description="Largest upstream SSE event; a longer one fails the stream as an upstream "
        "failure.",
    )
    stream_record_bytes: int = Field(
        4 << 20,
        ge=64 << 10,
        description="Bytes of a relayed stream its record keeps (the first ones; the total is "
        "recorded). With FULL_TRACE_LOGGING=true, MAX_UPSTREAM_BODY_BYTES instead.",
    )
    max_upstream_body_bytes: int = Field(
        64 << 20,
        ge=1 << 12,
        description="Largest non-stream upstream reply (decoded); a larger one is a 502.",
    )
    limits_fail_open: bool = Field(
        True, description="Serve requests when Redis is unreachable for rate limits and quotas."
    )
    responses_mode: Literal["bridge", "passthrough"] = Field(
        "bridge",
        description="/v1/responses: converted to Chat Completions for the upstream (bridge), "
        "or forwarded unchanged to an upstream that has /v1/responses (passthrough).",
    )
    responses_default_max_output_tokens: int = Field(
        32_768,
        ge=0,
        description="/v1/responses: max_tokens sent upstream when the client sets no "
        "max_output_tokens (Codex never does, and a length stop ends its turn); 0 sends none.",
    )
    responses_hosted_tools: Literal["drop", "error"] = Field(
        "drop",
        description="/v1/responses: hosted tools the upstream cannot run (web_search, ...) "
        "are dropped, or refused with a 400 unsupported_tool_type.",
    )
    max_json_depth: int = Field(
        128,
        ge=8,
        le=200,
        description="Deepest nesting of arrays and objects a request body may have (400 above).",
    )
    large_block_bytes: int = Field(
        0,
        ge=0,
        le=32 << 20,
        description="Proxy, glibc only: allocations this large or larger get their own memory "
        "mapping, returned to the system when freed (65536: peak RSS ~160 instead of 230-350 "
        "MiB at real sizes, for more CPU per request); 0 keeps glibc's own threshold.",
    )
    max_json_values: int = Field(
        1_000_000,
        ge=1000,
        description="Most JSON values (strings, numbers, arrays, objects...) a request body may "
        "hold, counted before it is parsed (400 above): parsing costs memory per value.",
    )
    max_header_bytes: int = Field(
        64 << 10,
        ge=4 << 10,
        description="Largest request line plus headers `python -m proxy_service` reads (431 "
        "above, and the connection is closed).",
    )
    header_read_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection may take to send a request's headers, from its "
        "opening or from the end of the previous response (then it is closed).",
    )
    estimate_missing_usage: bool = Field(
        True,
        description="Record and charge an estimate when the upstream reports no usage "
        "(a stream cut before its usage chunk, an upstream that sends none).",
    )
    prices_file: Path | None = Field(
        None,
        description="The price table (prices.toml, USD per million tokens). Unset: every "
        "model is unpriced (costs are null, never $0).",
    )
    prices_reload_seconds: float = Field(
        5.0, gt=0, description="How often each process checks the price file for a change."
    )
    budget_warn_percent: int = Field(
        80,
        ge=1,
        le=100,
        description="Share of a money budget spent at which key views and /metrics warn.",
    )
    unpriced_models: Literal["allow", "deny"] = Field(
        "allow",
        description="A model without a price, for a key or user with a money budget: allow "
        "(served, counted as unpriced) or deny (a 403 before the upstream call).",
    )
    ui_session_idle_seconds: int = Field(
        1800, ge=60, le=86400, description="Dashboard: a session unused this long ends."
    )
    ui_session_max_seconds: int = Field(
        28800, ge=300, le=7 * 86400, description="Dashboard: a session ends this long after login."
    )
    ui_me_session_seconds: int = Field(
        3600, ge=60, le=86400, description="/me: a key holder's session ends this long after login."
    )
    ui_login_failures_per_minute: int = Field(
        5, ge=1, le=1000, description="Dashboard and /me: failed logins allowed per address."
    )

    def admin_tokens(self) -> tuple[str, ...]:
        """The admin tokens accepted now: ADMIN_TOKEN, and ADMIN_TOKEN_PREVIOUS during a
        rotation."""
        previous = self.admin_token_previous
        current = self.admin_token.get_secret_value()
        return (current,) if previous is None else (current, previous.get_secret_value())

    @field_validator("admin_token", "admin_token_previous")
    @classmethod
    def _admin_token_not_trivial(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
        return value

    @field_validator("redis_cluster_nodes", "redis_sentinels")
    @classmethod
    def _host_port_list(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if value:
            host_ports(value)
        elif info.field_name == "redis_sentinels" and info.data.get("redis_mode") == "sentinel":
            raise ValueError("is required with REDIS_MODE=sentinel")
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_named(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and info.data.get("redis_mode") == "sentinel":
            raise ValueError("is required with REDIS_MODE=sentinel")
        return value.strip()

    @field_validator("upstream_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.json"

    @property
    def events_path(self) -> Path:
        return self.event_file(0)

    def event_file(self, shard: int) -> Path:
        """Shard 0 keeps the name a single stream always had, so adding shards moves nothing."""
        return self.data_dir / ("events.jsonl" if shard == 0 else f"events-{shard}.jsonl")

    @property
    def owned_shards(self) -> list[int]:
        return [
            shard
            for shard in range(self.event_shards)
            if shard % self.logger_replicas == self.logger_ordinal
        ]

    @property
    def owns_key_file(self) -> bool:
        """One writer of keys.json, whatever the number of loggers."""
        return self.logger_ordinal == 0

    @model_validator(mode="after")
    def _loggers_fit_shards(self) -> Settings:
        if self.logger_replicas > self.event_shards:
            raise ValueError(
                f"LOGGER_REPLICAS ({self.logger_replicas}) is more than EVENT_SHARDS "
                f"({self.event_shards}): a logger would own no shard"
            )
        if self.logger_ordinal >= self.logger_replicas:
            raise ValueError(
                f"LOGGER_ORDINAL ({self.logger_ordinal}) must be below LOGGER_REPLICAS "
                f"({self.logger_replicas})"
            )
        return self


def host_ports(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (an IPv6 host in brackets) as pairs; ValueError naming a bad one."""
    pairs = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item.strip()!r} is not host:port")
        pairs.append((host.removeprefix("[").removesuffix("]"), int(port)))
    return pairs


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming each bad variable, so a misconfigured process stops readably."""
    parts = []
    for issue in error.errors():
        name = str(issue["loc"][0]).upper() if issue["loc"] else "settings"
        reason = (
            "is required"
            if issue["type"] == "missing"
            else issue["msg"].removeprefix("Value error, ")
        )
        parts.append(f"{name} {reason}")
    return "invalid configuration: " + "; ".join(parts)


@lru_cache
def get_settings() -> Settings:
    """Load settings once per process; exit with one clear line when they are invalid."""
    try:
        return Settings()
    except ValidationError as error:
        print(describe_invalid_settings(error), file=sys.stderr)
        raise SystemExit(2) from None


STAY_DOWN_VARIABLE = "B23_ON_INVALID_CONFIG"
"""`wait`: a service whose configuration is invalid says why once and waits to be stopped,
instead of exiting (Compose sets it: a container that exits is restarted every few seconds,
repeating the line, while one that waits shows unhealthy and `docker compose up` names it)."""


def service_settings() -> Settings:
    """The settings a long-running service starts with (`python -m proxy_service`,
    `python -m logger_service`): invalid ones end the process with status 2, or with
    B23_ON_INVALID_CONFIG=wait once it is told to stop."""
    try:
        return get_settings()
    except SystemExit:
        if os.environ.get(STAY_DOWN_VARIABLE) == "wait":
            print(
                f"staying down until stopped ({STAY_DOWN_VARIABLE}=wait): fix the setting "
                "in .env and recreate the container",
                file=sys.stderr,
                flush=True,
            )
            stop = {signal.SIGTERM, signal.SIGINT}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait, not handlers
            signal.sigwait(stop)
        raise
