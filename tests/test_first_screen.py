"""The README's first screen, run as a newcomer would run it: the no-Docker commands block as
written, in a fresh folder with `.env` made from `.env.example`, then the printed key used by the
openai SDK. Changed only so the test is private: a free port for Redis and for the proxy, this
interpreter for `.venv/bin/python` (the package is installed already), the fake upstream. The
Compose block is checked against the compose file (the engine is not needed)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import yaml

from tests.processes import ADMIN_TOKEN, ROOT, free_port

README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> list[str]:
    """The lines of the first ```bash block after `marker`, comments dropped."""
    start = README.index(marker)
    body = README[README.index("```bash\n", start) + 8 :]
    lines = body[: body.index("```")].splitlines()
    kept = [line.split("  #")[0].rstrip() for line in lines]
    return [line for line in kept if line and not line.startswith("#")]


def test_the_no_docker_block_gives_a_key_that_works(fake_upstream_url: str, tmp_path: Path):
    lines = block_after("Without Docker, the same `.env`")
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e .")
    assert lines[-1] == ".venv/bin/python -m proxy_service.keys create --user alice"
    redis_port, proxy_port = free_port(), free_port()
    env_file = (ROOT / ".env.example").read_text()
    env_file = env_file.replace("ADMIN_TOKEN=change-me", f"ADMIN_TOKEN={ADMIN_TOKEN}")
    env_file = env_file.replace(
        "UPSTREAM_BASE_URL=https://api.openai.com/v1", f"UPSTREAM_BASE_URL={fake_upstream_url}"
    )
    env_file += f"\nREDIS_URL=redis://127.0.0.1:{redis_port}/0\nPORT={proxy_port}\n"
    env_file += "HOST=127.0.0.1\n"
    (tmp_path / ".env").write_text(env_file)
    script = "\n".join(lines[1:]).replace(".venv/bin/python", sys.executable)
    script = script.replace("redis-cli ping", f"redis-cli -p {redis_port} ping")
    script = script.replace("--port 6379", f"--port {redis_port} --dir {tmp_path}")
    clean = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith(("ADMIN", "UPSTREAM", "REDIS", "PORT", "HOST", "DATA_DIR"))
    }
    run = subprocess.Popen(
        ["bash", "-c", f"set -e\n{script}\nwait"],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background jobs share its process group: stopped together
    )
    try:
        key = wait_for_key(run)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key=key)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        assert (tmp_path / "data" / "keys.json").exists()
        dashboard_is_where_the_first_screen_says(proxy_port, key)
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)
        subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown", "nosave"], check=False)


def dashboard_is_where_the_first_screen_says(port: int, key: str) -> None:
    """The first screen's dashboard and /me addresses answer, and sign in with what it says."""
    first_screen = README[: README.index("\n---\n")]
    assert "http://127.0.0.1:8866/ui/" in first_screen and "`ADMIN_TOKEN`" in first_screen
    assert "http://127.0.0.1:8866/me/" in first_screen
    base = f"http://127.0.0.1:{port}"
    origin = {"Origin": base}
    signed = httpx.post(base + "/ui/login", data={"token": ADMIN_TOKEN}, headers=origin)
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/"
    mine = httpx.post(base + "/me/login", data={"api_key": key}, headers=origin)
    assert mine.status_code == 303 and mine.headers["location"] == "/me/"


def wait_for_key(run: subprocess.Popen) -> str:
    """The key the block's last line printed (its stdout, line by line)."""
    assert run.stdout is not None
    for line in run.stdout:
        found = re.fullmatch(r"    (bsk-\S+)", line.rstrip("\n"))
        if found:
            return found.group(1)
    raise AssertionError(f"no key printed; stderr: {run.stderr.read() if run.stderr else ''}")


def test_the_compose_block_matches_the_compose_file():
    lines = block_after("**Run it** with Docker Compose")
    assert lines == [
        "cp .env.example .env",
        "cp config/prices.example.toml config/prices.toml",
        "docker compose up --build -d",
        "docker compose exec proxy python -m proxy_service.keys create --user alice",
    ]
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["proxy"]["environment"]["PORT"] == "8866"
    for service in ("proxy", "logger"):  # the copied table is where both services read it
        assert "./config:/app/config:ro" in services[service]["volumes"]
        assert services[service]["environment"]["PRICES_FILE"] == "/app/config/prices.toml"
    assert (ROOT / "config" / "prices.example.toml").is_file()
    assert "ADMIN_TOKEN=change-me" in (ROOT / ".env.example").read_text()
    assert shutil.which("bash")
