"""Ids for requests, messages and tool calls: unique and unpredictable.

They come from the kernel's CSPRNG (`os.urandom`), read 4 KiB at a time: one system call per
~250 ids instead of one per id (`secrets` would make one per id), while `random`'s Mersenne
Twister can be predicted from ~156 observed ids. A forked child starts with an empty pool, so
it never hands out the bytes its parent does.
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096


class _Pool:
    """Kernel random bytes handed out in order, each byte once."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Empty (refilled at the next draw), with a fresh lock: also run in a forked child,
        where the parent's lock may have been held by a thread that no longer exists."""
        self._lock = threading.Lock()
        self._bytes = b""
        self._used = 0

    def take(self, nbytes: int) -> bytes:
        with self._lock:
            start, end = self._used, self._used + nbytes
            if end > len(self._bytes):
                self._bytes = os.urandom(max(POOL_BYTES, nbytes))
                start, end = 0, nbytes
            self._used = end
            return self._bytes[start:end]


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.reset)


def random_hex(nbytes: int) -> str:
    """`2 * nbytes` lowercase hex digits of kernel randomness."""
    return _pool.take(nbytes).hex()
