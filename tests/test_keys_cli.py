"""`python -m proxy_service.keys`: the first key without curl, against a real proxy and logger.
The printed key works, list shows it (never the key itself), and refusals say why."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import openai
import pytest

from tests.processes import ROOT
from tests.system import System, running_system


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    with running_system(redis_url, fake_upstream_url, tmp_path_factory.mktemp("keys-cli")) as s:
        yield s


def cli(system: System, *args: str, **env: str) -> subprocess.CompletedProcess:
    port = system.url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, "-m", "proxy_service.keys", *args],
        env={**system.env, "PORT": port, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_prints_a_key_that_works(system: System) -> None:
    created = cli(system, "create", "--user", "alice", "--rpm", "100")
    assert created.returncode == 0, created.stderr
    key = re.search(r"^    (bsk-\S+)$", created.stdout, re.M).group(1)
    assert f'OpenAI(base_url="{system.url}/v1", api_key="{key}")' in created.stdout
    client = openai.OpenAI(base_url=system.url + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    listed = cli(system, "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and key not in listed.stdout


def test_a_wrong_admin_token_is_refused_with_the_reason(system: System) -> None:
    refused = cli(system, "list", ADMIN_TOKEN="a-wrong-admin-token-0000")
    assert refused.returncode == 1
    assert "403" in refused.stderr and "x-admin-token" in refused.stderr


def test_a_proxy_that_is_not_there_is_said_so(system: System) -> None:
    missing = cli(system, "--url", "http://127.0.0.1:9", "--wait", "0.5", "list")
    assert missing.returncode == 1 and "cannot reach the proxy" in missing.stderr


def test_a_bad_limit_is_refused_by_the_proxy(system: System) -> None:
    refused = cli(system, "create", "--user", "bob", "--rpm", "0")
    assert refused.returncode == 1 and "400" in refused.stderr and "rpm_limit" in refused.stderr
