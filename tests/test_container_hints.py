"""The start-up hint for an upstream on 127.0.0.1 when the proxy runs in a container."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_service.container_hints import in_container, loopback_upstream_hint


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"],
)
def test_a_loopback_upstream_in_a_container_gets_the_hint(url: str) -> None:
    hint = loopback_upstream_hint(url, containerised=True)
    assert hint is not None and "host.docker.internal" in hint


@pytest.mark.parametrize(
    ("url", "containerised"),
    [
        ("http://127.0.0.1:8000/v1", False),  # on the host, 127.0.0.1 is the host
        ("https://api.openai.com/v1", True),
        ("http://host.docker.internal:8000/v1", True),
        ("http://10.0.0.5:8000/v1", True),
    ],
)
def test_no_hint_where_the_address_means_what_it_says(url: str, containerised: bool) -> None:
    assert loopback_upstream_hint(url, containerised) is None


def test_containers_are_told_by_their_marker_files(tmp_path: Path) -> None:
    marker = tmp_path / ".dockerenv"
    assert in_container((marker,)) is False
    marker.touch()
    assert in_container((tmp_path / "missing", marker)) is True
