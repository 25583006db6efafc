"""A Redis Cluster of one node for the tests: `redis-server --cluster-enabled yes` holding all
16,384 slots. It enforces what a real cluster does to one client's commands (CROSSSLOT for a
script, transaction or command whose keys span slots; sharded pub/sub), for one process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.processes import START_TIMEOUT, ManagedProcess, free_port, redis_server_argv

CLUSTER_SLOTS = 16384


class OneNodeCluster:
    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = ManagedProcess(
            "redis-cluster",
            redis_server_argv(
                self.port,
                work_dir,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(work_dir / "nodes.conf"),
            ),
            dict(os.environ),
            work_dir,
        )

    def cli(self, *args: str) -> str:
        """`redis-cli -p PORT args...`'s output ('' while the server does not answer)."""
        done = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def start(self) -> OneNodeCluster:
        """Started, all slots assigned to it, and `cluster_state:ok`."""
        self.process.start()
        deadline = time.monotonic() + START_TIMEOUT
        assigned = False
        while "cluster_state:ok" not in self.cli("cluster", "info"):
            if not self.process.alive():
                raise AssertionError(f"redis-server exited:\n{self.process.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"one-node cluster not ready on port {self.port}")
            if not assigned:
                reply = self.cli("cluster", "addslotsrange", "0", str(CLUSTER_SLOTS - 1))
                assigned = reply.strip() == "OK"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.process.stop()
