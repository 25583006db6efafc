"""Every group of keys the code sends together lies in one Redis Cluster slot (redis-py's
`key_slot`), else a cluster refuses it with CROSSSLOT. Checked on what the real code paths send
to a real Redis, recorded as it goes out, so a group added later is checked too:

- a group is a Lua script's KEYS (EVALSHA/EVAL, alone or pipelined), a MULTI/EXEC with what it
  WATCHed and read before it, or one command naming several keys (DEL, MGET, XREADGROUP...);
  the keys of each command are Redis's own answer to COMMAND GETKEYS; a notice's channel counts
  as a key (on a cluster it is SPUBLISHed inside the key set's MULTI);
- the paths: limits (ADMIT, CHARGE), the key, budget and limit views, the key set's writes,
  reloads and persistence, the event publisher, the logger's events loop (bounded reads,
  acknowledgements, claims, the old stream's drain), keys.json's load and persistence, the
  usage rollup (rebuild, counts, the recent-requests window, with it off too), the usage read,
  the loggers' status and heartbeat, the dashboard's pipeline health, and the upgrade from the
  names before hash tags.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot

from logger_service.rollup import Rollup
from logger_service.worker import UsageLogger
from proxy_service.allowances import budget_views, budgets_of_record, many_token_limits
from proxy_service.keystore import KeyStore
from proxy_service.keywriter import KeyWriter
from proxy_service.limits import Limiter, RateLimited
from proxy_service.publisher import EventBounds, EventPublisher
from proxy_service.routes.usage import usage_report
from proxy_service.ui.reads import pipeline_health
from shared import redis_names
from shared.keys import KeyFile, KeyRecord, hash_api_key
from shared.logger_status import files_report
from shared.redis_names import limit_keys, name_part, spend_key
from shared.settings import Settings
from shared.usage_query import build_query
from shared.users import UserSettings
from tests.old_names import OLD_EVENTS, seed_old_deployment
from tests.poison import START_MS, proxy_event
from tests.processes import ADMIN_TOKEN

Command = tuple
Group = tuple[str, list[Command]]
"""(what sent it: command, pipelined, transaction; the commands)."""


class Recorder:
    """Records every group a plain redis-py asyncio client sends, as it sends it."""

    def __init__(self) -> None:
        self.groups: list[Group] = []
        self._watched: dict[int, list[Command]] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Redis, "execute_command", self._wrap_command(Redis.execute_command))
            patch.setattr(
                Pipeline,
                "immediate_execute_command",
                self._wrap_immediate(Pipeline.immediate_execute_command),
            )
            patch.setattr(Pipeline, "execute", self._wrap_execute(Pipeline.execute))
            patch.setattr(Pipeline, "reset", self._wrap_reset(Pipeline.reset))
            yield self

    def _wrap_command(self, command):
        async def execute_command(client, *args, **options):
            self.groups.append(("command", [args]))
            return await command(client, *args, **options)

        return execute_command

    def _wrap_immediate(self, immediate):
        async def immediate_execute_command(pipe, *args, **options):  # WATCH, and reads after it
            self._watched.setdefault(id(pipe), []).append(args)
            return await immediate(pipe, *args, **options)

        return immediate_execute_command

    def _wrap_execute(self, execute):
        async def pipeline_execute(pipe, raise_on_error=True):
            stack = [args for args, _ in pipe.command_stack]
            watched = self._watched.pop(id(pipe), [])
            if pipe.is_transaction:
                self.groups.append(("transaction", watched + stack))
            else:
                self.groups += [("pipelined", [args]) for args in stack]
            return await execute(pipe, raise_on_error)

        return pipeline_execute

    def _wrap_reset(self, reset):
        async def pipeline_reset(pipe):  # a WATCH left without EXEC still was one group
            if watched := self._watched.pop(id(pipe), []):
                self.groups.append(("transaction", watched))
            return await reset(pipe)

        return pipeline_reset


def keys_of(client: redis.Redis, command: Command) -> list[bytes]:
    """The keys of a command as Redis parses them; a notice's channel as one."""
    name, *args = command
    if str(name).upper() in ("PUBLISH", "SPUBLISH"):
        keys = [args[0]]
    else:
        try:  # redis-py names some commands in one argument: "XGROUP CREATE"
            keys = client.command_getkeys(*str(name).split(), *args)
        except redis.ResponseError:  # a command without keys (TIME, SCAN, ...)
            return []
    return [key if isinstance(key, bytes) else str(key).encode() for key in keys]


def crossing(client: redis.Redis, groups: list[Group]) -> list[tuple[str, dict[int, set]]]:
    """Each group whose keys lie in more than one slot: (its commands, slot -> keys)."""
    found = []
    for kind, commands in groups:
        slots: dict[int, set] = {}
        for command in commands:
            for key in keys_of(client, command):
                slots.setdefault(key_slot(key), set()).add(key)
        if len(slots) > 1:
            names = " ".join(str(command[0]) for command in commands)
            found.append((f"{kind}: {names}"[:200], slots))
    return found


def multi_key_tags(client: redis.Redis, groups: list[Group]) -> set[str]:
    """The hash tags of the groups that name two keys or more (what the check is about)."""
    tags = set()
    for _, commands in groups:
        keys = {key for command in commands for key in keys_of(client, command)}
        if len(keys) > 1:
            tags |= {key.split(b"{", 1)[1].split(b"}", 1)[0].decode() for key in keys}
    return tags


@pytest.fixture
async def client(redis_url: str, redis_client) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


def record(key_id: str, user_id: str, **limits) -> KeyRecord:
    return KeyRecord(
        key_hash=hash_api_key(f"bsk-{key_id}-0001"), key_id=key_id, user_id=user_id, **limits
    )


LIMITED = record(
    "key_a",
    "uma",
    rpm_limit=100,
    tpm_limit=10_000,
    daily_token_quota=100_000,
    monthly_token_quota=1_000_000,
    budget_usd_daily=Decimal(5),
    budget_usd_monthly=Decimal(50),
)
OTHER = record("key_b", "olaf", rpm_limit=1)
UMA = UserSettings(user_id="uma", budget_usd_daily=Decimal(10), budget_usd_monthly=Decimal(90))
OLAF = UserSettings(user_id="olaf", budget_usd_monthly=Decimal(1))


async def limits_and_views(redis: Redis) -> None:
    limiter = Limiter(redis, fail_open=False)
    for key, user in ((LIMITED, UMA), (OTHER, None), (OTHER, None)):
        with contextlib.suppress(RateLimited):
            await limiter.admit(key, user)
        limiter.charge(key, user, 18, 1_000_000)
    await asyncio.gather(*limiter._charges)
    now = datetime.now(UTC)
    await many_token_limits(redis, [LIMITED, OTHER], now)
    owners = (("key", "key_a", LIMITED), ("user", "uma", UMA), ("user", "olaf", OLAF))
    budgets = [budget for owner in owners for budget in budgets_of_record(*owner)]
    await budget_views(redis, budgets, 80, now)  # several users' counters: one round trip


async def key_set(redis: Redis) -> None:
    store = KeyStore(redis)
    writer = KeyWriter(redis, store)
    version = await writer.change(put=[LIMITED, OTHER], users={"uma": UMA})
    await writer.change(remove=[OTHER], users={"olaf": None})
    await store.reload_all()
    await store.reload_one(LIMITED.key_hash)
    await store.reload_user("uma")
    await writer.records_of("key_a")
    await writer.user("uma")
    await writer.wait_persisted(version, 5)


async def events(redis: Redis, count: int) -> None:
    publisher = EventPublisher(redis, EventBounds(1 << 30, 1 << 30, 1 << 30, 1 << 30))
    for index in range(count):
        publisher.publish(proxy_event(f"new-{index}"))
    await publisher.flush_once()


async def until(check, what: str) -> None:
    async with asyncio.timeout(10):
        while not await check():
            await asyncio.sleep(0.02)


async def logger_paths(redis: Redis, data_dir: Path, sync: redis.Redis) -> None:
    """The logger's loops on an old deployment's data while a proxy publishes and the key set
    changes; then the usage read, the reports, and the rollup with the window off."""
    now = datetime.now(UTC)
    seed_old_deployment(sync, now)
    (data_dir / "keys.json").write_bytes(KeyFile.render([LIMITED], [UMA]))
    settings = Settings(
        _env_file=None,
        admin_token=ADMIN_TOKEN,
        redis_url="redis://unused",
        data_dir=data_dir,
        events_retention_days=3650,  # START_MS's cells are counted
    )
    logger = UsageLogger(settings, redis)
    running = asyncio.create_task(logger.run())
    try:
        await events(redis, 3)
        await until(lambda: _written(logger, len(OLD_EVENTS) + 3), "every event written")
        await until(lambda: _gone(redis, "b23:keys:loaded"), "the old names retired")
        await key_set(redis)
        await until(lambda: _counted(redis), "the aggregates")
        await pipeline_health(redis)
    finally:
        logger.stop()
        await running
    await logger.health.withdraw()
    hour = {"since": str(START_MS // 1000), "until": str(START_MS // 1000 + 3600)}
    now_ms = int(now.timestamp() * 1000)
    query = build_query(**hour, group_by="day,key", filters={}, now_ms=now_ms)
    await usage_report(redis, query)
    await files_report(redis)
    await redis.delete(redis_names.USAGE_WATERMARK)
    await Rollup(redis, settings.events_path, 3650, recent_max=0).catch_up()


async def _written(logger: UsageLogger, count: int) -> bool:
    return logger.written >= count


async def _gone(redis: Redis, name: str) -> bool:
    return not await redis.exists(name)


async def _counted(redis: Redis) -> bool:
    return bool(await redis.exists(redis_names.RECENT_REQUESTS))


async def test_every_group_the_code_sends_lies_in_one_slot(client, redis_client, tmp_path):
    with Recorder().installed() as recorder:
        await limits_and_views(client)
        await logger_paths(client, tmp_path, redis_client)
    kinds = {kind for kind, _ in recorder.groups}
    assert kinds == {"command", "pipelined", "transaction"}, kinds
    assert crossing(redis_client, recorder.groups) == []
    tags = multi_key_tags(redis_client, recorder.groups)
    assert {"keys", "usage", "u:uma", "u:olaf"} <= tags, tags


async def test_the_check_fails_on_the_names_before_hash_tags(client, redis_client):
    """What every script and transaction sent before hash tags: CROSSSLOT on a cluster."""
    with Recorder().installed() as recorder:
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr("b23:keys:version")
            pipe.hset("b23:keys", "h", "{}")
            await pipe.execute()
        await client.eval("return 1", 2, "b23:limit:key_a:rpm", "b23:limit:key_a:tpm")
        await client.set("b23:alone", 1)
    crossed = crossing(redis_client, recorder.groups)
    assert [what for what, _ in crossed] == ["transaction: INCRBY HSET", "command: EVAL"]


def test_a_users_counters_and_its_keys_share_a_slot_whatever_the_ids():
    now = datetime.now(UTC)
    for user_id, key_id in (("uma", "key_a"), ("a}b{c", "k:}{"), ("ü ber@x.org", "%7D")):
        names = limit_keys(key_id, user_id, now)
        assert len({key_slot(name.encode()) for name in names}) == 1, names
        assert all(name.startswith(f"b23:{{u:{name_part(user_id)}}}:") for name in names)
    assert limit_keys("key_a", "uma", now)[0] == "b23:{u:uma}:limit:key_a:rpm"
    # ids that would run together unescaped name different counters
    first = spend_key("daily", "a}:spend:d:1:key:b", "c", now)
    second = spend_key("daily", "a", "b}:spend:d:1:key:c", now)
    assert first != second and "}" not in first.split("}", 1)[1]


def test_each_groups_names_share_a_tag():
    """The groups the module docstring of shared/redis_names.py names, one slot each."""
    groups = [
        [
            redis_names.KEYS_HASH,
            redis_names.USERS_HASH,
            redis_names.KEYS_VERSION,
            redis_names.KEYS_PERSISTED_VERSION,
            redis_names.KEYS_LOADED,
            redis_names.KEYS_FILE_DIGEST,
            redis_names.KEYS_CHANNEL,
            redis_names.USERS_CHANNEL,
        ],
        [redis_names.EVENTS_STREAM, redis_names.REDIS_EPOCH],
        [
            redis_names.USAGE_WATERMARK,
            redis_names.USAGE_GROUPS,
            redis_names.RECENT_REQUESTS,
            redis_names.USAGE_PREFIX + "hour:2024-05-01T13:0123456789abcdef",
        ],
        [redis_names.LOGGER_HEARTBEAT, redis_names.LOGGER_STATUS],
    ]
    for names in groups:
        assert len({key_slot(name.encode()) for name in names}) == 1, names
    assert orjson.dumps(groups)  # plain strings, as every client sends them
