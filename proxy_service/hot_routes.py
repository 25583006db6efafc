"""The ASGI entry: the metered POST routes go straight to their endpoints.

FastAPI's middleware stack, router and dependency solving cost about a quarter of the CPU of a
proxied request (py-spy under saturation, bench/README.md). The endpoints in HOT_ROUTES take a
plain `Request` and declare no dependencies, so nothing FastAPI adds applies to them: this entry
calls them directly and renders their errors as the app's handlers would. Everything else, and
these routes' OpenAPI description, stays with the FastAPI app, which also serves the same
endpoints on its own (the app without this entry behaves the same, only slower).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from proxy_service.errors import error_response, openai_error_body
from proxy_service.routes import anthropic, embeddings, openai, responses

Endpoint = Callable[[Request], Awaitable[Response]]

HOT_ROUTES: dict[str, Endpoint] = {
    "/v1/chat/completions": openai.chat_completions,
    "/v1/messages": anthropic.messages,
    "/v1/embeddings": embeddings.embeddings,
    "/embeddings": embeddings.embeddings,
    "/v1/responses": responses.create_response,
    "/responses": responses.create_response,
}
"""POST routes served directly; the same endpoints are registered on the FastAPI app."""


class HotRoutes:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send)
            return
        endpoint = (
            HOT_ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # what Starlette sets: Request.app reaches the process state
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as error:
            response = error_response(error, request)
        await response(scope, receive, send)


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """No route speaks WebSocket. Codex tries one first on some providers and falls back to
    POST on a 426, so that is the answer (through the ASGI WebSocket denial response where the
    server has it; else a close before accepting, which servers send as a 403)."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = openai_error_body(426, "this gateway serves HTTP only: POST the request", "upgrade")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "websocket.http.response.start", "status": 426, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
