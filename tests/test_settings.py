"""Settings: defaults of the original README, and one clear line for a bad configuration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.settings import Settings
from tests.processes import ROOT

ORIGINAL_README_DEFAULTS = {
    "data_dir": "data",
    "port": 8866,
    "max_log_chunks": 50,
    "max_log_field_size": 2000,
    "full_trace_logging": False,
}


def test_defaults_of_the_original_readme(monkeypatch):
    monkeypatch.setenv("ADMIN_TOKEN", "a" * 20)
    settings = Settings(_env_file=None)
    for name, value in ORIGINAL_README_DEFAULTS.items():
        assert str(getattr(settings, name)) == str(value)


@pytest.mark.parametrize(
    ("module", "env", "expected"),
    [
        ("proxy_service.main", {}, "ADMIN_TOKEN is required"),
        ("logger_service", {}, "ADMIN_TOKEN is required"),
        ("proxy_service.main", {"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN must be at least 16"),
        ("proxy_service.main", {"ADMIN_TOKEN": "a" * 20, "PORT": "eighty"}, "PORT "),
        (
            "proxy_service.main",
            {"ADMIN_TOKEN": "a" * 20, "UPSTREAM_BASE_URL": "ftp://x"},
            "UPSTREAM_BASE_URL must start with http",
        ),
    ],
)
def test_bad_configuration_stops_with_one_line(tmp_path, module, env, expected):
    argv = [
        sys.executable,
        "-c",
        f"import runpy; runpy.run_module('{module}', run_name='__main__')",
    ]
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}
    result = subprocess.run(
        argv, env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0] and lines[0].startswith("invalid configuration:")
