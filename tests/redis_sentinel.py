"""A Sentinel-monitored Redis for the tests: a master, one replica (`--replicaof`) and three
`redis-server --sentinel` processes on free loopback ports, quorum 2, a master declared down
after 1 s. What REDIS_MODE=sentinel clients face in production, on one machine: the master
killed and a replica promoted by the sentinels' vote, or the replica cut off first so that the
promoted node lacks writes the old master acknowledged (replication is asynchronous).

The lossy failover, deterministically (docs: /work/shared/research/scale-out.md 2.2): stopping
the replica is not enough (what the master already sent sits in its socket and survives), so
the master also drops the link (`CLIENT KILL TYPE replica`); writes made then are in the master
alone, and die with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.processes import START_TIMEOUT, ManagedProcess, free_port, redis_server_argv, wait_until

MASTER_NAME = "b23"
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
FAILOVER_WAIT = 30.0
"""Seconds a failover may take: about 2-4 s here; a split vote retries only after twice
FAILOVER_TIMEOUT_MS, and the machine is shared."""


def sentinel_config(port: int, work_dir: Path, master_port: int) -> str:
    """A sentinel's config file (it rewrites it as it learns the topology: one file each)."""
    return (
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {work_dir}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER_NAME} 1\n"
    )


@dataclass(frozen=True)
class Cut:
    """What the lossy trick left: the master and the cut-off replica (resumed, not yet
    promoted), and the master's replication offset when it died."""

    old_master: int
    replica: int
    master_offset: int
    replica_offset: int

    @property
    def lost_bytes(self) -> int:
        """Replication stream the master wrote that the replica never got: the caller's
        writes, and the sentinels' hello messages (PUBLISH, every 2 s)."""
        return self.master_offset - self.replica_offset


class SentinelGroup:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        self.nodes: dict[int, ManagedProcess] = {}
        """The data nodes by port (the master's and the replica's roles swap on a failover)."""
        self.sentinels: list[ManagedProcess] = []
        self._stopped: set[int] = set()
        """Data nodes held by SIGSTOP."""

    @property
    def sentinels_setting(self) -> str:
        """REDIS_SENTINELS for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def url(self) -> str:
        """REDIS_URL for the services: in sentinel mode only its database (and credentials)
        apply; the host is the master's at the start."""
        return f"redis://127.0.0.1:{self.master_port}/0"

    def client(self, port: int) -> redis.Redis:
        """A client of one node or sentinel; callers close it (`with`)."""
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def _node(self, name: str, port: int, *extra: str) -> ManagedProcess:
        # The replica's full sync at once, not after the 5 s a diskless sync waits by default
        # for more replicas to share it.
        options = ("--dbfilename", f"{name}.rdb", "--repl-diskless-sync-delay", "0", *extra)
        argv = redis_server_argv(port, self.work_dir, *options)
        process = ManagedProcess(name, argv, dict(os.environ), self.work_dir).start()
        self.nodes[port] = process
        return process

    def start(self) -> SentinelGroup:
        """All started, and every sentinel sees the master, the replica and the others."""
        self._node("redis-master", self.master_port)
        replica_of = ("--replicaof", "127.0.0.1", str(self.master_port))
        self._node("redis-replica", self.replica_port, *replica_of)
        self._wait_synced(self.replica_port)
        server = shutil.which("redis-server") or "redis-server"
        for index, port in enumerate(self.sentinel_ports):
            config = self.work_dir / f"sentinel-{index}.conf"
            config.write_text(sentinel_config(port, self.work_dir, self.master_port))
            argv = [server, str(config), "--sentinel"]
            name = f"sentinel-{index}"
            self.sentinels.append(ManagedProcess(name, argv, dict(os.environ), self.work_dir))
            self.sentinels[-1].start()
        self.wait_ready(self.master_port, self.replica_port)
        return self

    def _until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """`wait_until`, but a server or sentinel that exited (not one the test killed) fails
        at once with its log, instead of the wait timing out."""
        deadline = time.monotonic() + timeout
        while True:
            for process in [*self.nodes.values(), *self.sentinels]:
                if process.process is not None and process.process.poll() not in (None, -9):
                    raise AssertionError(f"{process.name} exited:\n{process.log()[-3000:]}")
            with contextlib.suppress(redis.RedisError):
                if predicate():
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def _wait_synced(self, replica: int) -> None:
        """The replica linked to its master: sentinels started after this find it in the
        master's first INFO reply, not 10 s later in the next."""

        def synced() -> bool:
            with self.client(replica) as node:
                return node.info("replication").get("master_link_status") == "up"

        self._until(synced, START_TIMEOUT, "the replica to sync")

    def wait_ready(self, master: int, replica: int, timeout: float = START_TIMEOUT) -> None:
        """Every sentinel names `master`, sees `replica` up and linked, and knows the other
        sentinels (the failover vote needs them); the replica has synced."""

        self._wait_synced(replica)

        def ready() -> bool:
            for port in self.sentinel_ports:
                with self.client(port) as sentinel:
                    state = sentinel.sentinel_master(MASTER_NAME)
                    replicas = sentinel.sentinel_slaves(MASTER_NAME)
                if (state["port"], state["is_sdown"], state["is_odown"]) != (master, False, False):
                    return False
                if state["num-other-sentinels"] != SENTINELS - 1:
                    return False
                linked = [
                    r
                    for r in replicas
                    if r["port"] == replica
                    and not r["is_sdown"]
                    and r.get("master-link-status") == "ok"
                ]
                if not linked:
                    return False
            return True

        self._until(ready, timeout, "the sentinels to see master and replica")

    def master_addr(self, sentinel: int) -> int | None:
        """The master's port as one sentinel names it (None if it does not answer)."""
        with contextlib.suppress(redis.RedisError), self.client(sentinel) as client:
            addr = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(addr[1]) if addr else None
        return None

    def current_master(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            if (master := self.master_addr(port)) is not None:
                return master
        raise AssertionError("no sentinel answers")

    def role(self, port: int) -> str | None:
        with contextlib.suppress(redis.RedisError), self.client(port) as client:
            return client.info("replication")["role"]
        return None

    def kill_master(self) -> int:
        """SIGKILL the current master (the kernel closes its connections at once); its port."""
        port = self.current_master()
        self.nodes[port].kill()
        return port

    def wait_for_failover(self, old_master: int, timeout: float = FAILOVER_WAIT) -> int:
        """The moment a client can reach a new master: a sentinel names another node, and that
        node says role:master. Its port."""

        def promoted() -> int | None:
            for port in self.sentinel_ports:
                master = self.master_addr(port)
                if master not in (None, old_master) and self.role(master) == "master":
                    return master
            return None

        return wait_until(promoted, timeout, interval=0.02, what="a new master")

    def wait_settled(self, master: int, timeout: float = FAILOVER_WAIT) -> None:
        """Every sentinel names `master` (clients asking any of them find it)."""
        wait_until(
            lambda: all(self.master_addr(port) == master for port in self.sentinel_ports),
            timeout,
            what=f"every sentinel to name port {master}",
        )

    def _replica_of(self, master: int) -> int:
        return next(port for port in self.nodes if port != master)

    def cut_off_replica(self) -> None:
        """The replica stopped (SIGSTOP) and dropped by the master (`CLIENT KILL TYPE
        replica`): from now on the master's writes reach no replica."""
        master = self.current_master()
        replica = self._replica_of(master)
        self.nodes[replica].signal(signal.SIGSTOP)
        self._stopped.add(replica)
        with self.client(master) as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
            wait_until(
                lambda: client.info("replication")["connected_slaves"] == 0,
                10,
                what="the master to drop its replica",
            )

    def kill_master_and_resume_replica(self) -> Cut:
        """After `cut_off_replica` and the caller's writes: the master killed (SIGKILL), then
        the replica resumed (SIGCONT). It answers, still a replica with its link down, holding
        what it had when it was cut off: a caller can read it before `fail_over` promotes it."""
        master = self.current_master()
        replica = self._replica_of(master)
        with self.client(master) as client:
            offset = client.info("replication")["master_repl_offset"]
        self.nodes[master].kill()
        self.nodes[replica].signal(signal.SIGCONT)
        self._stopped.discard(replica)
        with self.client(replica) as client:
            wait_until(client.ping, 10, what="the replica to answer again")
            held = client.info("replication")
        return Cut(master, replica, offset, held["master_repl_offset"])

    def fail_over(self, cut: Cut, timeout: float = FAILOVER_WAIT) -> int:
        """Promote the cut-off replica: `SENTINEL FAILOVER` (no vote needed), retried while
        the sentinels still count the replica as down since its stop; or the automatic failover
        that may have begun meanwhile. The new master's port, once it answers as master."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client(self.sentinel_ports[0]) as sentinel:
                    sentinel.sentinel_failover(MASTER_NAME)
                break
            except redis.ResponseError as error:
                if "INPROG" in str(error):
                    break  # the automatic failover began first
                if "NOGOODSLAVE" not in str(error) or time.monotonic() > deadline:
                    raise
            if self.role(cut.replica) == "master":
                break
            time.sleep(0.05)
        return self.wait_for_failover(cut.old_master, max(deadline - time.monotonic(), 1))

    def logs(self) -> str:
        return "\n".join(p.log() for p in [*self.nodes.values(), *self.sentinels])

    def stop(self) -> None:
        for port in list(self._stopped):
            self.nodes[port].signal(signal.SIGCONT)  # a stopped process would not see SIGTERM
        self._stopped.clear()
        for process in [*self.sentinels, *self.nodes.values()]:
            process.stop()
