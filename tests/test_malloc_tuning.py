"""LARGE_BLOCK_BYTES: glibc's mmap threshold fixed at start-up, or left alone."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

from proxy_service.malloc_tuning import map_large_blocks


def test_off_does_nothing() -> None:
    assert map_large_blocks(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_threshold() -> None:
    """In a child process: the test process keeps glibc's own behaviour."""
    code = "from proxy_service.malloc_tuning import map_large_blocks as m; assert m(65536)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_threshold_goes_to_mallopt(monkeypatch) -> None:
    calls = []

    class Libc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert map_large_blocks(65536) is True
    assert calls == [(-3, 65536)]


def test_a_library_without_mallopt_is_left_alone(monkeypatch) -> None:
    class NoMallopt:
        pass

    monkeypatch.setattr(ctypes, "CDLL", lambda name: NoMallopt())
    assert map_large_blocks(65536) is False
