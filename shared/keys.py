"""API key records: how they are hashed, stored in Redis and written to keys.json."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY_ID_PREFIX = "key_"
API_KEY_PREFIX = "bsk-"
MAX_LIMIT = 2**53
"""Largest limit or quota: exact in JSON numbers and in Redis' Lua (doubles)."""
LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "daily_token_quota", "monthly_token_quota")


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex of a client key: the only form in which keys are kept at rest."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_for(key_hash: str) -> str:
    """The id of a key that was not given one (hand-written or upserted): derived, stable."""
    return KEY_ID_PREFIX + key_hash[:16]


def new_api_key() -> str:
    """`bsk-` + 43 URL-safe characters (256 random bits) from `secrets`."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(8)


def key_hint(api_key: str) -> str:
    """Enough of a key for a person to recognise it, far too little to use it."""
    return f"{api_key[:8]}…{api_key[-4:]}"


class KeyRecord(BaseModel):
    """A key as Redis and the proxies hold it: the hash, the owner, limits and any extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    key_id: str = ""
    user_id: str = Field(min_length=1)
    active: bool = True
    key_hint: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    superseded: bool = False
    """An old secret of a rotated key, valid until expires_at (the grace period)."""
    rpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tpm_limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    daily_token_quota: int | None = Field(None, ge=1, le=MAX_LIMIT)
    monthly_token_quota: int | None = Field(None, ge=1, le=MAX_LIMIT)

    @field_validator("created_at", "expires_at")
    @classmethod
    def _naive_means_utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    @model_validator(mode="after")
    def _derive_key_id(self) -> KeyRecord:
        if not self.key_id:
            object.__setattr__(self, "key_id", key_id_for(self.key_hash))
        return self

    @property
    def has_limits(self) -> bool:
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS)

    def usable(self, now: float) -> bool:
        """Active and not expired at unix time `now`."""
        return self.active and (self.expires_at is None or self.expires_at.timestamp() > now)

    def to_redis(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude={"key_hash"}, exclude_none=True))

    @classmethod
    def from_redis(cls, key_hash: str, raw: bytes | str) -> KeyRecord:
        return cls(key_hash=key_hash, **orjson.loads(raw))

    def to_file_entry(self) -> dict[str, Any]:
        """The keys.json form: the original README's fields, the hash in place of the key."""
        fields = self.model_dump(mode="json", exclude={"key_hash"}, exclude_none=True)
        return {"api_key_sha256": self.key_hash, **fields}


class KeyFileEntry(BaseModel):
    """One entry of keys.json: `api_key` in clear (hand-written) or `api_key_sha256`."""

    model_config = ConfigDict(extra="allow")

    api_key: str | None = Field(None, min_length=1)
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    user_id: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_key_form(self) -> KeyFileEntry:
        if (self.api_key is None) == (self.api_key_sha256 is None):
            raise ValueError("give exactly one of api_key and api_key_sha256")
        return self

    def to_record(self) -> KeyRecord:
        fields = self.model_dump(exclude={"api_key", "api_key_sha256"}, exclude_none=True)
        if self.api_key is not None:
            fields.setdefault("key_hint", key_hint(self.api_key))
        key_hash = self.api_key_sha256 or hash_api_key(self.api_key or "")
        return KeyRecord(key_hash=key_hash, **fields)


class KeyFile(BaseModel):
    """keys.json: `{"keys": [...]}` exactly as in the original README."""

    keys: list[KeyFileEntry] = Field(default_factory=list)

    def to_records(self) -> list[KeyRecord]:
        return [entry.to_record() for entry in self.keys]

    @staticmethod
    def render(records: list[KeyRecord]) -> bytes:
        entries = [record.to_file_entry() for record in sorted(records, key=_by_owner)]
        return orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2) + b"\n"


def _by_owner(record: KeyRecord) -> tuple[str, str]:
    return (record.user_id, record.key_hash)


def utc_now() -> datetime:
    return datetime.now(UTC)
