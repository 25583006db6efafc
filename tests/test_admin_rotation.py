"""Rotating ADMIN_TOKEN without an outage: ADMIN_TOKEN_PREVIOUS keeps the old token working while
replicas restart one by one with the new one, then goes away. Real proxies, a real logger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.settings import Settings
from tests.processes import ADMIN_TOKEN
from tests.system import System, running_system

OLD = ADMIN_TOKEN
NEW = "rotated-admin-token-9876543210"
OTHER = "neither-token-of-the-two-000000"


@pytest.fixture
def system(redis_url: str, fake_upstream_url: str, tmp_path) -> Iterator[System]:
    with running_system(redis_url, fake_upstream_url, tmp_path, 0) as system:
        yield system


def status(url: str, token: str) -> int:
    return httpx.get(url + "/admin/keys", headers={"x-admin-token": token}, timeout=10).status_code


def test_the_rolling_procedure_never_refuses_a_valid_token(system: System) -> None:
    # Step 0: every replica on the old token.
    first = system.start_proxy()
    second = system.start_proxy()
    assert [status(url, OLD) for url in (first, second)] == [200, 200]
    # Step 1: replicas restart one at a time with ADMIN_TOKEN=new, ADMIN_TOKEN_PREVIOUS=old.
    changeover = {"ADMIN_TOKEN": NEW, "ADMIN_TOKEN_PREVIOUS": OLD}
    third = system.start_proxy(**changeover)
    fourth = system.start_proxy(**changeover)
    # Old clients keep working everywhere; new clients work on every replica already rolled.
    assert [status(url, OLD) for url in (first, second, third, fourth)] == [200] * 4
    assert [status(url, NEW) for url in (third, fourth)] == [200, 200]
    assert [status(url, OTHER) for url in (first, third)] == [403, 403]
    # Step 2: every client uses the new token; replicas restart without ADMIN_TOKEN_PREVIOUS.
    final = system.start_proxy(ADMIN_TOKEN=NEW)
    assert status(final, NEW) == 200 and status(final, OLD) == 403


def test_a_previous_token_that_is_too_short_stops_the_start() -> None:
    with pytest.raises(ValueError, match="admin_token_previous"):
        Settings(_env_file=None, admin_token=NEW, admin_token_previous="short")


def test_without_a_previous_token_only_the_current_one_counts() -> None:
    assert Settings(_env_file=None, admin_token=NEW).admin_tokens() == (NEW,)
    rotating = Settings(_env_file=None, admin_token=NEW, admin_token_previous=OLD)
    assert rotating.admin_tokens() == (NEW, OLD)
