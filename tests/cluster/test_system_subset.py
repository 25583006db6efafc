"""The end-to-end subset for keys, limits and metering on the one-node cluster with
REDIS_MODE=cluster (tests/cluster/conftest.py), through one running system: two proxies and a
logger, every one on redis-py's cluster client. The node refuses any script, transaction or
multi-key command whose keys span two slots (CROSSSLOT); key changes travel over sharded pub/sub
(SPUBLISH in the key set's MULTI, SSUBSCRIBE); the rollup's WATCH/MULTI and keys.json's loads
run as cluster transactions.

The tests imported below are collected here again, with this module's `system`. Tests that
flush Redis or start a logger of their own are in test_components.py: they would pull the
ground from under this module's system.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, running_system
from tests.test_e2e_admin import (  # noqa: F401
    test_daily_quota_with_retry_after_until_midnight,
    test_limited_requests_are_metered,
    test_rotate_without_grace_and_delete_in_force_everywhere,
    test_rpm_limit_holds_exactly_across_two_replicas_under_concurrency,
    test_tpm_limit_charges_real_usage,
)
from tests.test_e2e_openai import (  # noqa: F401
    test_hand_edit_of_keys_json_takes_effect,
    test_key_upserted_on_a_works_on_b_and_deactivated_on_b_refused_on_a_within_1s,
    test_n_requests_survive_a_logger_sigkill_exactly_once,
    test_sdk_non_streaming_and_streaming_through_both_replicas,
)


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("on-cluster")
    with running_system(redis_url, fake_upstream_url, root, 2) as system:
        yield system


def test_the_usage_aggregates_count_every_metered_request(system: System):
    """The logger's rollup (cluster transactions under WATCH) and GET /admin/usage on it."""
    assert system.upsert("bsk-counted-00001", "cora").status_code == 200
    headers = {"authorization": "Bearer bsk-counted-00001"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for url in system.proxy_urls * 3:
        reply = httpx.post(url + "/v1/chat/completions", json=body, headers=headers)
        assert reply.status_code == 200

    def counted() -> bool:
        reply = httpx.get(
            system.url + "/admin/usage",
            params={"since": "1d", "user_id": "cora"},
            headers={"x-admin-token": ADMIN_TOKEN},
        )
        return reply.json()["totals"]["requests"] == 6

    wait_until(counted, 10, what="the six requests counted")
    assert sum(event["user_id"] == "cora" for event in system.events()) == 6
