"""Start-up hints for settings that are valid but wrong where the proxy runs.

The one that bites newcomers: an upstream on the host's 127.0.0.1 (a local vLLM, Ollama, the
bench's fake) named as `http://127.0.0.1:...` in `.env`. Inside a container that address is the
container itself, so every request fails with "upstream unreachable" and nothing says why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

CONTAINER_MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))
"""Files Docker and podman put in every container."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def in_container(markers: tuple[Path, ...] = CONTAINER_MARKERS) -> bool:
    return any(marker.exists() for marker in markers)


def loopback_upstream_hint(upstream_base_url: str, containerised: bool) -> str | None:
    """The warning to log, or None when the upstream's address means what it says."""
    host = httpx.URL(upstream_base_url).host
    if not containerised or host not in LOOPBACK_HOSTS:
        return None
    return (
        f"UPSTREAM_BASE_URL points at {host}, which inside this container is the container "
        "itself: an upstream on the host needs the host's address (host.docker.internal "
        "with Docker, which the compose file maps; host.containers.internal with Podman), "
        "and must listen on an address containers reach"
    )


def warn_about_loopback_upstream(upstream_base_url: str) -> None:
    if hint := loopback_upstream_hint(upstream_base_url, in_container()):
        log.warning("%s", hint)
