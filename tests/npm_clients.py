"""Real command-line clients shipped as npm packages (Claude Code, Codex CLI): installed once,
pinned, into a cache directory outside the repo, and found again there.

Each package ships a native binary inside the registry package, so `npm install` needs nothing
but the npm registry. A version bump is one constant in the client's test module.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 420


@dataclass(frozen=True)
class NpmClient:
    package: str
    version: str
    cache_dir: Path
    commands: Callable[[Path], Sequence[list[str]]]
    """The argvs that may run the installed client, given the cache dir, best first."""
    version_env: dict[str, str]
    """Environment for `--version` (the offline switches)."""

    def version_of(self, argv: list[str]) -> str | None:
        """The version `argv --version` prints (the first word that starts with a digit)."""
        with (
            contextlib.suppress(OSError, subprocess.SubprocessError),
            tempfile.TemporaryDirectory() as home,
        ):
            done = subprocess.run(
                [*argv, "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": home,
                    **self.version_env,
                },
            )
            words = done.stdout.split() if done.returncode == 0 else []
            return next((word for word in words if word[:1].isdigit()), None)
        return None

    def installed(self) -> list[str] | None:
        for argv in self.commands(self.cache_dir):
            if Path(argv[-1]).exists() and self.version_of(argv) == self.version:
                return argv
        return None

    def install(self) -> list[str]:
        """The command running the pinned version, `npm install`ed first when missing (one
        install at a time into the cache dir)."""
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        with (self.cache_dir.parent / f"{self.cache_dir.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (argv := self.installed()) is None:
                self._npm_install()
                argv = self.installed()
        if argv is None:
            pytest.fail(f"{self.package}@{self.version} installed but `--version` fails")
        return argv

    def _npm_install(self) -> None:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: it is needed for {self.package}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        argv = [npm, "install", "--prefix", str(self.cache_dir), "--no-fund", "--no-audit"]
        argv.append(f"{self.package}@{self.version}")
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(argv)}` took more than {INSTALL_TIMEOUT} s")
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")


def cache_dir(env_name: str, default_name: str) -> Path:
    configured = os.environ.get(env_name)
    return Path(configured) if configured else Path.home() / ".cache" / "b23" / default_name
