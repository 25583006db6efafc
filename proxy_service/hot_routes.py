"""The ASGI entry: the two metered POST routes go straight to their endpoints.

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

from proxy_service.errors import error_response
from proxy_service.routes import anthropic, openai

Endpoint = Callable[[Request], Awaitable[Response]]

HOT_ROUTES: dict[str, Endpoint] = {
    "/v1/chat/completions": openai.chat_completions,
    "/v1/messages": anthropic.messages,
}
"""POST routes served directly; the same endpoints are registered on the FastAPI app."""


class HotRoutes:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            HOT_ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # what Starlette sets: Request.app reaches the process state
        try:
            response = await endpoint(Request(scope, receive))
        except Exception as error:
            response = error_response(error, scope["path"])
        await response(scope, receive, send)
