"""The version the code reports (`/healthz`, `--version`): the installed package's, which is
pyproject.toml's, so there is one place to bump it (and CHANGELOG.md says what changed)."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "b23-llm-proxy"


def version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
