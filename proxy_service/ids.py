"""Ids for requests, messages and tool calls: unique, not secret.

`secrets` reads the kernel's random source on every call (a system call, ~3 % of a proxied
request's CPU); ids only need to be unique across replicas and restarts, which 96-128 random
bits from `random` (seeded from the kernel at start, reseeded after a fork) give.
"""

from __future__ import annotations

import random


def random_hex(nbytes: int) -> str:
    """`2 * nbytes` lowercase hex digits."""
    return f"{random.getrandbits(nbytes * 8):0{nbytes * 2}x}"
