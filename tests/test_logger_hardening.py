"""The logger hardened, with real processes (Redis, `python -m logger_service`, proxies): nothing
it is handed stops it, a dead loop ends the process, a keys.json that does not parse is never
written over nor taken for an empty key set, and a full disk is named, visible and loses
nothing."""

from __future__ import annotations

import signal
import stat
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from shared.redis_names import EVENTS_STREAM, KEYS_HASH, KEYS_LOADED, LOGGER_GROUP, LOGGER_HEARTBEAT
from tests.load import run_load
from tests.logger.test_logger_usage import usage_report
from tests.poison import POISONS, proxy_event
from tests.processes import (
    START_TIMEOUT,
    ManagedProcess,
    RedisServer,
    file_size_limit,
    wait_until,
)
from tests.system import System, replace_file

KEY = "bsk-hardening-key-0001"
OTHER_KEY = "bsk-hardening-key-0002"
NO_UPSTREAM = "http://127.0.0.1:9/v1"


def keys_loaded(server: RedisServer) -> bool:
    with redis.Redis.from_url(server.url) as client:
        return bool(client.exists(KEYS_LOADED))


def key_users(server: RedisServer) -> list[bytes]:
    """The key records in Redis, raw (what the logger loaded from keys.json)."""
    with redis.Redis.from_url(server.url) as client:
        return list(client.hgetall(KEYS_HASH).values())


def chat(url: str, key: str) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers).status_code


@pytest.fixture
def system(
    private_redis: RedisServer,
    fake_upstream_url: str,
    tmp_path: Path,
) -> Iterator[System]:
    """Nothing started yet: each test starts what it needs, on a Redis it may restart."""
    system = System(private_redis.url, fake_upstream_url, tmp_path, PERSIST_CONFIRM_TIMEOUT="0.5")
    yield system
    system.stop()
    assert KEY not in system.logs() and OTHER_KEY not in system.logs()


# Row 1: nothing the logger is handed may stop it.


@pytest.mark.parametrize("full_trace", ["false", "true"])
def test_entries_it_cannot_process_are_written_unprocessed_and_it_goes_on(
    redis_url, redis_client, tmp_path, full_trace
):
    """Events nested past orjson's limits in the prompt, the response, an SSE chunk or
    assembled tool arguments, odd usage, bytes that are no JSON: one line each, with the
    event's request_id; the events after them are written, the usage counted, the heartbeat
    fresh; SIGTERM still ends the logger at once."""
    settings = {"FULL_TRACE_LOGGING": full_trace, "EVENTS_RETENTION_DAYS": "3650"}
    system = System(redis_url, NO_UPSTREAM, tmp_path, **settings)
    logger = system.start_logger()
    try:
        expected = {}
        for poison in POISONS:
            entry_id = redis_client.xadd(EVENTS_STREAM, {"e": poison.entry}).decode()
            expected[poison.request_id.format(entry_id=entry_id)] = poison
        after = [proxy_event(f"req_after_{index}") for index in range(5)]
        for event in after:
            redis_client.xadd(EVENTS_STREAM, {"e": orjson.dumps(event)})
        written = system.wait_events(len(expected) + 5, timeout=START_TIMEOUT)
        lines = {line["request_id"]: line for line in written}
        assert set(lines) == {*expected, *(event["request_id"] for event in after)}
        for request_id, poison in expected.items():
            assert ("unprocessed" in lines[request_id]) == poison.unprocessed, poison.name
        print(
            f"\nFAULT-REPORT | {len(expected) + 5} entries | {len(written)} recorded "
            f"({sum('unprocessed' in line for line in written)} unprocessed) | 0 lost | "
            f"{len(written) - len(lines)} duplicates"
        )

        counted = [p.prompt_tokens for p in POISONS if p.prompt_tokens is not None] + [3] * 5

        def usage_counted() -> bool:
            totals = usage_report(system.env["REDIS_URL"])["totals"]
            return (totals["requests"], totals["input_tokens"]) == (len(counted), sum(counted))

        wait_until(usage_counted, 10, what="the rollup counting every line")
        heartbeat = lambda: redis_client.ttl(LOGGER_HEARTBEAT) > 0  # noqa: E731
        wait_until(heartbeat, 5, what="a fresh heartbeat after the poison entries")
        assert logger.alive()
        assert system.logger_check() == 0
        notes = [line for line in logger.log().splitlines() if "written unprocessed" in line]
        assert len(notes) == sum(p.unprocessed for p in POISONS)
        assert all(len(note) < 600 for note in notes) and "Traceback" not in logger.log()
        logger.signal(signal.SIGTERM)
        assert logger.wait(5) == 0
        assert not redis_client.exists(LOGGER_HEARTBEAT)
    finally:
        system.stop()


def test_the_heartbeat_stops_while_the_events_loop_makes_no_progress(
    redis_url, redis_client, tmp_path
):
    """A logger whose events loop cannot read (the stream key is of the wrong type) has no
    heartbeat and fails --check, although its key file loop runs; it has both once the loop
    moves again."""
    redis_client.set(EVENTS_STREAM, "not a stream")
    system = System(redis_url, NO_UPSTREAM, tmp_path)
    logger = system.start_logger()
    try:
        wait_until(lambda: redis_client.exists(KEYS_LOADED), START_TIMEOUT, what="key file loop")
        wait_until(lambda: "WRONGTYPE" in logger.log(), 10, what="the events loop failing")
        assert not redis_client.exists(LOGGER_HEARTBEAT)
        assert system.logger_check() == 1
        redis_client.delete(EVENTS_STREAM)
        wait_until(lambda: redis_client.exists(LOGGER_HEARTBEAT), 5, what="a heartbeat")
        assert system.logger_check() == 0 and logger.alive()
    finally:
        system.stop()


@pytest.mark.parametrize(
    "loop",
    ["logger_service.worker.UsageLogger._consume", "logger_service.keyfile.KeyFileKeeper.tick"],
)
def test_a_loop_the_logger_cannot_do_without_ends_the_process(
    redis_url, redis_client, tmp_path, loop
):
    """A bug that kills the events or key file loop ends the process with status 1 and one
    log line (its container is restarted), rather than leaving it up doing nothing."""
    module, cls, method = loop.rsplit(".", 2)
    code = (
        f"import {module} as m\n"
        "async def broken(self, *args):\n"
        "    raise RuntimeError('boom')\n"
        f"m.{cls}.{method} = broken\n"
        "from logger_service.__main__ import main\n"
        "main()\n"
    )
    system = System(redis_url, NO_UPSTREAM, tmp_path)
    logger = ManagedProcess("logger-broken", [sys.executable, "-c", code], system.env, tmp_path)
    logger.start()
    try:
        assert logger.wait(10) == 1
    finally:
        logger.stop()
    output = logger.log()
    assert [line for line in output.splitlines() if "CRITICAL" in line]
    assert "failed, stopping the process: RuntimeError: boom" in output
    assert "Traceback" not in output
    assert not redis_client.exists(LOGGER_HEARTBEAT)


# Row 4: never persist over a keys.json that failed to parse.

GOOD_FILE = orjson.dumps({"keys": [{"api_key": KEY, "user_id": "olga", "active": True}]})
INVALID_FILES = {
    "truncated JSON": GOOD_FILE[:-7],
    "JSON of the wrong shape": orjson.dumps([{"api_key": KEY, "user_id": "olga"}]),
    "an entry missing user_id": orjson.dumps({"keys": [{"api_key": KEY, "active": True}]}),
}


def copies_aside(system: System) -> list[Path]:
    return sorted(system.data_dir.glob("keys.json.invalid-*"))


def break_keys_file(system: System, content: bytes) -> Path:
    """Write `content` over keys.json; the copy the logger keeps aside once it has seen it."""
    replace_file(system.keys_path, content)
    [copy] = wait_until(lambda: copies_aside(system), 5, what="a copy of the invalid keys.json")
    assert copy.read_bytes() == content and stat.S_IMODE(copy.stat().st_mode) == 0o600
    return copy


def logger_view(system: System, url: str) -> dict:
    return system.readyz(url).json()["logger"]


@pytest.mark.alone  # its write comes 0.5 s after the truncation, within the 1 s settle time
def test_a_hand_edit_caught_half_written_is_read_again_not_reported(
    system: System, private_redis: RedisServer
):
    """An edit in place (`cat > keys.json`, an editor, a script) can be read between its
    truncation and its last write: the logger waits for the file to be still before it calls
    it invalid, so the finished edit loads with no error and no copy aside."""
    system.keys_path.write_bytes(GOOD_FILE)
    system.start_logger()
    wait_until(lambda: keys_loaded(private_redis), START_TIMEOUT, what="keys.json loaded")
    edited = GOOD_FILE.replace(b"olga", b"olga-edited")
    with system.keys_path.open("wb") as file:  # truncated now, written 0.5 s later
        file.flush()
        time.sleep(0.5)
        file.write(edited)
    url = system.start_proxy()
    wait_until(lambda: "olga-edited" in str(key_users(private_redis)), 5, what="the edit loaded")
    assert "does not parse" not in system.logs() and copies_aside(system) == []
    assert logger_view(system, url)["keys_file"] == "ok"


@pytest.mark.parametrize("invalid", INVALID_FILES.values(), ids=INVALID_FILES.keys())
def test_invalid_keys_file_and_redis_restarted_empty_every_replica_stays_not_ready(
    system: System,
    private_redis: RedisServer,
    invalid: bytes,
):
    """No key set is marked loaded, so replicas refuse to be ready rather than serve an empty
    set; an admin change answers 202 and leaves the file as it is; fixed, the file loads."""
    system.keys_path.write_bytes(GOOD_FILE)
    system.start_logger()
    wait_until(lambda: keys_loaded(private_redis), START_TIMEOUT, what="keys.json loaded")
    break_keys_file(system, invalid)
    private_redis.stop()
    private_redis.start()
    urls = [system.start_proxy(ready_status=503) for _ in range(2)]
    for url in urls:
        ready = system.readyz(url)
        assert ready.status_code == 503 and ready.json()["keys_loaded"] is False
        wait_until(lambda u=url: "does not parse" in logger_view(system, u)["keys_file"], 5)
    assert system.upsert(OTHER_KEY, "pat", url=urls[0]).status_code == 202
    assert system.keys_path.read_bytes() == invalid
    assert not keys_loaded(private_redis)
    assert len(copies_aside(system)) == 1
    replace_file(system.keys_path, GOOD_FILE)
    for url in urls:
        wait_until(lambda u=url: system.readyz(u).status_code == 200, 5, what="ready again")
        assert chat(url, KEY) == 200 and logger_view(system, url)["keys_file"] == "ok"
    assert system.logs().count("does not parse") == 1


@pytest.mark.parametrize("invalid", INVALID_FILES.values(), ids=INVALID_FILES.keys())
def test_invalid_keys_file_while_redis_holds_the_set_keys_keep_working(
    system: System, invalid: bytes
):
    """The last good set keeps serving (ready, 200); an admin change is in force but answers
    202 and the file stays byte for byte; once the file is fixed, the change is written."""
    system.keys_path.write_bytes(GOOD_FILE)
    system.start_logger()
    url = system.start_proxy()
    break_keys_file(system, invalid)
    wait_until(lambda: "does not parse" in logger_view(system, url)["keys_file"], 5)
    assert system.readyz(url).status_code == 200 and chat(url, KEY) == 200
    assert system.upsert(OTHER_KEY, "pat").status_code == 202
    assert chat(url, OTHER_KEY) == 200
    assert system.keys_path.read_bytes() == invalid
    replace_file(system.keys_path, GOOD_FILE)

    def both_keys_written() -> bool:
        return len(orjson.loads(system.keys_path.read_bytes())["keys"]) == 2

    wait_until(both_keys_written, 5, what="the admin change written once the file is fixed")
    assert logger_view(system, url)["keys_file"] == "ok" and chat(url, KEY) == 200


# Row 5: disk errors named, short writes impossible.

KEYS_LIMIT = 16 << 10
EVENTS_LIMIT = 24 << 10


def test_keys_json_past_a_full_disk_keeps_the_old_file_and_says_so(system: System):
    """The new keys.json would cross the file size limit: the write is short, then fails. The
    old file stays byte for byte, no temporary file is left, the admin call answers 202, the
    log and /readyz name the disk error, --check fails; with space back, the change is
    written."""
    entries = [
        {"api_key": f"bsk-hardening-bulk-{index:04}", "user_id": "bulk", "note": "n" * 4000}
        for index in range(3)
    ]
    original = orjson.dumps({"keys": [*orjson.loads(GOOD_FILE)["keys"], *entries]})
    assert len(original) < KEYS_LIMIT
    system.keys_path.write_bytes(original)
    system.start_logger(preexec=file_size_limit(KEYS_LIMIT))
    url = system.start_proxy()
    assert system.upsert(OTHER_KEY, "pat", note="m" * 7000).status_code == 202
    assert chat(url, OTHER_KEY) == 200
    wait_until(lambda: logger_view(system, url)["disk"] != "ok", 5, what="the disk error shown")
    assert logger_view(system, url)["disk"].startswith("cannot write keys.json: [Errno 27]")
    assert "cannot write keys.json: [Errno 27] File too large" in system.logger.log()
    assert system.keys_path.read_bytes() == original
    assert [path.name for path in system.data_dir.iterdir() if path.name.endswith(".tmp")] == []
    assert system.logger_check() == 1
    system.logger.stop()
    system.start_logger()

    def written() -> bool:
        return "pat" in [
            key["user_id"] for key in orjson.loads(system.keys_path.read_bytes())["keys"]
        ]

    wait_until(written, START_TIMEOUT, what="the admin change in keys.json")
    wait_until(lambda: system.logger_check() == 0, 5, what="a healthy logger")
    assert logger_view(system, url)["disk"] == "ok"


def test_events_past_a_full_disk_wait_in_redis_and_none_is_lost(system: System):
    """Appends past the file size limit fail (the first one short): named in the log and in
    /readyz, --check fails, nothing is acknowledged; a logger with space again writes every
    request exactly once."""
    system.start_logger(preexec=file_size_limit(EVENTS_LIMIT))
    url = system.start_proxy()
    assert system.upsert(KEY, "olga").status_code == 200
    outcomes = run_load([url], KEY, 60, 30.0, ("openai", "anthropic"))
    assert all(outcome.complete for outcome in outcomes)
    wait_until(lambda: logger_view(system, url)["disk"] != "ok", 10, what="the disk error")
    assert logger_view(system, url)["disk"].startswith("cannot append to events.jsonl: [Errno 27]")
    assert "cannot append to events.jsonl: [Errno 27] File too large" in system.logger.log()
    assert system.logger_check() == 1
    with redis.Redis.from_url(system.env["REDIS_URL"]) as client:
        pending = client.xpending(EVENTS_STREAM, LOGGER_GROUP)["pending"]
        waiting = client.xlen(EVENTS_STREAM)
    assert pending > 0 and waiting > 0  # read but unacknowledged, and not deleted
    before = system.events_path.read_bytes().count(b"\n")  # whole lines, then a partial one
    system.logger.signal(signal.SIGTERM)
    assert system.logger.wait(5) == 0
    system.start_logger()
    events = system.wait_events(len(outcomes), timeout=START_TIMEOUT)
    written = Counter(event["request_id"] for event in events)
    assert written == Counter(outcome.request_id for outcome in outcomes)
    print(
        f"\nFAULT-REPORT | {len(outcomes)} sent | {before} lines before the limit, "
        f"{waiting} entries waiting in Redis | {len(events)} recorded | 0 lost | "
        f"{sum(n > 1 for n in written.values())} duplicates | "
        f"{sum(not o.complete for o in outcomes)} client-visible errors"
    )
    wait_until(lambda: system.logger_check() == 0, 5, what="a healthy logger")
