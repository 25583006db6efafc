"""API key records: how they are hashed, stored in Redis and written to keys.json."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_ID_PREFIX = "key_"


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex of a client key: the only form in which keys are kept at rest."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_for(key_hash: str) -> str:
    """A stable, non-secret id derived from the hash, for admin calls and usage events."""
    return KEY_ID_PREFIX + key_hash[:16]


class KeyRecord(BaseModel):
    """A key as Redis and the proxies hold it: the hash, the owner, and any extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    user_id: str = Field(min_length=1)
    active: bool = True

    @property
    def key_id(self) -> str:
        return key_id_for(self.key_hash)

    def to_redis(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude={"key_hash"}))

    @classmethod
    def from_redis(cls, key_hash: str, raw: bytes | str) -> KeyRecord:
        return cls(key_hash=key_hash, **orjson.loads(raw))

    def to_file_entry(self) -> dict[str, Any]:
        """The keys.json form: the original README's fields, the hash in place of the key."""
        fields = self.model_dump(exclude={"key_hash"})
        return {"api_key_sha256": self.key_hash, **fields}


class KeyFileEntry(BaseModel):
    """One entry of keys.json: `api_key` in clear (hand-written) or `api_key_sha256`."""

    model_config = ConfigDict(extra="allow")

    api_key: str | None = Field(None, min_length=1)
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    user_id: str = Field(min_length=1)
    active: bool = True

    @model_validator(mode="after")
    def _one_key_form(self) -> KeyFileEntry:
        if (self.api_key is None) == (self.api_key_sha256 is None):
            raise ValueError("give exactly one of api_key and api_key_sha256")
        return self

    def to_record(self) -> KeyRecord:
        extra = self.model_dump(exclude={"api_key", "api_key_sha256", "user_id", "active"})
        key_hash = self.api_key_sha256 or hash_api_key(self.api_key or "")
        return KeyRecord(key_hash=key_hash, user_id=self.user_id, active=self.active, **extra)


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
