"""End to end with Codex CLI itself: `codex exec --json` through a real proxy's /v1/responses to
the fake Chat Completions upstream, in a two-turn shell-tool loop.

The fake upstream's `cc-tool-loop` model (tests/fake_upstream.py) calls Codex's shell tool with
`cat b23-marker.txt`, then answers `TOOL-LOOP-DONE: <what the tool returned>`. Codex is the npm
package @openai/codex (a native binary inside the registry package), pinned below and installed
into $B23_CODEX_DIR (default ~/.cache/b23/codex) when missing; B23_SKIP_CODEX=1 skips the test
when it is not installed. Codex runs offline but for the proxy: a temporary CODEX_HOME with a
custom provider, analytics, feedback, plugins, apps and update checks off, no retries.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_upstream import TOOL_LOOP_DONE, TOOL_LOOP_FILE, TOOL_LOOP_MODEL
from tests.npm_clients import NpmClient, cache_dir
from tests.processes import ROOT
from tests.system import System, running_system

pytestmark = pytest.mark.timeout(600)

VERSION = "0.171.0"
PACKAGE = "@openai/codex"
KEY = "bsk-codex-cli-e2e-0001"
RUN_TIMEOUT = 120
CONFIG = """
model = "{model}"
model_provider = "b23"
approval_policy = "never"
sandbox_mode = "danger-full-access"
web_search = "disabled"
check_for_update_on_startup = false

[model_providers.b23]
name = "b23 gateway"
base_url = "{base_url}/v1"
env_key = "B23_API_KEY"
wire_api = "responses"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0

[history]
persistence = "none"

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
apps = false
"""


@pytest.fixture(scope="session")
def codex() -> list[str]:
    client = NpmClient(
        PACKAGE,
        os.environ.get("B23_CODEX_VERSION") or VERSION,
        cache_dir("B23_CODEX_DIR", "codex"),
        lambda cache: [[str(cache / "node_modules" / ".bin" / "codex")]],
        {},
    )
    if os.environ.get("B23_SKIP_CODEX") == "1" and client.installed() is None:
        pytest.skip(f"B23_SKIP_CODEX=1 and {PACKAGE} {client.version} is not installed")
    return client.install()


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("codex")
    with running_system(redis_url, fake_upstream_url, root, 1) as system:
        assert system.upsert(KEY, "cody").status_code == 200
        yield system


def codex_env(home: Path, codex_home: Path) -> dict[str, str]:
    """Only what Codex needs: none of the caller's OPENAI_*, CODEX_* or proxy variables."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "B23_API_KEY": KEY,
        "LANG": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def test_codex_exec_two_turn_shell_loop(codex, system: System, fake_upstream, tmp_path: Path):
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(
        CONFIG.format(model=TOOL_LOOP_MODEL, base_url=system.url)
    )
    marker = f"b23-{uuid.uuid4().hex}"
    (work / TOOL_LOOP_FILE).write_text(marker + "\n")
    before = len(system.events())
    argv = [
        *codex,
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--color",
        "never",
        "--json",
        "--dangerously-bypass-approvals-and-sandbox",
        f"Run `cat {TOOL_LOOP_FILE}` and tell me what it printed.",
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=work,
            env=codex_env(home, codex_home),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"codex exec ran over {RUN_TIMEOUT} s\n{timeout}\n{system.logs()[-3000:]}")
    context = (
        f"codex exited {done.returncode}\nstdout: {done.stdout[-4000:]}\n"
        f"stderr: {done.stderr[-3000:]}\nproxy and logger:\n{system.logs()[-3000:]}"
    )
    assert done.returncode == 0, context
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [event["type"] for event in events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds, context
    items = [event["item"] for event in events if event["type"] == "item.completed"]
    commands = [item for item in items if item.get("type") == "command_execution"]
    assert commands and marker in commands[0].get("aggregated_output", ""), context
    messages = [item["text"] for item in items if item.get("type") == "agent_message"]
    assert messages and messages[-1].startswith(TOOL_LOOP_DONE) and marker in messages[-1]

    # The tool's output really came back upstream, as the tool message answering the call.
    received = [entry["body"] for entry in fake_upstream.received() if "messages" in entry["body"]]
    answered = [
        message
        for body in received
        for message in body["messages"]
        if message.get("role") == "tool" and marker in str(message.get("content"))
    ]
    assert answered, context

    # One record per /v1/responses request, exact tokens, recognised as Codex.
    records = system.wait_events(before + len(received))[before:]
    assert {record["protocol"] for record in records} == {"openai_responses"}
    assert {record["status_code"] for record in records} == {200}, context
    assert {record["user_id"] for record in records} == {"cody"}
    exact = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cached_tokens": 0}
    assert all(record["usage"] == exact for record in records), records
    assert {record["client_app"] for record in records} == {"codex"}
    # What Codex itself counted: the usage of every response of the turn, added up.
    [completed] = [event for event in events if event["type"] == "turn.completed"]
    assert completed["usage"]["input_tokens"] == 11 * len(records)
    assert completed["usage"]["output_tokens"] == 7 * len(records)


def test_the_readme_gives_the_configuration_this_test_runs() -> None:
    """README's config.toml for Codex is what Codex runs with here, but for the host and
    the test-only switches (no retries, analytics, history...): a change to one without the
    other fails."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```toml\n", readme.index("Codex CLI (`$CODEX_HOME/config.toml`"))
    documented = tomllib.loads(readme[start + 8 : readme.index("```", start + 8)])
    ours = tomllib.loads(CONFIG.format(model="m", base_url="http://127.0.0.1:8866"))
    assert documented["model_provider"] == ours["model_provider"] == "b23"
    provider, tested = documented["model_providers"]["b23"], ours["model_providers"]["b23"]
    assert provider == {key: tested[key] for key in provider}
    assert provider["base_url"].endswith("/v1") and provider["wire_api"] == "responses"
