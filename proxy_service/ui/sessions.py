"""Server-side sessions in Redis, shared by every replica and revocable.

The browser holds only a random 256-bit id in a `__Host-` cookie; Redis holds the session under
the id's SHA-256, so a copy of Redis gives no cookie. A session is for one `role`: `admin`
(bound to a fingerprint of the ADMIN_TOKEN it was opened with, so changing ADMIN_TOKEN ends
every admin session) or `me` (bound to one API key's hash, re-checked on every request, so
revoking the key ends it). The idle expiry is the key's TTL, renewed on every use; the
absolute one is checked against `created`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Literal

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from shared.redis_names import UI_SESSION_PREFIX

Role = Literal["admin", "me"]
ID_BYTES = 32


class Session(BaseModel):
    role: Role
    created: float
    """Unix time of the login."""
    max_age: float
    """Seconds after `created` at which the session ends, however much it is used."""
    idle: int
    """Seconds of disuse that end it (the Redis key's TTL)."""
    binding: str
    """admin: fingerprint of the admin token; me: the API key's hash."""
    csrf: str
    """Synchronizer token every form of this session carries back."""
    key_id: str | None = None
    """me: the key this session may read."""

    def expired(self, now: float) -> bool:
        return now >= self.created + self.max_age


def token_fingerprint(admin_token: str) -> str:
    """What an admin session is bound to: not the token, and not its bare hash."""
    return hmac.new(b"b23-ui-admin-session", admin_token.encode(), hashlib.sha256).hexdigest()


def _redis_key(session_id: str) -> str:
    return UI_SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def open(
        self,
        role: Role,
        binding: str,
        *,
        idle: int,
        max_age: float,
        key_id: str | None = None,
    ) -> str:
        """A new session; returns its id, for the cookie only."""
        session_id = secrets.token_urlsafe(ID_BYTES)
        session = Session(
            role=role,
            created=time.time(),
            max_age=max_age,
            idle=idle,
            binding=binding,
            csrf=secrets.token_urlsafe(ID_BYTES),
            key_id=key_id,
        )
        ttl = min(idle, int(max_age) + 1)
        await self._redis.set(_redis_key(session_id), session.model_dump_json(), ex=ttl)
        return session_id

    async def get(self, session_id: str | None, role: Role) -> Session | None:
        """The live session of `role` with this id, its idle expiry renewed; None if there is
        none (never was, logged out, idle or past its absolute expiry, another role's)."""
        if not session_id or len(session_id) > 2 * ID_BYTES:
            return None
        key = _redis_key(session_id)
        raw = await self._redis.get(key)
        if raw is None:
            return None
        try:
            session = Session.model_validate_json(raw)
        except ValidationError:
            return None
        if session.role != role:
            return None
        if session.expired(time.time()):
            await self._redis.delete(key)
            return None
        await self._redis.expire(key, session.idle)
        return session

    async def close(self, session_id: str | None) -> None:
        """End the session (logout); nothing to do for an unknown id."""
        if session_id:
            await self._redis.delete(_redis_key(session_id))
