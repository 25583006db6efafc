"""Markdown tables from `bench/load.py --out` files.

    python bench/report.py results.json [more.json ...]

Several files (e.g. one per proxy version) are shown side by side, each labelled by its file
name. Tables: saturation throughput (and ratio to direct), latency at the fixed rate with the
overhead over direct (p50 through the proxy minus p50 straight to the upstream), time to first
token, and a list of runs that had errors.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render(*documents: dict[str, Any], labels: list[str] | None = None) -> str:
    labels = labels or ["proxy"] * len(documents)
    rows: dict[
        tuple[str, str], dict[str, dict[str, Any]]
    ] = {}  # (row label, kind) -> mode -> result
    modes: list[str] = []
    for label, doc in zip(labels, documents, strict=True):
        for r in doc["results"]:
            name = "DIRECT (upstream)" if r["target"] == "direct" else label
            rows.setdefault((name, r["kind"]), {})[r["mode"]] = r
            if r["mode"] not in modes:
                modes.append(r["mode"])
    out: list[str] = []
    first = documents[0]["args"]
    out.append(
        f"Load: closed loop at concurrency {first.get('concurrency')} / open loop at "
        f"{first.get('rate')} req/s, {first.get('duration')} s measured after "
        f"{first.get('warmup')} s warm-up per run. Latency in ms."
    )

    def direct(kind: str, mode: str) -> dict[str, Any] | None:
        return rows.get(("DIRECT (upstream)", kind), {}).get(mode)

    def bad(r: dict[str, Any]) -> bool:
        return bool(r["errors"] or r["non2xx"] or r["incomplete"])

    sat_modes = [m for m in modes if any(k == "saturate" and m in v for (_, k), v in rows.items())]
    if sat_modes:
        out += ["", "### Saturation throughput (req/s; × = ratio to direct; ✗ = had errors)", ""]
        out.append("| system | " + " | ".join(sat_modes) + " | loader CPU max |")
        out.append("|---|" + "---:|" * len(sat_modes) + "---:|")
        for (name, kind), by_mode in rows.items():
            if kind != "saturate":
                continue
            cells = []
            for m in sat_modes:
                r = by_mode.get(m)
                if r is None:
                    cells.append("–")
                    continue
                cell = f"{r['rps']:,.0f}"
                d = direct("saturate", m)
                if d and name != "DIRECT (upstream)" and d["rps"]:
                    cell += f" ({r['rps'] / d['rps']:.3f}×)"
                cells.append(cell + (" ✗" if bad(r) else ""))
            cpu = max(r["loader_cpu_pct"] for r in by_mode.values())
            out.append(f"| {name} | " + " | ".join(cells) + f" | {cpu:.0f}% |")
        out += ["", "Saturation latency p50 / p99 (ms):", ""]
        out.append("| system | " + " | ".join(sat_modes) + " |")
        out.append("|---|" + "---|" * len(sat_modes))
        for (name, kind), by_mode in rows.items():
            if kind == "saturate":
                cells = [
                    f"{_ms(by_mode[m]['p50_ms'])} / {_ms(by_mode[m]['p99_ms'])}"
                    if m in by_mode
                    else "–"
                    for m in sat_modes
                ]
                out.append(f"| {name} | " + " | ".join(cells) + " |")

    rate_modes = [m for m in modes if any(k == "rate" and m in v for (_, k), v in rows.items())]
    if rate_modes:
        out += [
            "",
            "### Latency at a fixed rate (open loop; p50 / p90 / p99; +overhead = p50 − direct)",
            "",
        ]
        out.append("| system | " + " | ".join(rate_modes) + " | generator lag p99 |")
        out.append("|---|" + "---|" * len(rate_modes) + "---:|")
        for (name, kind), by_mode in rows.items():
            if kind != "rate":
                continue
            cells = []
            for m in rate_modes:
                r = by_mode.get(m)
                if r is None:
                    cells.append("–")
                    continue
                cell = f"{_ms(r['p50_ms'])} / {_ms(r['p90_ms'])} / {_ms(r['p99_ms'])}"
                d = direct("rate", m)
                if (
                    d
                    and name != "DIRECT (upstream)"
                    and d["p50_ms"] is not None
                    and r["p50_ms"] is not None
                ):
                    cell += f" (+{r['p50_ms'] - d['p50_ms']:.2f})"
                cells.append(cell + (" ✗" if bad(r) else ""))
            lag = max((r["lag_p99_ms"] or 0.0) for r in by_mode.values())
            out.append(f"| {name} | " + " | ".join(cells) + f" | {lag:.2f} |")
        stream_modes = [m for m in rate_modes if "stream" in m and "nonstream" not in m]
        if stream_modes:
            out += [
                "",
                "Time to first token at the fixed rate (p50 / p99, ms; +overhead vs direct p50):",
                "",
            ]
            out.append("| system | " + " | ".join(stream_modes) + " |")
            out.append("|---|" + "---|" * len(stream_modes))
            for (name, kind), by_mode in rows.items():
                if kind != "rate":
                    continue
                cells = []
                for m in stream_modes:
                    r = by_mode.get(m)
                    if r is None:
                        cells.append("–")
                        continue
                    cell = f"{_ms(r['ttft_p50_ms'])} / {_ms(r['ttft_p99_ms'])}"
                    d = direct("rate", m)
                    if d and name != "DIRECT (upstream)" and d["ttft_p50_ms"] and r["ttft_p50_ms"]:
                        cell += f" (+{r['ttft_p50_ms'] - d['ttft_p50_ms']:.2f})"
                    cells.append(cell)
                out.append(f"| {name} | " + " | ".join(cells) + " |")

    failed = [
        (name, kind, r)
        for (name, kind), by_mode in rows.items()
        for r in by_mode.values()
        if bad(r)
    ]
    if failed:
        out += [
            "",
            "### Runs with errors",
            "",
            "| system | run | mode | errors | non-2xx | incomplete | first error |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for name, kind, r in failed:
            first_error = r["first_error"].replace("|", "\\|")
            out.append(
                f"| {name} | {kind} | {r['mode']} | {r['errors']} | {r['non2xx']} | "
                f"{r['incomplete']} | {first_error} |"
            )
    high = [
        r
        for by_mode in rows.values()
        for r in by_mode.values()
        if r["kind"] == "saturate" and r["loader_cpu_pct"] > 80
    ]
    if high:
        out += [
            "",
            f"Note: the load generator used over 80% of a core in {len(high)} saturation run(s); "
            "there it may be the bottleneck (see bench/README.md).",
        ]
    return "\n".join(out) + "\n"


def main() -> None:
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    documents = []
    for path in paths:
        with open(path) as f:
            documents.append(json.load(f))
    labels = [os.path.splitext(os.path.basename(p))[0] for p in paths] if len(paths) > 1 else None
    print(render(*documents, labels=labels))


if __name__ == "__main__":
    main()
