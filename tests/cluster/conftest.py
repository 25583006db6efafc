"""The tests under tests/cluster run on the one-node Redis Cluster (tests/redis_cluster.py,
conftest's `cluster_url`) with REDIS_MODE=cluster: their own tests, and tests they import from
other modules, collected again here with these fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def cluster_mode() -> Iterator[None]:
    """REDIS_MODE=cluster for every process the tests start (and any Settings they make)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_MODE", "cluster")
        yield


@pytest.fixture(scope="session")
def redis_url(cluster_url: str) -> str:
    """The one-node cluster in place of the plain Redis."""
    return cluster_url
