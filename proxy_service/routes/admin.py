"""Key administration under x-admin-token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from proxy_service.deps import AdminState
from proxy_service.keywriter import wait_persisted, write_key
from shared.keys import KeyRecord, hash_api_key

router = APIRouter(prefix="/admin", tags=["admin"])


class UpsertKey(BaseModel):
    """The original README's body; any extra field is kept on the key record."""

    model_config = ConfigDict(extra="allow")

    api_key: str = Field(min_length=8, max_length=512)
    user_id: str = Field(min_length=1, max_length=256)
    active: bool = True


def public_view(record: KeyRecord) -> dict[str, Any]:
    """A record as admin answers show it: never the key or its full hash."""
    return {"key_id": record.key_id, **record.model_dump(exclude={"key_hash"})}


@router.post("/keys/upsert")
async def upsert_key(body: UpsertKey, state: AdminState) -> JSONResponse:
    """Add or update a key: 200 once in force and in keys.json, 202 if the file lags."""
    extra = body.model_dump(exclude={"api_key", "user_id", "active"})
    record = KeyRecord(
        key_hash=hash_api_key(body.api_key), user_id=body.user_id, active=body.active, **extra
    )
    version = await write_key(state.redis, state.keys, record)
    persisted = await wait_persisted(state.redis, version, state.settings.persist_confirm_timeout)
    answer = {"ok": True, "persisted": persisted, "key": public_view(record)}
    if persisted:
        return JSONResponse(answer)
    answer["message"] = (
        "key is in force on every replica, but keys.json was not confirmed within "
        f"{state.settings.persist_confirm_timeout:g}s; the logger writes it when it runs"
    )
    return JSONResponse(answer, status_code=202)
