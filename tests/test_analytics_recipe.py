"""docs/analytics.md's recipe (Vector tailing the event files into ClickHouse) against what the
logger really writes. Vector and ClickHouse cannot run here, so this checks what can be checked
without them: the doc's vector.toml parses and is wired as the doc says, its include glob takes
every event file name the logger makes (eventfiles.py's naming, and a live data directory with
rotated and sharded files) and nothing else, and every top-level field of real lines is an
insertable column of the doc's CREATE TABLE, of a type its values fit, with every object turned
into JSON text by the remap."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import orjson
import pytest

from logger_service.eventfiles import SHARD_FILE, rotation_target
from logger_service.records import record_line
from proxy_service.event_bounds import encode_event
from shared.settings import Settings
from tests.processes import ROOT, RedisServer, wait_until
from tests.system import System

DOC = ROOT / "docs" / "analytics.md"
KEY = "bsk-analytics-recipe-01"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
COLUMN = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+(.+?),?\s*(?:--.*)?$")
INSERTABLE_NOT = ("MATERIALIZED", "ALIAS", "EPHEMERAL")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == kind]


def vector_config() -> dict:
    [toml] = blocks("toml")
    return tomllib.loads(toml)


def table_columns() -> dict[str, str]:
    """Column name -> its type and options, from the CREATE TABLE of the ReplacingMergeTree."""
    [ddl] = [sql for sql in blocks("sql") if "ReplacingMergeTree" in sql]
    body = ddl.split("CREATE TABLE", 1)[1]
    body = body[body.index("(") + 1 : body.index("\nENGINE")]
    body = body[: body.rindex(")")]
    columns = {}
    for line in body.splitlines():
        if match := COLUMN.match(line):
            columns[match[1]] = match[2]
    assert columns, "no columns parsed"
    return columns


def insertable(columns: dict[str, str]) -> dict[str, str]:
    return {n: t for n, t in columns.items() if not any(w in t for w in INSERTABLE_NOT)}


def remap_encoded(config: dict) -> set[str]:
    """Fields the remap turns into JSON text (`encode_json(.field)`)."""
    [remap] = [t for t in config["transforms"].values() if t["type"] == "remap"]
    return set(re.findall(r"encode_json\(\.(\w+)\)", remap["source"]))


def include_name_patterns(config: dict) -> list[str]:
    [source] = [s for s in config["sources"].values() if s["type"] == "file"]
    assert all("/" in p for p in source["include"]), "absolute paths, as Vector wants"
    return [p.rsplit("/", 1)[1] for p in source["include"]]


def included(name: str, patterns: list[str]) -> bool:
    """Vector's `*` matches within one path segment: fnmatch on the file name is the same."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def test_vector_toml_is_wired_source_remap_sink_with_acknowledgements():
    config = vector_config()
    [(source_id, source)] = config["sources"].items()
    assert source["type"] == "file"
    assert source["fingerprint"]["strategy"] == "checksum", "follow renames by content"
    assert source["read_from"] == "beginning"
    assert source["max_line_bytes"] >= Settings.model_fields["log_max_record_bytes"].default
    [(remap_id, remap)] = config["transforms"].items()
    assert remap["type"] == "remap" and remap["inputs"] == [source_id]
    assert "parse_json!(string!(.message))" in remap["source"]
    sink = config["sinks"]["clickhouse"]
    assert sink["type"] == "clickhouse" and sink["inputs"] == [remap_id]
    assert sink["acknowledgements"]["enabled"] is True
    assert sink["batch"]["max_events"] >= 1000 and sink["batch"]["timeout_secs"] <= 1
    assert sink["skip_unknown_fields"] is True
    assert sink["table"] == "usage_events" and sink["database"] == "b23"
    assert "CREATE TABLE IF NOT EXISTS b23.usage_events" in DOC.read_text()
    rejected = [s for s in config["sinks"].values() if s["inputs"] == [f"{remap_id}.dropped"]]
    assert remap["reroute_dropped"] is True and len(rejected) == 1


def test_include_glob_takes_every_name_the_logger_gives_event_files(tmp_path: Path):
    patterns = include_name_patterns(vector_config())
    settings = Settings(_env_file=None, admin_token="t" * 16, data_dir=tmp_path, event_shards=12)
    current = [settings.event_file(shard) for shard in (0, 1, 11)]
    names = [path.name for path in current]
    for path in current:
        first = rotation_target(path, 1_764_670_500.0)
        first.touch()
        second = rotation_target(path, 1_764_670_500.0)  # a second rotation within the second
        names += [first.name, second.name]
    assert "events-20251202T101500.jsonl" in names and "events-11-20251202T101500-2.jsonl" in names
    assert all(SHARD_FILE.fullmatch(name) for name in names)
    assert [name for name in names if not included(name, patterns)] == []
    others = [
        "keys.json",
        "keys.json.invalid-20251202T101500",
        "events-20251202T101500.rollup.json",
        "events.jsonl.tmp",
        ".keys.json.tmp",
    ]
    assert [name for name in others if included(name, patterns)] == []


def real_lines(data_dir: Path) -> list[dict]:
    return [
        orjson.loads(line)
        for path in sorted(data_dir.glob("events*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def send_mix(url: str) -> int:
    """Requests of every shape the routes record: chat and messages, streamed and not."""
    headers = {"authorization": f"Bearer {KEY}"}
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi " * 200}]}
    messages = {"model": "claude-test", "max_tokens": 64, "messages": chat["messages"]}
    sent = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(4):
            for path, body in (("/v1/chat/completions", chat), ("/v1/messages", messages)):
                for stream in (False, True):
                    reply = client.post(path, json={**body, "stream": stream})
                    assert reply.status_code == 200, reply.text
                    sent += 1
    return sent


def other_shapes() -> list[dict]:
    """Lines the logger writes for rarer events, made by its own code: a compacted event with a
    cut stream, and an entry it cannot process (written unprocessed)."""
    settings = Settings(_env_file=None, admin_token="t" * 16)
    event = {
        "request_id": "req_compacted",
        "protocol": "anthropic_messages",
        "client_app": "claude-code",
        "user_id": "u",
        "key_id": "k",
        "upstream_id": None,
        "model": "m",
        "started_at_ms": 1,
        "ended_at_ms": 2,
        "latency_ms": 1,
        "status_code": 200,
        "error": None,
        "prompt": {"messages": []},
        "response_stream": "data: {}\n\n",
        "response_stream_cut": {"kept_bytes": 10, "total_bytes": 20},
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "tokens": None,
    }
    encoded = encode_event(event)
    assert encoded.compact("Redis stream past STREAM_COMPACT_BYTES")
    entries = [{b"e": encoded.data()}, {b"e": b'{"request_id":"req_broken", "usage": ['}]
    lines = [record_line(f"1-{n}", fields, settings, None)[1] for n, fields in enumerate(entries)]
    return [orjson.loads(line) for line in lines]


def fits(value: object, column_type: str, unprocessed: bool) -> bool:
    """Whether a JSON value goes into a ClickHouse column of this type as JSONEachRow reads it.
    A null goes into a Nullable column; into another one only on an unprocessed line (whose
    event may lack the field), as the column's default (input_format_null_as_default)."""
    if value is None:
        return "Nullable" in column_type or unprocessed
    if "String" in column_type:
        return isinstance(value, str)
    if column_type.startswith("Bool"):
        return isinstance(value, bool)
    if match := re.match(r"(U?)Int(\d+)", column_type):
        unsigned, bits = match[1] == "U", int(match[2])
        low, high = (0, 2**bits) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1))
        return type(value) is int and low <= value < high
    raise AssertionError(f"no rule for {column_type}")


@pytest.fixture
def live_lines(private_redis: RedisServer, fake_upstream_url: str, tmp_path: Path):
    """A proxy and a logger (two event shards, rotation at 1 KiB): the data directory and its
    lines once every request is in it."""
    shards = {"EVENT_SHARDS": "2", "EVENTS_ROTATE_BYTES": "1024"}
    system = System(private_redis.url, fake_upstream_url, tmp_path / "system", **shards)
    try:
        system.start_logger()
        system.start_proxy()
        assert system.upsert(KEY, "analyst").status_code == 200
        sent = send_mix(system.url)
        wait_until(lambda: len(real_lines(system.data_dir)) >= sent, 30, what="every line")
        yield system.data_dir, real_lines(system.data_dir), sent
    finally:
        system.stop()


def test_a_live_data_directory_is_taken_whole_and_every_field_is_a_column(live_lines):
    data_dir, lines, sent = live_lines
    config = vector_config()
    patterns = include_name_patterns(config)

    names = sorted(path.name for path in data_dir.iterdir())
    event_files = [name for name in names if SHARD_FILE.fullmatch(name)]
    print(f"\nANALYTICS-FILES | {names}")
    assert any("-" in name and name.startswith("events-1") for name in event_files), names
    assert any(re.fullmatch(r"events-\d{8}T\d{6}(-\d+)?\.jsonl", n) for n in event_files), names
    assert [name for name in names if included(name, patterns)] == event_files
    assert len(lines) == sent and len({line["request_id"] for line in lines}) == sent

    columns = table_columns()
    writable = insertable(columns)
    encoded = remap_encoded(config)
    every = lines + other_shapes()
    assert any(line.get("compacted") for line in every)
    assert any("unprocessed" in line for line in every)
    fields = {name for line in every for name in line}
    print(f"\nANALYTICS-FIELDS | {len(every)} lines | {sorted(fields)}")
    assert sorted(fields - set(writable)) == [], "fields with no insertable column"
    for line in every:
        for name, value in line.items():
            if isinstance(value, dict | list):
                assert name in encoded, f"{name} holds an object: the remap must encode it"
            if name in encoded:
                assert "String" in writable[name], f"{name} is JSON text: a String column"
            else:
                unprocessed = "unprocessed" in line
                assert fits(value, writable[name], unprocessed), (name, value, writable[name])
    assert encoded <= set(writable), "the remap encodes a field the table does not have"
