"""Request, message and tool ids come from the kernel's CSPRNG, not from `random`. Pure."""

from __future__ import annotations

import os
import random
import string

import pytest

from proxy_service.ids import POOL_BYTES, random_hex


@pytest.fixture
def constant_random(monkeypatch) -> None:
    """`random` made to give the same bits every time: ids must not notice."""
    monkeypatch.setattr(random, "getrandbits", lambda bits: 0)


def test_ids_are_hex_of_the_asked_length_and_unique_whatever_random_does(constant_random):
    for nbytes in (1, 12, 16, POOL_BYTES, POOL_BYTES + 1):
        value = random_hex(nbytes)
        assert len(value) == 2 * nbytes and set(value) <= set(string.hexdigits.lower())
    assert len({random_hex(12) for _ in range(100_000)}) == 100_000


def test_seeding_random_does_not_replay_the_ids():
    """With `random`, the same seed gave the same ids (and ~156 observed ids gave its state)."""
    random.seed(1)
    first = [random_hex(16) for _ in range(3)]
    random.seed(1)
    assert [random_hex(16) for _ in range(3)] != first


def test_a_forked_child_does_not_hand_out_its_parents_bytes(constant_random):
    random_hex(1)  # a pool with bytes left, which the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, random_hex(16).encode())
        os._exit(0)
    os.close(write)
    parent = random_hex(16)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != parent
