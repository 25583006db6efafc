"""The one module that talks HTTP to the upstream.

One `httpx.AsyncClient` per process, on the aiohttp transport (`httpx-aiohttp`): plain httpx
spends about 1 ms of CPU per request, the aiohttp transport about a third of that (see
bench/README.md). Requests are httpx `Request` objects built from a URL parsed once and sent
through the client's transport (httpx's `AsyncBaseTransport` interface): the client's per-request
cookie jar, auth and redirect handling cost about a fifth of the proxy's CPU, and a gateway must
not apply them anyway. Replies are read from the transport's raw byte stream; we ask for no
content encoding, and one sent anyway is decoded here (reply_encodings.py). The transport's
aiohttp session is ours, with no cookie jar: an upstream's cookie would otherwise follow one
user's request into the next user's. Transport errors are translated here into
`UpstreamFailure`, so routes never see httpx or aiohttp exceptions.

Replies of shapes the protocols do not allow never reach a route: a 101 or a 3xx (never
followed), an event stream to a non-stream request or JSON to a stream request, a non-stream body
over MAX_UPSTREAM_BODY_BYTES; each is an `UpstreamFailure` (502) that names what came, and the
connection it came on is closed, not reused.

Every byte that comes back is redacted of the credential the request was sent with (the
proxy's UPSTREAM_API_KEY, or the client's own key when none is set): upstreams quote it in error
bodies of any status, and those bodies go to clients and into the records.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import anyio
import httpx
from httpx_aiohttp import AiohttpTransport

from proxy_service.errors import UpstreamFailure
from proxy_service.reply_encodings import ReplyDecoder, known_encoding, reply_decoder
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 1 << 20
REDACTED = b"[redacted credential]"
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 5.0
CHAT_COMPLETIONS = "chat/completions"
EMBEDDINGS = "embeddings"
MODELS = "models"
RESPONSES = "responses"
RESPONSES_COMPACT = "responses/compact"
ENDPOINTS = (CHAT_COMPLETIONS, EMBEDDINGS, MODELS, RESPONSES, RESPONSES_COMPACT)
"""Paths under UPSTREAM_BASE_URL the proxy calls; nothing a client sends picks another but a
stored response's id (RESPONSES_MODE=passthrough), checked against STORED_RESPONSE_PATH."""
STORED_RESPONSE_PATH = re.compile(r"responses/[A-Za-z0-9_-]{1,200}(/input_items|/cancel)?")
LIST_READ_TIMEOUT = 10.0
"""Seconds a GET (the model list) may wait for its answer: a listing must not hang for
UPSTREAM_READ_TIMEOUT (600 s) when the upstream is stuck."""


def describe_transport_error(error: BaseException) -> UpstreamFailure:
    """Map an httpx/aiohttp error to 504 (the upstream went silent after the connection was
    made) or 502 (anything else, a connect timeout included: the upstream was never reached)."""
    cause = error.__cause__ or error
    if isinstance(cause, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return UpstreamFailure("upstream unreachable (connect timed out)")  # 502, as the table says
    if isinstance(cause, (TimeoutError, aiohttp.ServerTimeoutError, httpx.TimeoutException)):
        return UpstreamFailure("upstream timed out", status=504)
    if isinstance(cause, aiohttp.ClientConnectorError | httpx.ConnectError):
        return UpstreamFailure("upstream unreachable")
    return UpstreamFailure("upstream connection failed")


def redact(data: bytes, secret: bytes) -> bytes:
    """`data` without any whole occurrence of `secret` (a C-level search when there is none)."""
    return data.replace(secret, REDACTED) if secret and secret in data else data


def redacted_header(value: str | None, secret: bytes) -> str | None:
    if value is None:
        return None
    return redact(value.encode("latin-1", "replace"), secret).decode("latin-1")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def refused_shape(response: httpx.Response, stream: bool) -> str | None:
    """Why a reply cannot be given to a client of the protocol, or None if it can: a 1xx or a
    3xx (not followed: the proxy sends the request it was given, to the upstream configured,
    and the Location is not passed on), a content coding we cannot undo, a stream where none
    was asked for, JSON where a stream was (errors, 4xx and 5xx, are read whatever their
    type)."""
    status, headers = response.status_code, response.headers
    if status < 200 or 300 <= status < 400:
        return f"upstream answered HTTP {status}, which this API does not allow"
    if not known_encoding(headers.get("content-encoding")):
        return f"upstream reply has content-encoding {headers['content-encoding'][:40]!r}"
    if status >= 400:
        return None
    content_type = headers.get("content-type")
    if not stream and media_type(content_type) == "text/event-stream":
        return "upstream answered a non-stream request with an event stream"
    if stream and is_json(content_type):
        return "upstream answered a stream request with JSON, not an event stream"
    return None


async def decoded_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The reply's bytes with any content coding undone (raises UpstreamFailure)."""
    decoder: ReplyDecoder | None = reply_decoder(response.headers.get("content-encoding"))
    async for chunk in response.stream:
        if decoder is None:
            yield chunk
        else:
            for piece in decoder.decode(chunk):
                yield piece
    if decoder is not None:
        decoder.finish()


async def refuse(response: httpx.Response, why: str) -> UpstreamFailure:
    """Close a reply the client cannot be given, and its connection (never pooled: whatever
    follows on it is suspect), and say why."""
    aiohttp_response = getattr(response.stream, "_aiohttp_response", None)  # httpx-aiohttp's
    if isinstance(aiohttp_response, aiohttp.ClientResponse):
        aiohttp_response.close()
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await response.aclose()
    log.warning("refused an upstream reply: %s", why)
    return UpstreamFailure(why)


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as error:
        raise describe_transport_error(error) from error


@dataclass(slots=True)
class UpstreamReply:
    status: int
    content_type: str
    body: bytes
    request_id: str | None
    headers: httpx.Headers
    waited: float
    """Seconds spent waiting for the upstream (request sent to body read)."""


class UpstreamStream:
    """An open streamed reply; iterate `chunks()`, and always `aclose()` (the caller's finally)."""

    def __init__(self, response: httpx.Response, waited: float, secret: bytes) -> None:
        self._response = response
        self._secret = secret
        self.waited = waited
        """Seconds from sending the request to the response headers."""
        self.status = response.status_code
        content_type = response.headers.get("content-type", "application/octet-stream")
        self.content_type = redacted_header(content_type, secret) or ""
        self.request_id = redacted_header(response.headers.get("x-request-id"), secret)
        self.headers = response.headers

    def redact(self, data: bytes) -> bytes:
        """Whole events on their way to the client, without the credential (chunks as read
        may split it)."""
        return redact(data, self._secret)

    async def chunks(self) -> AsyncIterator[bytes]:
        with translated_errors():
            async for chunk in decoded_chunks(self._response):
                yield chunk

    async def read_error_body(self) -> bytes:
        """The body of a non-2xx streamed reply, capped so a huge error page cannot hurt us;
        the stream is closed afterwards."""
        parts, size = [], 0
        try:
            async for chunk in self.chunks():
                parts.append(chunk)
                size += len(chunk)
                if size >= MAX_ERROR_BODY_BYTES:
                    break
        finally:
            await self.aclose()
        return self.redact(b"".join(parts)[:MAX_ERROR_BODY_BYTES])

    async def aclose(self) -> None:
        """Close even inside a cancelled scope (client disconnect), so the connection is freed."""
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._response.aclose()


class Upstream:
    """POSTs bodies to `{UPSTREAM_BASE_URL}/{endpoint}` (chat/completions, embeddings) and GETs
    the model list, each endpoint's URL parsed once."""

    def __init__(self, settings: Settings) -> None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=httpx.create_ssl_context(trust_env=False),
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        self._transport = AiohttpTransport(client=session)
        self._client = httpx.AsyncClient(transport=self._transport, trust_env=False)
        """The process's one client: it owns the transport and closes it."""
        self._urls = {
            endpoint: httpx.URL(f"{settings.upstream_base_url}/{endpoint}")
            for endpoint in ENDPOINTS
        }
        self._api_key = (
            settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
        )
        self._max_body_bytes = settings.max_upstream_body_bytes
        self._timeouts = {
            "connect": settings.upstream_connect_timeout,
            "read": settings.upstream_read_timeout,
            "write": settings.upstream_read_timeout,
            "pool": settings.upstream_connect_timeout,
        }
        self._list_timeouts = {
            **self._timeouts,
            "read": min(settings.upstream_read_timeout, LIST_READ_TIMEOUT),
        }
        host = self._urls[CHAT_COMPLETIONS].netloc
        self._get_headers = [(b"host", host), (b"accept-encoding", b"identity")]
        self._post_headers = [*self._get_headers, (b"content-type", b"application/json")]

    def credential(self, client_key: str) -> bytes:
        """What the upstream request authenticates with: UPSTREAM_API_KEY, else the client's."""
        return (self._api_key or client_key).encode()

    def _request(
        self, endpoint: str, client_key: str, body: bytes | None, method: str | None = None
    ) -> httpx.Request:
        """A POST of `body`, or a GET when there is none (a list: a short read timeout). Fixed
        headers only: nothing the client sends is forwarded but its body (and its key when no
        UPSTREAM_API_KEY is set), so a client cannot steer the upstream request."""
        if body is None:
            fixed, timeouts = self._get_headers, self._list_timeouts
        else:
            fixed, timeouts = self._post_headers, self._timeouts
        headers = [*fixed, (b"authorization", b"Bearer " + self.credential(client_key))]
        return httpx.Request(
            method or ("GET" if body is None else "POST"),
            self._url(endpoint),
            headers=headers,
            content=body,
            extensions={"timeout": timeouts},
        )

    def _url(self, endpoint: str) -> httpx.URL:
        """A fixed endpoint's parsed URL, or a stored response's (id checked, query dropped)."""
        if (url := self._urls.get(endpoint)) is not None:
            return url
        if not STORED_RESPONSE_PATH.fullmatch(endpoint):
            raise ValueError(f"not an upstream endpoint: {endpoint[:80]!r}")
        return self._urls[RESPONSES].join(endpoint)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _check_credentials(self, status: int) -> None:
        """A 401/403 to the proxy's own UPSTREAM_API_KEY is the operator's problem: answer 502
        and never pass on the upstream's text, which may quote that key."""
        if self._api_key and status in (401, 403):
            log.error("the upstream refused UPSTREAM_API_KEY (HTTP %d)", status)
            raise UpstreamFailure("the upstream rejected the proxy's credentials")

    async def post(
        self, body: bytes, client_key: str, endpoint: str = CHAT_COMPLETIONS
    ) -> UpstreamReply:
        return await self._send(self._request(endpoint, client_key, body), client_key)

    async def get(self, endpoint: str, client_key: str) -> UpstreamReply:
        return await self._send(self._request(endpoint, client_key, None), client_key)

    async def forward(
        self, method: str, endpoint: str, query: bytes, client_key: str
    ) -> UpstreamReply:
        """A bodiless call on a stored response (retrieve, input_items, cancel, delete), its
        query string kept (pagination, `include`)."""
        request = self._request(endpoint, client_key, None, method)
        request.url = request.url.copy_with(query=query or None)
        return await self._send(request, client_key)

    async def _send(self, request: httpx.Request, client_key: str) -> UpstreamReply:
        """The whole reply, decoded, bounded and redacted."""
        started = time.perf_counter()
        with translated_errors():
            response = await self._transport.handle_async_request(request)
            if why := refused_shape(response, stream=False):
                raise await refuse(response, why)
            try:
                content = await self._bounded_body(response)
            finally:
                await response.aclose()
        self._check_credentials(response.status_code)
        secret = self.credential(client_key)
        content_type = response.headers.get("content-type", "application/json")
        return UpstreamReply(
            status=response.status_code,
            content_type=redacted_header(content_type, secret) or "",
            body=redact(content, secret),
            request_id=redacted_header(response.headers.get("x-request-id"), secret),
            headers=response.headers,
            waited=time.perf_counter() - started,
        )

    async def _bounded_body(self, response: httpx.Response) -> bytes:
        """The body, or a 502 once it passes MAX_UPSTREAM_BODY_BYTES (decoded): the rest is
        never read, and the connection is closed."""
        parts, size = [], 0
        async for chunk in decoded_chunks(response):
            parts.append(chunk)
            size += len(chunk)
            if size > self._max_body_bytes:
                raise await refuse(
                    response, f"upstream reply over {self._max_body_bytes} bytes (non-stream)"
                )
        return b"".join(parts)

    async def open_stream(
        self, body: bytes, client_key: str, endpoint: str = CHAT_COMPLETIONS
    ) -> UpstreamStream:
        started = time.perf_counter()
        request = self._request(endpoint, client_key, body)
        with translated_errors():
            response = await self._transport.handle_async_request(request)
            if why := refused_shape(response, stream=True):
                raise await refuse(response, why)
        stream = UpstreamStream(
            response, time.perf_counter() - started, self.credential(client_key)
        )
        if self._api_key and response.status_code in (401, 403):
            await stream.aclose()
            self._check_credentials(response.status_code)
        return stream
