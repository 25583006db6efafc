"""glibc's allocator told to give large blocks their own mappings (process-level, at start-up).

A proxy at real sizes allocates several 80-400 KB buffers per request (the body, its decoded and
re-serialised forms, the upstream request). glibc serves blocks from 128 KB up with their own
mapping at first, but raises that threshold each time one is freed, so soon they all come from
the heap, where they fragment between small long-lived objects and are never given back: under
32 concurrent Claude Code-sized requests the proxy's RSS reached 230-350 MiB and stayed there.
With a fixed threshold (LARGE_BLOCK_BYTES=65536) those blocks are mapped and unmapped whole: peak
RSS 112-158 MiB in the same runs, for about 10 % more CPU per request at 78 KB and up to twice
the CPU at 370 KB (the mapping system calls and page faults; bench/README.md "Real sizes"). So it
is off by default, for memory-limited containers to turn on. On other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h); setting it also stops the dynamic adjustment."""


def map_large_blocks(threshold: int) -> bool:
    """Serve allocations of `threshold` bytes or more from their own mappings; False when it
    is off (0) or the C library has no `mallopt`."""
    if threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    applied = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not applied:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused", threshold)
    return applied
