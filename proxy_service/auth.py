"""Client and admin authentication."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from proxy_service.errors import AdminForbidden, AuthenticationFailed
from proxy_service.keystore import KeyStore
from shared.keys import KeyRecord, hash_api_key


def client_key_from(headers: Mapping[str, str]) -> str | None:
    """The key from `x-api-key`, else from `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(headers: Mapping[str, str], keys: KeyStore) -> tuple[str, KeyRecord]:
    """The client's key and its record; AuthenticationFailed (never echoing the key) otherwise."""
    api_key = client_key_from(headers)
    if api_key is None:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer <key> or x-api-key")
    record = keys.lookup(hash_api_key(api_key))
    if record is None or not record.usable(time.time()):
        raise AuthenticationFailed("invalid, inactive or expired API key")
    return api_key, record


def check_admin_token(given: str | None, accepted: tuple[str, ...]) -> None:
    """Constant-time comparisons with every accepted token (the current one and, during a
    rotation, the previous one), all of them always made, so timing tells nothing."""
    if given is None:
        raise AdminForbidden("missing or invalid x-admin-token")
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in accepted]
    if not any(matches):
        raise AdminForbidden("missing or invalid x-admin-token")
