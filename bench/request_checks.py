"""What the proxy's per-request body checks cost beside the parse they follow, at real sizes.

`python bench/request_checks.py` prints, for Claude Code-shaped bodies of about 5 KB, 80 KB,
370 KB and 8 MB, the microseconds per call of orjson.loads (the parse every metered route does),
of the nesting check (`proxy_service.bodies.nesting_within`) and of the value count made before
the parse (`json_values_within`, at the default MAX_JSON_VALUES), with their ratios to the parse,
all measured in one run (the machine's noise hits them alike). Bodies are synthetic: tool
schemas, a system prompt and a history of tool round trips, with brackets inside the strings as
code has.
"""

from __future__ import annotations

import timeit
from typing import Any

import orjson

from proxy_service.bodies import json_values_within, nesting_within
from shared.settings import Settings

TOOL_TEXT = "Runs a command in the shell and returns its output. " * 40
CODE = 'def f(x): return {"a": [x, (x + 1)]}  # [brackets] {inside} strings\n'


def body(tools: int, rounds: int) -> dict[str, Any]:
    """A Messages body with `tools` tool schemas and `rounds` tool round trips."""
    schema = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "description": "x" * 80} for i in range(8)},
        "required": ["p0"],
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test."}]
    for i in range(rounds):
        call = {"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {"command": "ls"}}
        messages.append({"role": "assistant", "content": [{"type": "text", "text": CODE}, call]})
        result = {"type": "tool_result", "tool_use_id": f"t{i}", "content": CODE * 40}
        messages.append({"role": "user", "content": [result]})
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "You are a coding agent. " * 200}],
        "tools": [
            {"name": f"tool{i}", "description": TOOL_TEXT, "input_schema": schema}
            for i in range(tools)
        ],
        "messages": messages,
    }


def per_call_us(function, number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def main() -> None:
    max_values = Settings.model_fields["max_json_values"].default
    print("| body | orjson.loads µs | nesting check µs | ÷ parse | value count µs | ÷ parse |")
    print("|---|---:|---:|---:|---:|---:|")
    for tools, rounds in ((0, 0), (24, 0), (24, 93), (24, 2600)):
        raw = orjson.dumps(body(tools, rounds))
        parsed = orjson.loads(raw)
        number = max(20, 2_000_000 // len(raw))
        parse = per_call_us(lambda: orjson.loads(raw), number)  # noqa: B023
        check = per_call_us(lambda: nesting_within(parsed, 128), number)  # noqa: B023
        count = per_call_us(lambda: json_values_within(raw, max_values), number)  # noqa: B023
        print(
            f"| {len(raw) / 1024:.0f} KB | {parse:.1f} | {check:.1f} | {check / parse:.2f} "
            f"| {count:.1f} | {count / parse:.3f} |"
        )


if __name__ == "__main__":
    main()
