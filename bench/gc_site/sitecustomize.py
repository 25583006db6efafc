"""Benchmark-only hook into a process's garbage collector (put this folder on PYTHONPATH).

    PYTHONPATH=bench/gc_site B23_GC_LOG=/tmp/gc.json ...   # each collection's pause, by generation
    PYTHONPATH=bench/gc_site B23_GC_UNTUNED=1 ...          # the proxy's gc tuning switched off

py-spy cannot see the collector: a pause is charged to whatever line allocated when it began. So
with B23_GC_LOG the pauses are timed through `gc.callbacks` and written as JSON when the process
exits (per generation: collections, their total and longest pause, how many took over 5 ms, and
the unreachable objects they freed).
B23_GC_UNTUNED makes `gc.freeze` and `gc.set_threshold` do nothing, so one benchmark run can
compare the tuned proxy with the same code on the interpreter's defaults, side by side.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time

if os.environ.get("B23_GC_UNTUNED"):
    gc.freeze = lambda: None
    gc.set_threshold = lambda *thresholds: None

if path := os.environ.get("B23_GC_LOG"):
    stats = {
        gen: {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "over_5ms": 0, "collected": 0}
        for gen in range(3)
    }
    began = [0.0]

    def _timed(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - began[0]) * 1000
        entry = stats[info["generation"]]
        entry["count"] += 1
        entry["total_ms"] += pause
        entry["max_ms"] = max(entry["max_ms"], pause)
        entry["over_5ms"] += pause > 5
        entry["collected"] += info["collected"]

    def _write() -> None:
        with open(f"{path}.{os.getpid()}", "w") as out:
            json.dump({"pid": os.getpid(), "generations": stats}, out, indent=1)

    gc.callbacks.append(_timed)
    atexit.register(_write)
