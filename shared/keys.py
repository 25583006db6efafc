"""API key records: how they are hashed, stored in Redis and written to keys.json."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.budgets import BudgetUsd, budgets_of
from shared.users import UserSettings

KEY_ID_PREFIX = "key_"
API_KEY_PREFIX = "bsk-"
MAX_LIMIT = 2**53
"""Largest limit or quota: exact in JSON numbers and in Redis' Lua (doubles)."""
LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "daily_token_quota", "monthly_token_quota")
HINT_HEAD, HINT_TAIL = 7, 4
"""Most characters a hint shows from a key's start and from its end."""
HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
OLD_HINT_HEAD, OLD_HINT_TAIL = 8, 4
OLD_HINT = re.compile(r"(.{1,8})…(.{1,4})", re.DOTALL)
"""Hints as the first rule made them, `key[:8]…key[-4:]`: the whole key up to 12 characters."""
OLD_HINT_SAFE_LENGTH = 13
GENERATED_KEY_LENGTH = 47
"""len(new_api_key()): `bsk-` + 43."""
GENERATED_KEY_ID = re.compile(r"key_[0-9a-f]{16}")


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
    """Enough of a key for a person to recognise it, far too little to use it: at most a
    quarter of it from the start (7 characters at most) and an eighth from the end (4 at most),
    so never more than 3/8 of a key or 11 characters, and never the old `8…4` shape."""
    return _hint_of(api_key, api_key, len(api_key))


def _hint_of(head: str, tail: str, n: int) -> str:
    """The hint of a key of length `n` whose start is `head` and whose end is `tail`."""
    keep_head, keep_tail = min(HINT_HEAD, n // 4), min(HINT_TAIL, n // 8)
    return f"{head[:keep_head]}…{tail[len(tail) - keep_tail :]}"


def header_safe(api_key: str) -> str:
    """A key as it can travel in an HTTP header and survive auth's stripping: printable ASCII
    without spaces. Any other key is refused rather than stored unusable (the message never
    quotes the key)."""
    if not HEADER_SAFE.fullmatch(api_key):
        raise ValueError(
            "must be printable ASCII (0x21-0x7E: no spaces, tabs or control characters), "
            "as an HTTP header can carry it"
        )
    return api_key


def fixed_hint(hint: str | None, key_hash: str, key_id: str) -> str | None:
    """A stored hint made by the old rule (`key[:8]…key[-4:]`), made safe. Where it gave the
    key away whole (12 characters or fewer: found by the hash), the new hint of that key. Else
    the new hint for the length the key must have: 47 for a generated key (an id and a hint
    of the generated form), else 13, the shortest the old rule did not give away (3 + 1
    characters). Any other hint is returned as it is."""
    old = OLD_HINT.fullmatch(hint or "")
    if old is None or not _old_rule_shape(head := old[1], tail := old[2]):
        return hint
    for overlap in range(len(tail) + 1):
        candidate = head + tail[overlap:]
        if hash_api_key(candidate) == key_hash:
            return key_hint(candidate)
    if len(head) < OLD_HINT_HEAD:
        return hint
    generated = (
        GENERATED_KEY_ID.fullmatch(key_id) is not None
        and key_id != key_id_for(key_hash)
        and head.startswith(API_KEY_PREFIX)
    )
    return _hint_of(head, tail, GENERATED_KEY_LENGTH if generated else OLD_HINT_SAFE_LENGTH)


def _old_rule_shape(head: str, tail: str) -> bool:
    """8 + 4 characters, or a whole short key and its own end (the old rule under 8)."""
    if len(head) == OLD_HINT_HEAD:
        return len(tail) == OLD_HINT_TAIL
    return len(tail) == min(OLD_HINT_TAIL, len(head)) and head.endswith(tail)


SendableKey = Annotated[str, AfterValidator(header_safe)]


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
    budget_usd_daily: BudgetUsd | None = None
    budget_usd_monthly: BudgetUsd | None = None

    @field_validator("created_at", "expires_at")
    @classmethod
    def _naive_means_utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    @model_validator(mode="after")
    def _derive_managed_fields(self) -> KeyRecord:
        """The derived key_id of a key given none, and a safe hint in place of an old one:
        every reader (Redis, keys.json, admin views) validates, so all get both."""
        if not self.key_id:
            object.__setattr__(self, "key_id", key_id_for(self.key_hash))
        object.__setattr__(self, "key_hint", fixed_hint(self.key_hint, self.key_hash, self.key_id))
        return self

    @property
    def has_limits(self) -> bool:
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS)

    @property
    def has_budget(self) -> bool:
        return any(budgets_of(self))

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

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)
    """Errors never quote the entry: it may hold a key in clear."""

    api_key: SendableKey | None = None
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
    """keys.json: `{"keys": [...]}` as in the original README, and `users` (their settings)
    when any user has some; a file without `users` is one with none."""

    model_config = ConfigDict(hide_input_in_errors=True)
    """Errors never quote an entry (the outer model's setting is the one that counts)."""

    keys: list[KeyFileEntry] = Field(default_factory=list)
    users: list[UserSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_user_once(self) -> KeyFile:
        if len({user.user_id for user in self.users}) < len(self.users):
            raise ValueError("users: a user_id is listed twice")
        return self

    def to_records(self) -> list[KeyRecord]:
        return [entry.to_record() for entry in self.keys]

    @staticmethod
    def render(records: Sequence[KeyRecord], users: Sequence[UserSettings] = ()) -> bytes:
        document: dict[str, Any] = {
            "keys": [record.to_file_entry() for record in sorted(records, key=_by_owner)]
        }
        if users:
            ordered = sorted(users, key=lambda user: user.user_id)
            document["users"] = [user.to_file_entry() for user in ordered]
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def _by_owner(record: KeyRecord) -> tuple[str, str]:
    return (record.user_id, record.key_hash)


def utc_now() -> datetime:
    return datetime.now(UTC)


def json_time(value: datetime) -> str:
    """A time as every key view writes it (pydantic's JSON form: UTC, `Z`), so no field of an
    answer says `+00:00` where the others say `Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
