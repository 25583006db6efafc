"""The tests under tests/cluster_six run on a Redis Cluster of 3 masters and 3 replicas
(tests/redis_cluster.py's SixNodeCluster), started once for the directory, with REDIS_MODE=cluster
and REDIS_CLUSTER_NODES naming all six nodes for every process they start. A test that kills or
fails over a node leaves it so; the next one that asks for `cluster` gets it healed first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_cluster import SixNodeCluster


@pytest.fixture(scope="package")
def six_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SixNodeCluster]:
    cluster = SixNodeCluster(tmp_path_factory.mktemp("six-node-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="package", autouse=True)
def cluster_mode(six_cluster: SixNodeCluster) -> Iterator[None]:
    """REDIS_MODE=cluster and the six nodes for every process the tests start (service_env
    copies the environment), and any Settings they make."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_MODE", "cluster")
        patch.setenv("REDIS_CLUSTER_NODES", six_cluster.startup_nodes)
        yield


@pytest.fixture(scope="package")
def redis_url(six_cluster: SixNodeCluster) -> str:
    """The six-node cluster in place of the plain Redis (its credentials only: the services
    find the nodes through REDIS_CLUSTER_NODES)."""
    return six_cluster.url


@pytest.fixture
def cluster(six_cluster: SixNodeCluster) -> SixNodeCluster:
    """The cluster with every node up, each master with a synced replica: what the previous
    test killed restarted (it rejoins as a replica)."""
    six_cluster.heal()
    return six_cluster
