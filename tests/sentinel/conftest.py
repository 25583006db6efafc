"""The tests under tests/sentinel run against a Sentinel-monitored Redis of their own (a master,
a replica, three sentinels: tests/redis_sentinel.py), one per test since a failover leaves no
replica behind, with REDIS_MODE=sentinel for every process they start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_sentinel import MASTER_NAME, SentinelGroup


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """The group started and seen whole by every sentinel; REDIS_MODE=sentinel,
    REDIS_SENTINELS and REDIS_SENTINEL_MASTER in the environment every service inherits
    (tests/processes.py's service_env copies it), and any Settings the test makes."""
    (tmp_path / "redis").mkdir()
    group = SentinelGroup(tmp_path / "redis")
    try:
        group.start()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REDIS_MODE", "sentinel")
            patch.setenv("REDIS_SENTINELS", group.sentinels_setting)
            patch.setenv("REDIS_SENTINEL_MASTER", MASTER_NAME)
            yield group
    finally:
        group.stop()
