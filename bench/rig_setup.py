"""Make a writable copy of the shared rig with the project's target and the real-size modes.

    .venv/bin/python -m bench.rig_setup                 # /tmp/bench-real, from /work/shared/bench
    .venv/bin/python -m bench.rig_setup --dest /tmp/bench --no-venv
    cd /tmp/bench-real && python3 run.py --rounds 1 --duration 8 --no-paced \\
        --modes anthropic-nonstream-78k,anthropic-stream-78k,anthropic-stream-370k,\\
        openai-stream-77k PROJECT IDEAL-AIOHTTP

The shared rig (`/work/shared/bench`) is read-only and only knows ~1 KB bodies. This copies it
(once; later runs keep its `.cache/`, results and virtual environments), writes the presets of
`bench/bodies.py` into its `payloads/`, copies `bench/project_target.sh` into its `targets/`, and
appends to its `targets.py` (restored from the shared original first, so running this twice
changes nothing): the `PROJECT` target, `PROJECT-GC-UNTUNED` (the same without its garbage
collector tuning, for before/after in one run) and one mode per preset (`anthropic-stream-370k`,
`responses-stream`, ...). The reference proxies serve only chat and messages: run the
`responses-*` modes against PROJECT alone. Unless `--no-venv`, the reference proxy's venv
(`.venv-ideal`) is created when missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from bench.bodies import PRESETS, preset

HERE = Path(__file__).resolve().parent
PROJECT_DIR = HERE.parent
MARK = "# ---- added by b23-llm-proxy bench/rig_setup.py ----"
IDEAL_PACKAGES = [
    "fastapi",
    "uvicorn[standard]",
    "httpx",
    "httpx2",
    "httpx-aiohttp",
    "aiohttp",
    "sniffio",
]
ROUTES = {  # preset kind -> (rig protocol for the auth header, path, marker of a complete reply)
    "anthropic": ("anthropic", "/v1/messages", "message_stop"),
    "chat": ("openai", "/v1/chat/completions", "[DONE]"),
    "responses": ("openai", "/v1/responses", "response.completed"),
}


def project_target(project: Path) -> dict:
    """The rig's PROJECT entry: bench/project_target.sh, every feature on."""
    python = str(project / ".venv/bin/python")
    return {
        "cmd": ["bash", "{bench}/targets/project_target.sh", "{rundir}"],
        "cwd": "{rundir}",
        "env": {
            "UPSTREAM_BASE_URL": "{upstream}",
            "HOST": "127.0.0.1",
            "PORT": "{port}",
            "PROJECT_DIR": str(project),
            "PYTHON": python,
            "SIDE_CPU": "1",
        },
        "health": "/readyz",
        "openai_auth": "Authorization: Bearer bsk-bench",
        "anthropic_auth": "x-api-key: bsk-bench",
        "startup_timeout": 60,
        "requires": ["{bench}/targets/project_target.sh", python],
        "note": "b23-llm-proxy, all features; Redis + logger on CPU 1, outside the measured tree",
    }


def untuned_target(project: Path) -> dict:
    """PROJECT with its garbage-collector tuning switched off (bench/gc_site), to measure the
    tuning side by side in one run."""
    target = project_target(project)
    target["env"] = {
        **target["env"],
        "PYTHONPATH": str(project / "bench/gc_site"),
        "B23_GC_UNTUNED": "1",
    }
    target["note"] = "PROJECT on the interpreter's gc defaults (gc.freeze/set_threshold off)"
    return target


def modes() -> dict[str, dict]:
    """One rig mode per preset body."""
    out = {}
    for name, spec in PRESETS.items():
        proto, path, term = ROUTES[spec.kind]
        out[name] = {
            "proto": proto,
            "path": path,
            "body": f"{name}.json",
            "term": term if spec.stream else "",
        }
    return out


def addition(project: Path) -> str:
    """Python appended to the copy's targets.py."""
    return (
        f"\n\n{MARK}\n"
        f"TARGETS[{'PROJECT'!r}] = {project_target(project)!r}\n"
        f"TARGETS[{'PROJECT-GC-UNTUNED'!r}] = {untuned_target(project)!r}\n"
        f"MODES.update({modes()!r})\n"
    )


def setup(source: Path, dest: Path, project: Path, venv: bool) -> None:
    if not dest.exists():
        shutil.copytree(source, dest, symlinks=True)
        (dest / "targets.py").chmod(0o644)
    for path in [dest, dest / "payloads", dest / "targets"]:
        path.chmod(path.stat().st_mode | 0o200)
    targets = dest / "targets.py"
    targets.write_text((source / "targets.py").read_text() + addition(project))
    shutil.copy(project / "bench/project_target.sh", dest / "targets/project_target.sh")
    for name in PRESETS:
        target = dest / "payloads" / f"{name}.json"
        target.write_bytes(preset(name))
        print(f"{target}: {target.stat().st_size:,} bytes")
    ideal = dest / ".venv-ideal"
    if venv and not (ideal / "bin/uvicorn").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ideal)], check=True)
        subprocess.run([str(ideal / "bin/pip"), "install", "-q", *IDEAL_PACKAGES], check=True)
    print(f"rig ready in {dest}: cd {dest} && python3 run.py --modes {','.join(PRESETS)} PROJECT")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="/work/shared/bench", help="the shared rig")
    parser.add_argument("--dest", default="/tmp/bench-real", help="the writable copy")
    parser.add_argument("--project", default=str(PROJECT_DIR), help="the repository")
    parser.add_argument("--no-venv", dest="venv", action="store_false", help="skip .venv-ideal")
    args = parser.parse_args()
    setup(Path(args.source), Path(args.dest), Path(args.project).resolve(), args.venv)


if __name__ == "__main__":
    main()
