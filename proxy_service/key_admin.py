"""Key lifecycle operations, shared by the /admin JSON API and the /ui dashboard, so neither
can do what the other cannot: the request models that validate a change, and the changes
themselves, each returning the KEYS_VERSION that persists it and the key's public view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy_service.allowances import owner_budget_views
from proxy_service.errors import ProxyError
from proxy_service.keywriter import KeyWriter
from proxy_service.limits import Scope
from proxy_service.state import ProxyState
from shared.budgets import BudgetUsd
from shared.keys import (
    MAX_LIMIT,
    KeyRecord,
    SendableKey,
    hash_api_key,
    json_time,
    key_hint,
    new_api_key,
    new_key_id,
    utc_now,
)

MAX_GRACE_SECONDS = 30 * 24 * 3600
MAX_FREE_FIELD_BYTES = 8192
MANAGED_FIELDS = frozenset(
    {"api_key_sha256", "key_hash", "key_id", "key_hint", "created_at", "superseded"}
)
"""Set by the proxy alone: as extra fields they would clash with, or forge, the record's own."""


class KeySettings(BaseModel):
    """What an operator may set on a key; absent limits and budgets mean unlimited."""

    active: bool = True
    expires_at: datetime | None = None
    rpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    daily_token_quota: int | None = Field(None, ge=1, le=MAX_LIMIT)
    monthly_token_quota: int | None = Field(None, ge=1, le=MAX_LIMIT)
    budget_usd_daily: BudgetUsd | None = None
    budget_usd_monthly: BudgetUsd | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _free_fields_storable(self) -> KeySettings:
        """metadata and extra fields are kept on the key record: plain, small JSON only, and
        none of the fields the proxy manages."""
        managed = sorted(MANAGED_FIELDS & (self.model_extra or {}).keys())
        if managed:
            raise ValueError(f"{', '.join(managed)}: set by the proxy, not by a request")
        try:
            size = len(orjson.dumps([self.metadata, self.model_extra]))
        except TypeError as error:
            raise ValueError(f"metadata and extra fields must be plain JSON ({error})") from None
        if size > MAX_FREE_FIELD_BYTES:
            raise ValueError(
                f"metadata and extra fields take {size} bytes, over {MAX_FREE_FIELD_BYTES}"
            )
        return self


class UpsertKey(KeySettings):
    """The original README's body; any extra field is kept on the key record."""

    model_config = ConfigDict(extra="allow")

    api_key: SendableKey = Field(min_length=8, max_length=512)
    user_id: str = Field(min_length=1, max_length=256)


class CreateKey(KeySettings):
    model_config = ConfigDict(extra="allow")

    user_id: str = Field(min_length=1, max_length=256)


class PatchKey(KeySettings):
    """Only the fields sent change; null clears a limit or the expiry."""

    model_config = ConfigDict(extra="forbid")

    active: bool | None = None  # type: ignore[assignment]


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(0, ge=0, le=MAX_GRACE_SECONDS)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A change in force: `version` is persisted once keys.json holds it; `api_key` is the new
    secret of a create or rotate, to be shown once and never again."""

    version: int
    view: dict[str, Any]
    api_key: str | None = None


def public_view(record: KeyRecord, grace: KeyRecord | None = None) -> dict[str, Any]:
    """A key as admin answers show it: never the key or its hash."""
    view = record.model_dump(mode="json", exclude={"key_hash", "superseded"})
    if grace is not None and grace.expires_at is not None:
        view["previous_key_valid_until"] = json_time(grace.expires_at)
    return view


async def current_records(writer: KeyWriter, key_id: str) -> tuple[KeyRecord, KeyRecord | None]:
    """(current record, old secret in its grace period or None); 404 for an unknown id."""
    records = await writer.records_of(key_id)
    current = next((r for r in records if not r.superseded), None)
    if current is None:
        raise ProxyError(f"no key with key_id {key_id}", status=404)
    grace = next((r for r in records if r.superseded), None)
    return current, grace


async def budgets_shown(state: ProxyState, scope: Scope, owners: list[tuple[str, Any]]) -> dict:
    """id -> each budget's spent, remaining, percent and warning, for (id, record) pairs."""
    warn = state.settings.budget_warn_percent
    return await owner_budget_views(state.redis, scope, owners, warn, utc_now())


async def upsert_key(state: ProxyState, body: UpsertKey) -> KeyChange:
    """Add or update a key given in clear, as in the original README."""
    key_hash = hash_api_key(body.api_key)
    existing = state.keys.lookup(key_hash)
    fields = body.model_dump(exclude={"api_key"}, exclude_none=True)
    record = KeyRecord(
        key_hash=key_hash,
        key_id=existing.key_id if existing else "",
        key_hint=key_hint(body.api_key),
        created_at=existing.created_at if existing and existing.created_at else utc_now(),
        **fields,
    )
    version = await state.key_writer.change(put=[record])
    return KeyChange(version, public_view(record))


async def create_key(state: ProxyState, body: CreateKey) -> KeyChange:
    """Generate a key; the full key is in the change and nowhere else, ever."""
    api_key = new_api_key()
    record = KeyRecord(
        key_hash=hash_api_key(api_key),
        key_id=new_key_id(),
        key_hint=key_hint(api_key),
        created_at=utc_now(),
        **body.model_dump(exclude_none=True),
    )
    version = await state.key_writer.change(put=[record])
    return KeyChange(version, public_view(record), api_key)


async def key_views(state: ProxyState) -> list[dict[str, Any]]:
    """Every current key with its budgets, by user then key id."""
    records = await state.key_writer.all_records()
    graces = {r.key_id: r for r in records if r.superseded}
    current = [r for r in records if not r.superseded]
    budgets = await budgets_shown(state, "key", [(r.key_id, r) for r in current])
    views = [
        {**public_view(r, graces.get(r.key_id)), "budgets": budgets[r.key_id]} for r in current
    ]
    return sorted(views, key=lambda view: (view["user_id"], view["key_id"]))


async def key_view(state: ProxyState, key_id: str) -> dict[str, Any]:
    current, grace = await current_records(state.key_writer, key_id)
    budgets = await budgets_shown(state, "key", [(key_id, current)])
    return {**public_view(current, grace), "budgets": budgets[key_id]}


async def patch_key(state: ProxyState, key_id: str, body: PatchKey) -> KeyChange:
    """Change the sent fields; `active` also applies to an old secret still in its grace."""
    current, grace = await current_records(state.key_writer, key_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if changes.get("active") is None:
        changes.pop("active", None)
    updated = [KeyRecord(**{**current.model_dump(), **changes})]
    if grace is not None:
        grace_changes = {k: v for k, v in changes.items() if k != "expires_at"}
        updated.append(KeyRecord(**{**grace.model_dump(), **grace_changes}))
    version = await state.key_writer.change(put=updated)
    return KeyChange(version, public_view(updated[0], grace))


async def delete_key(state: ProxyState, key_id: str) -> KeyChange:
    """Remove the key and any old secret of it; refused everywhere within the sync bound."""
    records = await state.key_writer.records_of(key_id)
    if not records:
        raise ProxyError(f"no key with key_id {key_id}", status=404)
    version = await state.key_writer.change(remove=records)
    return KeyChange(version, {"key_id": key_id})


async def rotate_key(state: ProxyState, key_id: str, body: RotateKey) -> KeyChange:
    """New secret, same key_id and settings; the old secret works for `grace_seconds` more."""
    current, previous_grace = await current_records(state.key_writer, key_id)
    api_key = new_api_key()
    fresh = KeyRecord(
        **{**current.model_dump(), "key_hash": hash_api_key(api_key), "key_hint": key_hint(api_key)}
    )
    remove = [previous_grace] if previous_grace is not None else []
    put = [fresh]
    if body.grace_seconds > 0:
        until = utc_now() + timedelta(seconds=body.grace_seconds)
        put.append(KeyRecord(**{**current.model_dump(), "superseded": True, "expires_at": until}))
    else:
        remove.append(current)
    version = await state.key_writer.change(put=put, remove=remove)
    grace = put[1] if len(put) > 1 else None
    return KeyChange(version, public_view(fresh, grace), api_key)
