"""Key administration under x-admin-token: the original upsert plus a small lifecycle API, as
JSON over the operations of proxy_service/key_admin.py (which the dashboard uses too)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from proxy_service import key_admin
from proxy_service.deps import AdminState
from proxy_service.key_admin import CreateKey, KeyChange, PatchKey, RotateKey, UpsertKey
from proxy_service.state import ProxyState

router = APIRouter(prefix="/admin", tags=["admin"])


async def answer(
    state: ProxyState, version: int, body: dict[str, Any], status: int = 200
) -> JSONResponse:
    """200/201 once keys.json holds the change; 202 with a message if the file lags."""
    timeout = state.settings.persist_confirm_timeout
    persisted = await state.key_writer.wait_persisted(version, timeout)
    body = {"ok": True, "persisted": persisted, **body}
    if persisted:
        return JSONResponse(body, status_code=status)
    body["message"] = (
        f"the change is in force on every replica, but keys.json was not confirmed within "
        f"{timeout:g}s; the logger writes it when it runs"
    )
    return JSONResponse(body, status_code=202)


def with_secret(change: KeyChange) -> dict[str, Any]:
    """A create's or rotate's answer: the new secret beside the key's view."""
    return {"api_key": change.api_key, **change.view}


@router.post("/keys/upsert")
async def upsert_key(body: UpsertKey, state: AdminState) -> JSONResponse:
    """Add or update a key given in clear, as in the original README."""
    change = await key_admin.upsert_key(state, body)
    return await answer(state, change.version, {"key": change.view})


@router.post("/keys", status_code=201)
async def create_key(body: CreateKey, state: AdminState) -> JSONResponse:
    """Generate a key; the full key is in this answer and nowhere else, ever."""
    change = await key_admin.create_key(state, body)
    return await answer(state, change.version, with_secret(change), 201)


@router.get("/keys")
async def list_keys(state: AdminState) -> dict[str, list[dict[str, Any]]]:
    return {"keys": await key_admin.key_views(state)}


@router.get("/keys/{key_id}")
async def get_key(key_id: str, state: AdminState) -> dict[str, Any]:
    return await key_admin.key_view(state, key_id)


@router.patch("/keys/{key_id}")
async def patch_key(key_id: str, body: PatchKey, state: AdminState) -> JSONResponse:
    """Change the sent fields; `active` also applies to an old secret still in its grace."""
    change = await key_admin.patch_key(state, key_id, body)
    return await answer(state, change.version, {"key": change.view})


@router.delete("/keys/{key_id}")
async def delete_key(key_id: str, state: AdminState) -> JSONResponse:
    """Remove the key and any old secret of it; refused everywhere within the sync bound."""
    change = await key_admin.delete_key(state, key_id)
    return await answer(state, change.version, {"deleted": key_id})


@router.post("/keys/{key_id}/rotate")
async def rotate_key(key_id: str, body: RotateKey, state: AdminState) -> JSONResponse:
    """New secret, same key_id and settings; the old secret works for `grace_seconds` more."""
    change = await key_admin.rotate_key(state, key_id, body)
    return await answer(state, change.version, with_secret(change))
