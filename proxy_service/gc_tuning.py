"""The garbage collector tuned for a proxy that parses large bodies (process-level, at start-up).

With the interpreter's defaults a collection runs every 700 net container allocations, in the
middle of parsing a request: a Claude Code-sized body (78-370 KB, thousands of dicts and lists)
survives those collections while it is being built and read, so it is promoted to the oldest
generation, and that promotion soon triggers a full collection, which walks every object the
process holds (FastAPI, pydantic, the routes: a few hundred thousand). Measured at 370 KB bodies
(bench/README.md, "Real sizes"): 59 full collections of up to 152 ms each in 28 s, about a
quarter of the proxy's CPU, and the p99 stalls.

So once the app is built, `gc.freeze()` moves everything alive into the permanent generation,
which no collection walks again, and a larger first threshold lets a request's objects die of
their reference counts before any collection sees them. Cyclic garbage still gets collected;
at most GEN0_THRESHOLD more objects wait for it.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
"""Net container allocations between young collections (default 700): several large bodies."""
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 20


def tune_garbage_collector() -> None:
    """Freeze what start-up built and collect the young less often; call once, when the app is
    ready (objects made later are collected as usual)."""
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
