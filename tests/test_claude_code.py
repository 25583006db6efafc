"""End to end with Claude Code itself: `claude -p` through a real proxy to the fake upstream.

The fake upstream's `cc-tool-loop` model (see tests/fake_upstream.py) plays a two-turn tool loop:
it asks for the Bash tool to `cat b23-marker.txt`, then answers `TOOL-LOOP-DONE: <tool output>`;
`MODEL_MAP=*=cc-tool-loop` sends every model Claude Code asks for (main loop, titles, haiku) there.
It runs by default (about 2 s for `claude -p`, plus a one-time npm install of about 10 s).

Claude Code is the npm package @anthropic-ai/claude-code (a native binary shipped inside the
registry package), installed outside the repo:

- CLAUDE_CODE_BIN=/path/to/claude uses that binary;
- else $B23_CLAUDE_CODE_DIR (default ~/.cache/b23/claude-code) is used, and the pinned version
  (B23_CLAUDE_CODE_VERSION, default below) is `npm install`ed there when it is missing;
- B23_SKIP_CLAUDE_CODE=1 skips the Claude Code test when it is not installed (no npm install).

Claude Code runs offline but for the proxy: telemetry, error reporting, the auto-updater and
non-essential traffic off, a fresh HOME, a fresh working directory. Its debug log
(`claude-debug.log`), the proxy's and the logger's logs stay in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import anthropic
import pytest

from tests.fake_upstream import TOOL_LOOP_DONE, TOOL_LOOP_FILE, TOOL_LOOP_MODEL, TOOL_LOOP_OTHER
from tests.npm_clients import NpmClient, cache_dir
from tests.system import System, running_system

pytestmark = pytest.mark.timeout(600)

# The newest release (npm view @anthropic-ai/claude-code version); it ships a native binary, so
# Node 20 runs it though its `engines` ask for more. A version bump is this line.
DEFAULT_VERSION = "2.1.332"
PACKAGE = "@anthropic-ai/claude-code"
KEY = "bsk-claude-code-e2e-0001"
RUN_TIMEOUT = 120
OFFLINE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
}


def _commands(cache: Path) -> list[list[str]]:
    """The package's `claude` (the native binary its postinstall put in place), else its Node
    wrapper if that step did not run."""
    package = cache / "node_modules" / PACKAGE
    return [
        [str(cache / "node_modules" / ".bin" / "claude")],
        ["node", str(package / "cli-wrapper.cjs")],
    ]


@pytest.fixture(scope="session")
def claude() -> list[str]:
    """The command that runs Claude Code; installed into the cache dir when missing."""
    client = NpmClient(
        PACKAGE,
        os.environ.get("B23_CLAUDE_CODE_VERSION") or DEFAULT_VERSION,
        cache_dir("B23_CLAUDE_CODE_DIR", "claude-code"),
        _commands,
        OFFLINE_ENV,
    )
    if os.environ.get("CLAUDE_CODE_BIN"):
        argv = [os.environ["CLAUDE_CODE_BIN"]]
        if client.version_of(argv) is None:
            pytest.fail(f"CLAUDE_CODE_BIN={argv[0]} does not run `--version`")
        return argv
    if os.environ.get("B23_SKIP_CLAUDE_CODE") == "1" and (argv := client.installed()) is None:
        pytest.skip(f"B23_SKIP_CLAUDE_CODE=1 and {PACKAGE} {client.version} is not installed")
    return client.install()


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("claude-code")
    with running_system(
        redis_url, fake_upstream_url, root, 1, MODEL_MAP=f"*={TOOL_LOOP_MODEL}"
    ) as system:
        assert system.upsert(KEY, "claudia").status_code == 200
        yield system


def claude_env(base_url: str, api_key: str, home: Path, how: str = "env") -> dict[str, str]:
    """Only what Claude Code needs: none of the caller's ANTHROPIC_*, CLAUDE_* or proxy vars.
    `how` the gateway is given, as the README's guide says: `env` (ANTHROPIC_BASE_URL and
    ANTHROPIC_API_KEY in the environment) or `settings` (ANTHROPIC_BASE_URL and
    ANTHROPIC_AUTH_TOKEN in ~/.claude/settings.json's `env`)."""
    gateway = {"ANTHROPIC_BASE_URL": base_url}
    if how == "settings":
        settings = {"env": {**gateway, "ANTHROPIC_AUTH_TOKEN": api_key, **OFFLINE_ENV}}
        (home / ".claude").mkdir(exist_ok=True)
        (home / ".claude" / "settings.json").write_text(json.dumps(settings))
        gateway = {}
    else:
        gateway["ANTHROPIC_API_KEY"] = api_key
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        **gateway,
        **OFFLINE_ENV,
    }


def test_tool_loop_model_plays_both_turns(system: System, fake_upstream):
    """The fake's `cc-tool-loop` model itself, streamed and not, through the proxy."""
    client = anthropic.Anthropic(base_url=system.url, api_key=KEY, max_retries=0)
    bash = {"name": "Bash", "input_schema": {"type": "object"}}
    ask = [{"role": "user", "content": "go"}]
    for stream in (False, True):
        params = {"model": "claude-x", "max_tokens": 64, "messages": ask, "tools": [bash]}
        if stream:
            with client.messages.stream(**params) as events:
                first = events.get_final_message()
        else:
            first = client.messages.create(**params)
        [call] = first.content
        assert call.type == "tool_use" and call.name == "Bash"
        assert call.input["command"] == f"cat {TOOL_LOOP_FILE}"
        result = {"type": "tool_result", "tool_use_id": call.id, "content": "marker-42"}
        history = [*ask, {"role": "assistant", "content": first.content}]
        history.append({"role": "user", "content": [result]})
        final = client.messages.create(**{**params, "messages": history})
        assert final.content[0].text == f"{TOOL_LOOP_DONE}: marker-42"
    title = {"type": "json_schema", "schema": {"type": "object", "required": ["title"]}}
    side = client.messages.create(
        model="claude-haiku",
        max_tokens=64,
        messages=ask,
        extra_body={"output_config": {"format": title}},
    )
    assert json.loads(side.content[0].text) == {"title": TOOL_LOOP_OTHER}


@pytest.mark.parametrize("how", ["env", "settings"])
def test_claude_code_two_turn_tool_loop(
    claude: list[str], system: System, fake_upstream, tmp_path: Path, how: str
):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    marker = f"b23-{uuid.uuid4().hex}"
    (work / TOOL_LOOP_FILE).write_text(marker + "\n")
    debug_log = tmp_path / "claude-debug.log"
    before = len(system.events())
    argv = [
        *claude,
        "-p",
        f"Run `cat {TOOL_LOOP_FILE}` with the Bash tool and tell me what it printed.",
        "--output-format",
        "json",
        # Not --dangerously-skip-permissions: Claude Code refuses it as root (CI runs as root).
        "--allowedTools",
        "Bash",
        "--max-turns",
        "4",
        "--debug-file",
        str(debug_log),
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            cwd=work,
            env=claude_env(system.url, KEY, home, how),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"claude -p ran over {RUN_TIMEOUT} s; debug log {debug_log}\n{timeout}")
    elapsed = time.monotonic() - started
    context = (
        f"claude exited {done.returncode} after {elapsed:.1f} s; debug log {debug_log}\n"
        f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}\n"
        f"proxy and logger:\n{system.logs()[-3000:]}"
    )
    assert done.returncode == 0, context
    result = json.loads(done.stdout)
    assert result["type"] == "result" and result["is_error"] is False, context
    assert result["result"] == f"{TOOL_LOOP_DONE}: {marker}", context
    assert result["num_turns"] == 2, context

    # The tool really ran: only `cat` in the working directory knows the marker, and its output
    # came back as the tool message answering the Bash call.
    received = [entry["body"] for entry in fake_upstream.received()]
    assert all(body["model"] == TOOL_LOOP_MODEL for body in received)
    answered = []
    for body in received:
        messages = body["messages"]
        for call, reply in pairwise(messages):
            if reply["role"] == "tool" and marker in str(reply["content"]):
                assert call["role"] == "assistant", messages
                [tool_call] = call["tool_calls"]
                assert tool_call["function"]["name"] == "Bash"
                assert reply["tool_call_id"] == tool_call["id"]
                answered.append(reply)
    assert answered, context

    # One usage event per /v1/messages request, each forwarded once, all good.
    events = system.wait_events(before + len(received))[before:]
    assert [event["protocol"] for event in events] == ["anthropic_messages"] * len(received)
    assert {event["client_app"] for event in events} == {"claude-code"}
    assert {event["status_code"] for event in events} == {200}, context
    assert {event["user_id"] for event in events} == {"claudia"}
