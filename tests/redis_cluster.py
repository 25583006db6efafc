"""Redis Clusters for the tests, made of `redis-server --cluster-enabled yes` processes on free
loopback ports.

- OneNodeCluster: one node holding all 16,384 slots. It enforces what a real cluster does to one
  client's commands (CROSSSLOT for a script, transaction or command whose keys span slots;
  sharded pub/sub), for one process.
- SixNodeCluster: 3 masters and 3 replicas (`redis-cli --cluster create --cluster-replicas 1`),
  node timeout 2 s, so a killed master is replaced by its replica in a few seconds. It can also
  fail a master over so that the promoted replica lacks writes the master acknowledged, on
  purpose (docs: /work/shared/research/scale-out.md 2.2): stopping the replica is not enough
  (what the master already sent sits in its socket and survives), so the master also drops the
  link (`CLIENT KILL TYPE replica`); writes made then are on the master alone, and die with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import ClusterNode

from tests.processes import START_TIMEOUT, ManagedProcess, free_port, redis_server_argv

CLUSTER_SLOTS = 16384
NODE_TIMEOUT_MS = 2000
FAILOVER_WAIT = 30.0
"""Seconds a failover may take: a killed master is declared failed after the node timeout and
its replica elected within about a second more; the machine is shared."""


def until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    watched: Iterable[ClusterNodeServer] = (),
) -> object:
    """The predicate's first true result, polled; a watched server that exited (not one the test
    killed) fails at once with its log, instead of the wait timing out."""
    deadline = time.monotonic() + timeout
    while True:
        for node in watched:
            if node.exited_by_itself():
                raise AssertionError(f"{node.process.name} exited:\n{node.process.log()[-3000:]}")
        with contextlib.suppress(redis.RedisError, OSError):
            if result := predicate():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class ClusterNodeServer:
    """One cluster-enabled redis-server on a free port, with `dir` of its own: its nodes.conf
    (kept, so a restarted node rejoins as itself) and the RDB a replica's full sync writes."""

    def __init__(self, work_dir: Path, name: str, *extra: str) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = redis_server_argv(
            self.port,
            work_dir,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(work_dir / "nodes.conf"),
            *extra,
        )
        self.process = ManagedProcess(name, argv, dict(os.environ), work_dir)
        self.killed = False
        """Killed by the test (SIGKILL): its exit is no failure."""
        self.paused = False
        """Held by SIGSTOP."""

    def cli(self, *args: str) -> str:
        """`redis-cli -p PORT args...`'s output ('' while the server does not answer)."""
        done = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def client(self) -> redis.Redis:
        """A plain client of this node alone; callers close it (`with`)."""
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def cluster_ok(self) -> bool:
        return "cluster_state:ok" in self.cli("cluster", "info")

    def role(self) -> str | None:
        """'master' or 'slave' as the node says itself (None: it does not answer)."""
        with contextlib.suppress(redis.RedisError), self.client() as client:
            return client.info("replication")["role"]
        return None

    def start(self) -> ClusterNodeServer:
        self.killed = self.paused = False
        self.process.start()
        return self

    def alive(self) -> bool:
        return self.process.alive()

    def exited_by_itself(self) -> bool:
        return self.process.process is not None and not self.alive() and not self.killed

    def kill(self) -> None:
        """SIGKILL: the kernel closes its connections at once, nothing is saved."""
        self.killed = True
        self.process.kill()

    def pause(self) -> None:
        self.process.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.process.signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused and self.alive():
            self.resume()  # a stopped process would not see SIGTERM
        self.process.stop()


class OneNodeCluster:
    def __init__(self, work_dir: Path) -> None:
        self.node = ClusterNodeServer(work_dir, "redis-cluster")
        self.port = self.node.port
        self.url = self.node.url
        self.process = self.node.process

    def cli(self, *args: str) -> str:
        return self.node.cli(*args)

    def start(self) -> OneNodeCluster:
        """Started, all slots assigned to it, and `cluster_state:ok`."""
        self.node.start()
        assigned = False

        def ready() -> bool:
            nonlocal assigned
            if not assigned:
                reply = self.cli("cluster", "addslotsrange", "0", str(CLUSTER_SLOTS - 1))
                assigned = reply.strip() == "OK"
            return self.node.cluster_ok()

        until(ready, START_TIMEOUT, f"one-node cluster on port {self.port}", [self.node])
        return self

    def stop(self) -> None:
        self.node.stop()


@dataclass(frozen=True)
class NodeEntry:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    def holds(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)

    @classmethod
    def parse(cls, line: str) -> NodeEntry:
        fields = line.split()
        node_id, address, flags, master = fields[:4]
        ranges = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being imported or migrated
                continue
            low, _, high = item.partition("-")
            ranges.append((int(low), int(high or low)))
        port = int(address.split("@")[0].rpartition(":")[2])
        return cls(
            node_id,
            port,
            frozenset(flags.split(",")),
            None if master == "-" else master,
            tuple(ranges),
        )


@dataclass(frozen=True)
class Cut:
    """What `SixNodeCluster.cut_off` left: a master whose writes reach no replica from now on,
    and its replica, stopped."""

    master: int
    replica: int


class SixNodeCluster:
    """3 masters, each with one replica, on six free loopback ports; nodes named by port."""

    MASTERS = 3

    def __init__(self, work_dir: Path) -> None:
        # A replica's full sync at once, not after the 5 s a diskless sync waits by default for
        # more replicas to share it (a restarted node comes back empty and syncs).
        options = (
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--repl-diskless-sync-delay",
            "0",
        )
        servers = [
            ClusterNodeServer(work_dir / f"node-{index}", f"redis-node-{index}", *options)
            for index in range(2 * self.MASTERS)
        ]
        self.nodes = {server.port: server for server in servers}

    @property
    def startup_nodes(self) -> str:
        """REDIS_CLUSTER_NODES for the services: every node, so a client finds the cluster
        whichever nodes are down."""
        return ",".join(f"127.0.0.1:{port}" for port in self.nodes)

    @property
    def url(self) -> str:
        """REDIS_URL for the services (in cluster mode with REDIS_CLUSTER_NODES only its
        credentials apply)."""
        return next(iter(self.nodes.values())).url

    def _live(self) -> list[ClusterNodeServer]:
        return [node for node in self.nodes.values() if node.alive() and not node.paused]

    def start(self) -> SixNodeCluster:
        """Started, joined into one cluster, and healthy (`wait_healthy`)."""
        for node in self.nodes.values():
            node.start()
        until(
            lambda: all(node.cli("ping").strip() == "PONG" for node in self.nodes.values()),
            START_TIMEOUT,
            "six redis-servers to answer",
            self.nodes.values(),
        )
        addresses = [f"127.0.0.1:{port}" for port in self.nodes]
        create = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses]
        done = subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        assert done.returncode == 0, f"redis-cli --cluster create failed:\n{done.stdout}"
        self.wait_healthy()
        return self

    def topology(self, port: int | None = None) -> list[NodeEntry]:
        """CLUSTER NODES as node `port` (default: the first live one) sees it."""
        for node in [self.nodes[port]] if port is not None else self._live():
            if text := node.cli("cluster", "nodes").strip():
                return [NodeEntry.parse(line) for line in text.splitlines()]
        raise AssertionError("no cluster node answers")

    def slot(self, key: str) -> int:
        """CLUSTER KEYSLOT: the slot the cluster puts `key` (or a channel of that name) in."""
        for node in self._live():
            if (reply := node.cli("cluster", "keyslot", key).strip()).isdigit():
                return int(reply)
        raise AssertionError("no cluster node answers")

    def _owner(self, slot: int, port: int | None = None) -> NodeEntry | None:
        masters = [e for e in self.topology(port) if e.is_master and not e.failed]
        return next((entry for entry in masters if entry.holds(slot)), None)

    def master_of(self, key: str) -> int:
        """The port of the master holding `key`'s slot."""
        owner = self._owner(self.slot(key))
        assert owner is not None, f"no live master holds {key!r}'s slot"
        return owner.port

    def replica_of(self, master: int) -> int:
        """The port of `master`'s replica (one that is not failed, if any)."""
        view = self.topology()
        master_id = next(entry.node_id for entry in view if entry.port == master)
        replicas = [entry for entry in view if entry.master_id == master_id]
        assert replicas, f"port {master} has no replica"
        return min(replicas, key=lambda entry: entry.failed).port

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """All six nodes up, each says cluster_state:ok and sees the same 3 masters covering
        every slot, each with a replica that is linked to it and synced."""

        def healthy() -> bool:
            if len(self._live()) != len(self.nodes):
                return False
            views = {}
            for node in self.nodes.values():
                if not node.cluster_ok():
                    return False
                view = self.topology(node.port)
                masters = {e.node_id: e for e in view if e.is_master and not e.failed and e.slots}
                replicas = [e for e in view if e.master_id in masters and not e.failed]
                covered = sum(high - low + 1 for e in masters.values() for low, high in e.slots)
                if covered != CLUSTER_SLOTS or len(replicas) != len(masters):
                    return False
                views[node.port] = {(e.port, e.slots) for e in masters.values()}
            if len(set(map(frozenset, views.values()))) != 1:
                return False
            for node in self.nodes.values():
                if node.role() == "slave":
                    with node.client() as client:
                        if client.info("replication")["master_link_status"] != "up":
                            return False
            return True

        until(healthy, timeout, "a healthy six-node cluster", self.nodes.values())

    def kill(self, port: int) -> None:
        self.nodes[port].kill()

    def restart(self, port: int) -> None:
        """Start a killed node again: it rejoins from its nodes.conf, empty (memory only), as a
        replica of whichever node took its slots meanwhile, and syncs from it."""
        node = self.nodes[port]
        node.start()
        until(lambda: node.cli("ping").strip() == "PONG", START_TIMEOUT, "the node", [node])

    def heal(self) -> None:
        """Every killed node started again, every stopped one resumed, and the cluster healthy:
        what a test that fails a node over begins with."""
        for port, node in self.nodes.items():
            if node.paused and node.alive():
                node.resume()
            if not node.alive():
                self.restart(port)
        self.wait_healthy()

    def _wait_promoted(self, old_master: int, replica: int, slot: int, timeout: float) -> None:
        """The moment clients can use `replica` as the slot's master: it says role:master, and
        every live node says cluster_state:ok and names it the slot's owner."""

        def promoted() -> bool:
            if self.nodes[replica].role() != "master":
                return False
            for node in self._live():
                owner = self._owner(slot, node.port)
                if not node.cluster_ok() or owner is None or owner.port != replica:
                    return False
            return True

        watched = [node for port, node in self.nodes.items() if port != old_master]
        until(promoted, timeout, f"port {replica} to take over from {old_master}", watched)

    def wait_failover(self, old_master: int, replica: int, timeout: float = FAILOVER_WAIT) -> None:
        """After `old_master` was killed: its replica elected by the other masters (automatic
        failover, after the node timeout) and in use everywhere."""
        slot = self._first_slot(old_master, seen_by=replica)
        self._wait_promoted(old_master, replica, slot, timeout)

    def _first_slot(self, master: int, seen_by: int) -> int:
        """A slot `master` holds as node `seen_by` sees it (one of `seen_by`'s own if it has
        taken them from `master` already)."""
        view = {entry.port: entry for entry in self.topology(seen_by)}
        return (view[master].slots or view[seen_by].slots)[0][0]

    def cut_off(self, master: int) -> Cut:
        """`master`'s replica stopped (SIGSTOP) and dropped by the master (`CLIENT KILL TYPE
        replica`): from now on the master's writes reach no replica. The caller writes, then
        calls `take_over`."""
        replica = self.replica_of(master)
        self.nodes[replica].pause()
        with self.nodes[master].client() as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
            until(
                lambda: client.info("replication")["connected_slaves"] == 0,
                10,
                "the master to drop its replica",
            )
        return Cut(master, replica)

    def take_over(self, cut: Cut, timeout: float = FAILOVER_WAIT) -> None:
        """After `cut_off` and the caller's writes: the master killed (SIGKILL), the replica
        resumed (SIGCONT) and promoted by `CLUSTER FAILOVER TAKEOVER` (no vote: it lacks the
        writes, the cluster lets it), returning once it is in use everywhere."""
        slot = self._first_slot(cut.master, seen_by=cut.master)
        self.nodes[cut.master].kill()
        replica = self.nodes[cut.replica]
        replica.resume()
        until(lambda: replica.cli("ping").strip() == "PONG", 10, "the replica to answer again")
        reply = replica.cli("cluster", "failover", "takeover").strip()
        assert reply == "OK", f"CLUSTER FAILOVER TAKEOVER on {cut.replica}: {reply!r}"
        self._wait_promoted(cut.master, cut.replica, slot, timeout)

    def client(self) -> redis.RedisCluster:
        """A cluster client of the live nodes (it follows MOVED and ASK); callers close it."""
        nodes = [ClusterNode("127.0.0.1", node.port) for node in self._live()]
        return redis.RedisCluster(startup_nodes=nodes, socket_timeout=2, socket_connect_timeout=2)

    def other_master(self, port: int) -> int:
        """A live master that is not `port`."""
        masters = [e.port for e in self.topology() if e.is_master and not e.failed and e.slots]
        return min(master for master in masters if master != port)

    def move_slot(self, slot: int, to_master: int, dwell: float = 0.0) -> None:
        """Move `slot` to master `to_master` as `redis-cli --cluster reshard` does: the target
        IMPORTING and the source MIGRATING it, its keys moved with MIGRATE, then every master
        told the new owner. `dwell` s are spent in each of the two states between (keys all
        still on the source; all on the target, the slot not yet handed over), so that traffic
        meets the ASK and TRYAGAIN answers of a migration."""
        source = self._owner(slot)
        assert source is not None, f"no live master holds slot {slot}"
        view = {entry.port: entry for entry in self.topology()}
        target = view[to_master]
        assert target.is_master and source.port != to_master
        with self.nodes[to_master].client() as into, self.nodes[source.port].client() as out:
            into.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            out.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            time.sleep(dwell)
            while keys := out.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                out.execute_command("MIGRATE", "127.0.0.1", to_master, "", 0, 5000, "KEYS", *keys)
            time.sleep(dwell)
            into.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
            out.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for entry in view.values():
            if entry.is_master and not entry.failed and entry.port not in (to_master, source.port):
                with self.nodes[entry.port].client() as other:
                    other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

        def everywhere() -> bool:
            owners = [self._owner(slot, node.port) for node in self._live()]
            return all(owner is not None and owner.port == to_master for owner in owners)

        until(
            everywhere,
            FAILOVER_WAIT,
            f"every node to name {to_master} the owner of slot {slot}",
            self.nodes.values(),
        )

    def logs(self) -> str:
        return "\n".join(node.process.log() for node in self.nodes.values())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
