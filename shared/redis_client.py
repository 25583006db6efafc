"""The one way every process reaches Redis (REDIS_MODE), and the few calls that differ between a
single Redis and a Redis Cluster: scripts, and the key-change notices.

- standalone: one server at REDIS_URL.
- cluster: `RedisCluster` from REDIS_CLUSTER_NODES (or REDIS_URL as the startup node); every key
  group shares a hash tag (shared/redis_names.py), so the same scripts and transactions run.
- sentinel: the master the sentinels of REDIS_SENTINELS name REDIS_SENTINEL_MASTER, found again
  after a failover; the keys are those of a single Redis.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from shared.closed_connections import guard_closed_connections
from shared.settings import Settings, host_ports

RedisClient = Redis | RedisCluster
"""What every component takes: a plain client (standalone, sentinel) or a cluster client."""

Message = dict[str, Any]

REDIS_FAILURES = (RedisError, RedisClusterException)
"""What a Redis call raises when Redis refuses it or cannot be reached: the cluster client raises
RedisClusterException, which is no RedisError, when no node answers or no node holds a slot."""
REDIS_ERRORS = (*REDIS_FAILURES, OSError)
"""The same, and the network failing under the client: what every caller that rides out a Redis
outage catches."""


def connect(settings: Settings, *, timeout: float) -> RedisClient:
    """A client for REDIS_MODE whose commands give up after `timeout` seconds (connecting: 2 at
    most). REDIS_URL's user and password also apply to the listed cluster nodes and to the
    master the sentinels name (its database too), not to the sentinels themselves."""
    guard_closed_connections()
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, 2.0),
    }
    if settings.redis_mode == "standalone":
        return Redis.from_url(settings.redis_url, **options)
    credentials = {
        name: value
        for name, value in parse_url(settings.redis_url).items()
        if name in ("username", "password", "db")
    }
    if settings.redis_mode == "cluster":
        if not settings.redis_cluster_nodes:
            return RedisCluster.from_url(settings.redis_url, **options)
        credentials.pop("db", None)  # a cluster has database 0 only
        nodes = [ClusterNode(host, port) for host, port in host_ports(settings.redis_cluster_nodes)]
        return RedisCluster(startup_nodes=nodes, **credentials, **options)
    # A sentinel that does not answer is skipped at once for the next one, not retried with
    # backoff (redis-py's default: seconds per dead sentinel, at every master lookup).
    asking = {**options, "retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel(host_ports(settings.redis_sentinels), sentinel_kwargs=asking, **options)
    return sentinel.master_for(settings.redis_sentinel_master, **credentials)


class Script:
    """A Lua script sent alone: EVALSHA, and on NOSCRIPT (a restarted or failed-over node, a
    flushed script cache) EVAL, which also caches it on that node. Never SCRIPT LOAD: some
    Redis proxies refuse SCRIPT, and on a cluster it would have to reach every node. Inside a
    pipeline or transaction, send EVAL instead (a cluster pipeline refuses EVALSHA, and a
    NOSCRIPT inside a MULTI fails that command alone while the rest runs)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, redis: RedisClient, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)


NODE_IDENTITY_LUA = "string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"
"""A Lua expression: the run_id of the server running the script, so of the node that holds
the script's keys (on a cluster, their slot's master). Every start of a server, and every
promotion of a replica, shows a new one: whatever that node acknowledged before may be gone,
though the keys that mark a dataset (an epoch, the key set's loaded marker) survived on the
replica."""
NODE_IDENTITY = Script(f"return {NODE_IDENTITY_LUA}")
"""NODE_IDENTITY_LUA alone, for the node of KEYS[1] (sent with EVAL inside a transaction)."""


def announce(pipe: Pipeline | ClusterPipeline, channel: str, message: str) -> None:
    """Queue a key-change notice in `pipe`: SPUBLISH on a cluster (the channel hashes like a key,
    so it rides in the key set's MULTI; redis-py refuses PUBLISH in cluster pipelines), PUBLISH
    elsewhere (sharded pub/sub needs Redis 7; a single Redis 6 keeps working)."""
    if isinstance(pipe, ClusterPipeline):
        pipe.spublish(channel, message)
    else:
        pipe.publish(channel, message)


class SubscriptionEnded(RedisConnectionError):
    """The server ended a subscription nobody asked it to end: on a cluster, the channel's slot
    moved to another node (Redis sends SUNSUBSCRIBE when a slot leaves its node). Caught like a
    lost connection: the caller subscribes again, on the slot's new owner."""


async def listen(
    pubsub: PubSub | ClusterPubSub, *channels: str
) -> Callable[[float], Awaitable[Message | None]]:
    """Subscribe to the notices `announce` sends on `channels` (SSUBSCRIBE on a cluster, on the
    node that owns their slot; SUBSCRIBE elsewhere); returns the call that waits up to its
    timeout for the next one (None: none came, or a subscription was confirmed). It raises
    SubscriptionEnded when the server ends a subscription (make `pubsub` without
    ignore_subscribe_messages, so that this one is seen)."""
    if isinstance(pubsub, ClusterPubSub):
        # The slots read afresh, to find the node: after a failover the client's map still
        # names the dead master until some other command on that slot fails.
        await pubsub.cluster.nodes_manager.initialize()
        await pubsub.ssubscribe(*channels)
        get = functools.partial(pubsub.get_sharded_message, ignore_subscribe_messages=False)
    else:
        await pubsub.subscribe(*channels)
        get = functools.partial(pubsub.get_message, ignore_subscribe_messages=False)

    async def receive(timeout: float) -> Message | None:
        message = await get(timeout=timeout)
        if message is None or message["type"] in ("subscribe", "ssubscribe"):
            return None
        if message["type"] in ("unsubscribe", "sunsubscribe"):
            raise SubscriptionEnded(f"the server ended the subscription to {message['channel']!r}")
        return message

    return receive


@contextlib.asynccontextmanager
async def atomic(redis: RedisClient) -> AsyncIterator[Pipeline | ClusterPipeline]:
    """A MULTI/EXEC pipeline (queued commands only: never WATCH). On a cluster the client is
    made ready first, in this event loop: redis-py 8.1's cluster transactions run each queued
    command's slot lookup through asyncio.run in a thread of its own, and a client left to
    initialise itself there (at first use, or after a failover) gets connections and a lock
    bound to that thread's short-lived loop, which later fail every loop of the process."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()
    async with redis.pipeline(transaction=True) as pipe:
        try:
            yield pipe
        except REDIS_ERRORS:
            # A transaction that failed on a node does not always refresh the client's slot
            # map (redis-py re-reads it every few failures only): read it now, so the next
            # attempt goes to the promoted master rather than the dead one again.
            if isinstance(redis, RedisCluster):
                with contextlib.suppress(*REDIS_ERRORS):
                    await redis.nodes_manager.initialize()
            raise


def queue_unlink(pipe: Pipeline | ClusterPipeline, names: Sequence[str]) -> None:
    """UNLINK `names` (one slot) queued in `pipe`: a cluster pipeline's own `unlink` is a
    coroutine, a plain one's is not."""
    pipe.execute_command("UNLINK", *names)
