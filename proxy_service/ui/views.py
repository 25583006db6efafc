"""Pure shaping of what the pages show: key status, how near each limit a key is, form fields
to the /admin models' fields, and the filters a listing accepts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from proxy_service.ui.overview import CHART_TOKENS

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "daily_token_quota", "monthly_token_quota")
BUDGET_FIELDS = ("budget_usd_daily", "budget_usd_monthly")
SETTING_FIELDS = (*LIMIT_FIELDS, *BUDGET_FIELDS, "expires_at")
LABELS = {
    "rpm_limit": "requests/min",
    "tpm_limit": "tokens/min",
    "daily_token_quota": "tokens today",
    "monthly_token_quota": "tokens this month",
    "budget_usd_daily": "spend today",
    "budget_usd_monthly": "spend this month",
}
TOKEN_COLUMNS = [(name, label) for name, label in CHART_TOKENS]
KEY_STATUSES = ("active", "inactive", "expired", "near")


def key_status(view: Mapping[str, Any], now: float | None = None) -> str:
    """active, inactive (deactivated) or expired, from a key's public view."""
    if not view.get("active", True):
        return "inactive"
    expires = view.get("expires_at")
    moment = time.time() if now is None else now
    if expires and datetime.fromisoformat(expires).timestamp() <= moment:
        return "expired"
    return "active"


def usage_percents(view: Mapping[str, Any], limits: Mapping[str, Mapping[str, int]]) -> dict:
    """Limit or budget name -> percent used, of every limit and budget the key has."""
    found = {
        name: round(100 * limit["used"] / limit["limit"], 1)
        for name, limit in limits.items()
        if limit.get("limit")
    }
    found.update((name, budget["percent"]) for name, budget in view.get("budgets", {}).items())
    return found


def near_limits(
    view: Mapping[str, Any], limits: Mapping[str, Mapping[str, int]], warn_percent: int
) -> list[dict[str, Any]]:
    """The key's limits and budgets at or over `warn_percent`, fullest first."""
    rows = [
        {"key_id": view["key_id"], "user_id": view["user_id"], "label": LABELS[name], "percent": p}
        for name, p in usage_percents(view, limits).items()
        if p >= warn_percent
    ]
    return sorted(rows, key=lambda row: -row["percent"])


def matches(view: Mapping[str, Any], text: str) -> bool:
    """A case-blind search over the key's id, user, hint and free fields."""
    if not text:
        return True
    needle = text.casefold()
    haystack = orjson.dumps(
        {k: v for k, v in view.items() if k not in ("budgets", "limits")}
    ).decode()
    return needle in haystack.casefold()


def setting_fields(form: Mapping[str, str], *, clear_empty: bool) -> dict[str, Any]:
    """The limit, budget and expiry fields of a form as the /admin models take them: an empty
    field is absent (create) or null (edit: it clears the limit)."""
    fields: dict[str, Any] = {}
    for name in SETTING_FIELDS:
        if name not in form:
            continue
        text = form[name].strip()
        if not text:
            if clear_empty:
                fields[name] = None
            continue
        fields[name] = text.replace(",", "").replace("_", "") if name in LIMIT_FIELDS else text
    return fields


def form_of(view: Mapping[str, Any]) -> dict[str, str]:
    """A key's current settings as the edit form's values."""
    return {name: "" if view.get(name) is None else str(view[name]) for name in SETTING_FIELDS}


def validation_message(error: ValidationError) -> str:
    """What is wrong with a form, field by field, in words."""
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'form'}: {issue['msg']}"
        for issue in error.errors()
    )
