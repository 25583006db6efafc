"""The operator's pages under /ui: thin handlers over proxy_service/key_admin.py (the same
operations as the /admin API), the usage report of GET /admin/usage, and the dashboard's reads.
Every POST passes the session, same-origin and CSRF checks (access.posted_form), then redirects
(post/redirect/get), but for a new secret, which is shown once on the answer itself."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from proxy_service import key_admin
from proxy_service.errors import ProxyError
from proxy_service.key_admin import CreateKey, KeyChange, PatchKey, RotateKey
from proxy_service.routes.usage import usage_report
from proxy_service.state import ProxyState
from proxy_service.ui import overview
from proxy_service.ui.access import AdminPage, posted_form
from proxy_service.ui.reads import key_usage, limits_of, pipeline_health, usage_cells
from proxy_service.ui.recent import RECENT_FILTERS, recent_rows
from proxy_service.ui.render import page
from proxy_service.ui.views import (
    KEY_STATUSES,
    TOKEN_COLUMNS,
    form_of,
    key_status,
    matches,
    near_limits,
    setting_fields,
    validation_message,
)
from shared.keys import utc_now
from shared.usage import COUNTERS
from shared.usage_query import GROUPINGS, build_query
from shared.usage_split import CATEGORIES

router = APIRouter()
USAGE_PARAMS = ("since", "until", "group_by", "user_id", "key_id", "model", "client_app")
PRICE_COLUMNS = (
    ("input", "input"),
    ("cache_read", "cache read"),
    ("cache_write_5m", "cache write 5m"),
    ("cache_write_1h", "cache write 1h"),
    ("output", "output"),
)
KEY_PAGE_REQUESTS = 20
TOP_BY = ("key", "user", "model")


async def _keys_with_limits(state: ProxyState) -> list[dict[str, Any]]:
    """Every key's view, with its token limits' use and its status."""
    views = await key_admin.key_views(state)
    records = {r.key_id: r for r in state.keys.records() if not r.superseded}
    limits = await limits_of(state.redis, list(records.values()), utc_now())
    for view in views:
        view["limits"] = limits.get(view["key_id"], {})
        view["status"] = key_status(view)
    return views


@router.get("/")
async def home(request: Request, signed: AdminPage) -> Response:
    state, now = signed.state, utc_now()
    since = overview.month_start(now)
    shards = state.settings.event_shards
    cells = await usage_cells(state.redis, since, now, shards=shards)
    by = {
        by: await usage_cells(state.redis, since, now, None, by, shards)
        for by in ("key", "user", "model")
    }
    daily = overview.daily(cells, now, since)
    warn = state.settings.budget_warn_percent
    near = [
        row
        for view in await _keys_with_limits(state)
        for row in near_limits(view, view["limits"], warn)
    ]
    return page(
        request,
        "overview.html",
        session=signed.session,
        windows=overview.cards(cells, now),
        daily=daily,
        tokens_chart=overview.chart(daily, overview.CHART_TOKENS),
        spend_chart=overview.spend_chart(daily),
        token_columns=TOKEN_COLUMNS,
        near=sorted(near, key=lambda row: -row["percent"]),
        warn_percent=warn,
        unpriced=overview.unpriced_models(by["model"], now, since),
        top_keys=overview.top(by["key"], now, since, "key"),
        top_users=overview.top(by["user"], now, since, "user"),
        top_models=overview.top(by["model"], now, since, "model"),
        health=await pipeline_health(state.redis, shards),
    )


@router.get("/keys")
async def keys_page(
    request: Request,
    signed: AdminPage,
    q: str = "",
    status: str = "",
    done: str = "",
    pending: str = "",
) -> Response:
    return await _keys_page(request, signed, q=q, status=status, notice=notice_of(done, pending))


async def _keys_page(
    request: Request,
    signed: AdminPage,
    *,
    q: str = "",
    status: str = "",
    notice: str = "",
    error: str | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
) -> Response:
    views = await _keys_with_limits(signed.state)
    warn = signed.state.settings.budget_warn_percent
    status = status if status in KEY_STATUSES else ""
    shown = [
        v
        for v in views
        if matches(v, q[:200])
        and (
            not status
            or (near_limits(v, v["limits"], warn) if status == "near" else v["status"] == status)
        )
    ]
    return page(
        request,
        "keys.html",
        status=code,
        session=signed.session,
        keys=shown,
        total=len(views),
        q=q[:200],
        status_filter=status,
        notice=notice,
        error=error,
        form=form or {},
        editing=False,
    )


NOTICES = {
    "saved": "Saved",
    "activated": "Activated",
    "deactivated": "Deactivated: refused on every replica within a second",
    "deleted": "Key deleted",
}
"""What a redirect's `done` code says: codes, not text, so a link cannot put words on a page."""


def _notice(persisted: bool, done: str) -> str:
    if persisted:
        return f"{done}."
    return f"{done}: in force on every replica; keys.json not yet confirmed (the logger writes it)."


def notice_of(done: str, pending: str) -> str:
    """The notice of a redirect's `done` and `pending` parameters; none for unknown codes."""
    return _notice(pending != "1", NOTICES[done]) if done in NOTICES else ""


def _done(location: str, done: str, persisted: bool) -> RedirectResponse:
    return RedirectResponse(
        f"{location}?done={done}&pending={0 if persisted else 1}", status_code=303
    )


async def _persisted(state: ProxyState, change: KeyChange) -> bool:
    return await state.key_writer.wait_persisted(
        change.version, state.settings.persist_confirm_timeout
    )


@router.post("/keys")
async def create_key(request: Request, signed: AdminPage) -> Response:
    form = await posted_form(request, signed)
    fields = {"user_id": form.get("user_id", "").strip(), **setting_fields(form, clear_empty=False)}
    try:
        body = CreateKey.model_validate(fields)
    except ValidationError as error:
        return await _keys_page(
            request, signed, error=validation_message(error), form=form, code=400
        )
    change = await key_admin.create_key(signed.state, body)
    persisted = await _persisted(signed.state, change)
    return _secret_page(request, signed, change, "New key", _notice(persisted, "Key created"))


def _secret_page(request: Request, signed: AdminPage, change: KeyChange, heading: str, notice: str):
    return page(
        request,
        "key_secret.html",
        session=signed.session,
        heading=heading,
        notice=notice,
        api_key=change.api_key,
        key=change.view,
    )


@router.get("/keys/{key_id}")
async def key_page(
    request: Request, key_id: str, signed: AdminPage, done: str = "", pending: str = ""
) -> Response:
    return await _key_page(request, signed, key_id, notice=notice_of(done, pending))


async def _key_page(
    request: Request,
    signed: AdminPage,
    key_id: str,
    *,
    notice: str = "",
    error: str | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
) -> Response:
    state, now = signed.state, utc_now()
    view = await key_admin.key_view(state, key_id)
    record = next(r for r in state.keys.records() if r.key_id == key_id and not r.superseded)
    limits = (await limits_of(state.redis, [record], now)).get(key_id, {})
    return page(
        request,
        "key.html",
        status=code,
        session=signed.session,
        key=view,
        status_text=key_status(view),
        limits=limits,
        **await key_usage(state.redis, key_id, now, KEY_PAGE_REQUESTS, state.settings.event_shards),
        notice=notice,
        error=error,
        form=form or form_of(view),
    )


def _key_location(key_id: str) -> str:
    return f"/ui/keys/{quote(key_id, safe='')}"


@router.post("/keys/{key_id}/edit")
async def edit_key(request: Request, key_id: str, signed: AdminPage) -> Response:
    form = await posted_form(request, signed)
    try:
        body = PatchKey.model_validate(setting_fields(form, clear_empty=True))
    except ValidationError as error:
        return await _key_page(
            request, signed, key_id, error=validation_message(error), form=form, code=400
        )
    change = await key_admin.patch_key(signed.state, key_id, body)
    return _done(_key_location(key_id), "saved", await _persisted(signed.state, change))


async def _set_active(request: Request, key_id: str, signed: AdminPage, active: bool) -> Response:
    await posted_form(request, signed)
    change = await key_admin.patch_key(signed.state, key_id, PatchKey(active=active))
    done = "activated" if active else "deactivated"
    return _done(_key_location(key_id), done, await _persisted(signed.state, change))


@router.post("/keys/{key_id}/deactivate")
async def deactivate_key(request: Request, key_id: str, signed: AdminPage) -> Response:
    return await _set_active(request, key_id, signed, False)


@router.post("/keys/{key_id}/activate")
async def activate_key(request: Request, key_id: str, signed: AdminPage) -> Response:
    return await _set_active(request, key_id, signed, True)


@router.post("/keys/{key_id}/rotate")
async def rotate_key(request: Request, key_id: str, signed: AdminPage) -> Response:
    form = await posted_form(request, signed)
    try:
        body = RotateKey.model_validate({"grace_seconds": form.get("grace_seconds") or 0})
    except ValidationError as error:
        return await _key_page(request, signed, key_id, error=validation_message(error), code=400)
    change = await key_admin.rotate_key(signed.state, key_id, body)
    persisted = await _persisted(signed.state, change)
    return _secret_page(
        request, signed, change, "Rotated: new secret", _notice(persisted, "Rotated")
    )


@router.get("/keys/{key_id}/delete")
async def confirm_delete(request: Request, key_id: str, signed: AdminPage) -> Response:
    view = await key_admin.key_view(signed.state, key_id)
    return page(request, "key_delete.html", session=signed.session, key=view)


@router.post("/keys/{key_id}/delete")
async def delete_key(request: Request, key_id: str, signed: AdminPage) -> Response:
    await posted_form(request, signed)
    change = await key_admin.delete_key(signed.state, key_id)
    return _done("/ui/keys", "deleted", await _persisted(signed.state, change))


def _usage_params(request: Request) -> dict[str, str | None]:
    params = request.query_params
    return {name: (params.get(name) or None) for name in USAGE_PARAMS}


async def _usage(signed: AdminPage, params: dict[str, str | None]) -> dict[str, Any]:
    """The /admin/usage answer to these parameters; ProxyError (400) for bad ones."""
    filters = {name: params[name] for name in ("user_id", "key_id", "model", "client_app")}
    try:
        query = build_query(
            since=params["since"],
            until=params["until"],
            group_by=params["group_by"],
            filters=filters,
            now_ms=int(utc_now().timestamp() * 1000),
        )
    except ValueError as error:
        raise ProxyError(str(error), status=400) from None
    return await usage_report(signed.state.redis, query, signed.state.settings.event_shards)


@router.get("/usage")
async def usage_page(request: Request, signed: AdminPage) -> Response:
    params = _usage_params(request)
    try:
        report = await _usage(signed, params)
    except ProxyError as error:
        return page(
            request,
            "usage.html",
            status=400,
            session=signed.session,
            params=params,
            error=error.message,
        )
    names = [GROUPINGS[by] for by in report["group_by"].split(",")]
    daily_chart, daily, columns = None, [], TOKEN_COLUMNS
    title = "Tokens per day"
    others = [name for name in names if name != "day"]
    if names == ["day"]:
        daily = [{"day": g["key"]["day"], **g} for g in report["groups"]]
        daily_chart = overview.chart(daily, overview.CHART_TOKENS)
    elif "day" in names and len(others) == 1:
        daily, columns, daily_chart = overview.stacked_by(report["groups"], others[0])
        title = f"Tokens per day by {others[0]}"
    return page(
        request,
        "usage.html",
        session=signed.session,
        params=params,
        error=None,
        report=report,
        names=names,
        chart_data=daily_chart,
        daily=daily,
        token_columns=columns,
        chart_title=title,
        query_string=f"?{request.url.query}" if request.url.query else "",
    )


CSV_COUNTERS = tuple("cost_usd" if name == "cost_nano" else name for name in COUNTERS)
"""The summary's counters, spend in USD as /admin/usage gives it."""


@router.get("/usage.json")
async def usage_json(request: Request, signed: AdminPage) -> Response:
    report = await _usage(signed, _usage_params(request))
    return JSONResponse(
        report, headers={"content-disposition": 'attachment; filename="usage.json"'}
    )


@router.get("/usage.csv")
async def usage_csv(request: Request, signed: AdminPage) -> Response:
    """The groups of the same report, one row each: its key's parts, then the counters."""
    report = await _usage(signed, _usage_params(request))
    names = [GROUPINGS[by] for by in report["group_by"].split(",")]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*names, *CSV_COUNTERS, "latency_p50_ms", "latency_p90_ms", "latency_p99_ms"])
    for group in report["groups"]:
        latency = group["latency_ms"]
        writer.writerow(
            [
                *(_csv_cell(group["key"][name]) for name in names),
                *(group[name] for name in CSV_COUNTERS),
                *(latency[p] for p in ("p50", "p90", "p99")),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="usage.csv"'},
    )


def _csv_cell(value: str | None) -> str:
    """A group key's part for a spreadsheet: a leading =, +, - or @ is quoted with ' so it is
    not run as a formula (a model name is whatever a client sent)."""
    if value is None:
        return ""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.get("/requests")
async def requests_page(request: Request, signed: AdminPage) -> Response:
    params = request.query_params
    filters = {name: params[name][:256] for name in RECENT_FILTERS if params.get(name)}
    try:
        found = await recent_rows(
            signed.state.redis,
            filters,
            before=params.get("before"),
            shards=signed.state.settings.event_shards,
        )
    except ValueError as error:
        return page(
            request,
            "requests.html",
            status=400,
            session=signed.session,
            filters=filters,
            rows=[],
            scanned=0,
            older=None,
            error=str(error),
            window=signed.state.settings.recent_requests_max,
        )
    return page(
        request,
        "requests.html",
        session=signed.session,
        filters=filters,
        rows=found.rows,
        scanned=found.scanned,
        older=found.older_query(filters),
        error=None,
        window=signed.state.settings.recent_requests_max,
    )


@router.get("/models")
async def models_page(request: Request, signed: AdminPage) -> Response:
    state, now = signed.state, utc_now()
    prices = state.prices
    table = prices.table
    models = []
    if table is not None:
        entries: dict[str, dict[str, Any]] = {}
        for alias, price in [*table.names.items(), *table.patterns]:
            entry = entries.setdefault(
                price.name,
                {
                    "name": price.name,
                    "free": price.free,
                    "aliases": [],
                    "rates": {c: str(price.rates.get(c, "")) for c in CATEGORIES},
                    "tiers": [
                        {"threshold": t, "rates": {c: str(r.get(c, "")) for c in CATEGORIES}}
                        for t, r in price.tiers
                    ],
                },
            )
            if alias != price.name.lower():
                entry["aliases"].append(alias)
        models = sorted(entries.values(), key=lambda m: m["name"])
    since = overview.month_start(now)
    by_model = await usage_cells(
        state.redis, since, now, None, "model", state.settings.event_shards
    )
    unpriced = overview.unpriced_models(by_model, now, since)
    for group in unpriced:
        if group["key"]["model"] is not None:
            group["stub"] = overview.price_stub(group["key"]["model"])
    checked = (
        datetime.fromtimestamp(prices.checked_at, UTC).isoformat(timespec="seconds")
        if prices.checked_at
        else None
    )
    return page(
        request,
        "models.html",
        session=signed.session,
        path_shown=str(prices.path) if prices.path else None,
        table_version=table.version if table else None,
        checked=checked,
        error=prices.error,
        models=models,
        categories=PRICE_COLUMNS,
        unpriced=unpriced,
    )
