"""Jinja2 rendering of the dashboard's pages, autoescaped everywhere: every string a client
or an operator typed (a model name, a user id, an upstream's error text) is text, never markup.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from shared.version import version


def _json_attribute(value: Any) -> Markup:
    """JSON for a data-* attribute, escaped for HTML (the pages' scripts parse it)."""
    text = orjson.dumps(value).decode()
    return Markup.escape(text)


def _number(value: Any) -> str:
    """Thousands separated, as an operator reads token counts."""
    return f"{value:,}" if isinstance(value, int) else "" if value is None else str(value)


environment = Environment(
    loader=PackageLoader("proxy_service.ui", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["json_attribute"] = _json_attribute
environment.filters["number"] = _number
environment.globals["version"] = version()


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A full page; `context` may hold `session` (its CSRF token goes into every form)."""
    session = context.pop("session", None)
    html = environment.get_template(template).render(
        request=request,
        path=request.url.path,
        csrf=session.csrf if session is not None else "",
        role=session.role if session is not None else None,
        **context,
    )
    return HTMLResponse(html, status_code=status)
