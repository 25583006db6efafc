"""Real-size request bodies for benchmarks: Claude Code, Codex and agent-framework shapes.

    python -m bench.bodies --out-dir /tmp/payloads            # every preset, one file each
    python -m bench.bodies --kind anthropic --size 370000 --out /tmp/a.json
    python -m bench.bodies --kind responses --turns 12 --no-stream --out /tmp/r.json

Real clients send far more than the ~1 KB conversations of `load.py`'s basic modes: Claude Code's
first request is ~78 KB (24 tool schemas are ~64 KB of it, plus system blocks with
`cache_control`) and a session grows past 370 KB as tool round trips pile up; Codex sends ~77 KB
(instructions, function, namespaced and freeform tools, function_call/function_call_output
pairs); agent frameworks on Chat Completions look alike. The text here is synthetic (seeded
words and code-like lines of our own), so every body is the same on every run and machine.

A `Shape` says how big each part is; `turns` is the number of tool round trips in the history.
`body(kind, shape)` builds one body, `sized(kind, size)` picks the turns that reach a byte size,
and `PRESETS` are the benchmark modes' bodies (`preset(name)` renders one as bytes).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

Kind = Literal["anthropic", "responses", "chat"]

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "that",
    "this",
    "file",
    "function",
    "value",
    "request",
    "module",
    "test",
    "error",
    "return",
    "config",
    "path",
    "line",
    "change",
    "update",
    "check",
    "build",
    "handler",
    "stream",
    "buffer",
    "token",
    "session",
    "client",
    "server",
    "proxy",
    "event",
    "record",
    "limit",
    "default",
    "option",
    "parse",
    "convert",
    "schema",
    "field",
    "type",
    "list",
    "object",
    "string",
    "number",
    "boolean",
    "array",
    "query",
    "result",
    "output",
    "input",
    "command",
    "shell",
    "patch",
    "diff",
    "commit",
    "branch",
    "review",
    "plan",
    "step",
    "note",
    "warning",
    "never",
    "always",
    "when",
    "before",
    "after",
    "only",
    "each",
    "every",
    "should",
    "must",
    "may",
    "use",
    "read",
    "write",
    "edit",
    "search",
    "run",
    "open",
    "close",
    "start",
    "stop",
]
CODE_NAMES = [
    "data",
    "item",
    "node",
    "key",
    "size",
    "count",
    "index",
    "total",
    "name",
    "part",
    "chunk",
    "entry",
    "batch",
]


class Text:
    """Deterministic synthetic prose and code from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def prose(self, size: int) -> str:
        """Sentences of about `size` characters (at least one word)."""
        out: list[str] = []
        length = 0
        while length < size:
            words = self.rng.choices(WORDS, k=self.rng.randint(6, 18))
            sentence = " ".join(words).capitalize() + ". "
            out.append(sentence)
            length += len(sentence)
        return "".join(out)[: max(size, 1)].rstrip() or "note"

    def code(self, size: int) -> str:
        """Numbered, indented code-like lines of about `size` characters (a file read back)."""
        out: list[str] = []
        length, number = 0, 1
        while length < size:
            a, b = self.rng.sample(CODE_NAMES, 2)
            indent = "    " * self.rng.randint(0, 3)
            line = f"{number:>6}\t{indent}{a} = {b}.get({self.rng.randint(0, 999)}) or {a}\n"
            out.append(line)
            length += len(line)
            number += 1
        return "".join(out)[:size]

    def token(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choices("0123456789abcdefghijklmnopqrstuvwxyz", k=24))


@dataclass(frozen=True, slots=True)
class Shape:
    """Sizes of a body's parts, in bytes of JSON (approximately)."""

    tools: int = 24
    tools_bytes: int = 64_000
    system_bytes: int = 11_000
    prompt_bytes: int = 2_500  # the first user message (reminders plus the task)
    turns: int = 0  # tool round trips in the history
    result_bytes: int = 5_000  # one tool result (a file read, a command's output)
    seed: int = 0


# Tool names of the shapes' clients (names only; schemas and descriptions are synthetic)
CLAUDE_TOOLS = [
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "ExitPlanMode",
    "Read",
    "Edit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
    "WebSearch",
    "BashOutput",
    "KillShell",
    "SlashCommand",
    "Skill",
    "AskUserQuestion",
    "ListMcpResourcesTool",
    "ReadMcpResourceTool",
    "mcp__ide__getDiagnostics",
    "mcp__ide__executeCode",
    "mcp__github__search_code",
    "mcp__github__get_file_contents",
    "mcp__linear__create_issue",
]
CODEX_FUNCTIONS = ["shell", "update_plan", "view_image", "list_mcp_resources", "read_mcp_resource"]
CODEX_NAMESPACES = {"mcp__github": ["search_code", "get_file_contents", "create_pull_request"]}
CHAT_TOOLS = [
    "read_file",
    "write_file",
    "list_dir",
    "run_command",
    "search_web",
    "fetch_url",
    "python",
]


def _schema(text: Text, budget: int) -> dict:
    """A JSON schema of a few described properties, roughly `budget` bytes."""
    properties: dict[str, Any] = {}
    count = text.rng.randint(3, 7)
    for index in range(count):
        name = f"{text.rng.choice(CODE_NAMES)}_{text.rng.choice(WORDS)}_{index}"
        described = {"description": text.prose(max(40, budget // (count * 2)))}
        match index % 4:
            case 0:
                properties[name] = {"type": "string", **described}
            case 1:
                properties[name] = {"type": "number", **described}
            case 2:
                properties[name] = {"type": "boolean", **described}
            case _:
                properties[name] = {"type": "array", "items": {"type": "string"}, **described}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties)[:2],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


def _tool_specs(text: Text, names: list[str], total: int) -> list[tuple[str, str, dict]]:
    """(name, description, schema) per tool, each about total/len(names) bytes."""
    each = total // max(len(names), 1)
    specs = []
    for name in names:
        schema = _schema(text, each // 2)
        left = each - len(_dumps(schema)) - len(name) - 40
        specs.append((name, text.prose(max(left, 80)), schema))
    return specs


def _names(pool: list[str], count: int) -> list[str]:
    return [pool[i] if i < len(pool) else f"{pool[i % len(pool)]}_{i}" for i in range(count)]


def _call_arguments(text: Text, name: str) -> dict:
    return {"file_path": f"/work/project/src/{text.rng.choice(CODE_NAMES)}_{name.lower()}.py"}


def anthropic_body(shape: Shape, *, stream: bool = True, model: str = "mock-model") -> dict:
    """A Claude Code `POST /v1/messages` body."""
    text = Text(shape.seed)
    names = _names(CLAUDE_TOOLS, shape.tools)
    tools = [
        {"name": name, "description": description, "input_schema": schema}
        for name, description, schema in _tool_specs(text, names, shape.tools_bytes)
    ]
    ephemeral = {"type": "ephemeral"}
    system = [
        {
            "type": "text",
            "text": "You are a command line coding agent.",
            "cache_control": ephemeral,
        },
        {"type": "text", "text": text.prose(shape.system_bytes - 150), "cache_control": ephemeral},
    ]
    reminder = (
        "<system-reminder>\n" + text.prose(shape.prompt_bytes * 3 // 4) + "\n</system-reminder>"
    )
    messages: list[dict] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": reminder},
                {"type": "text", "text": text.prose(shape.prompt_bytes // 4)},
            ],
        }
    ]
    for turn in range(shape.turns):
        call_id = text.token("toolu_")
        name = names[turn % len(names)] if names else "Read"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": text.prose(300)},
                    {
                        "type": "tool_use",
                        "id": call_id,
                        "name": name,
                        "input": _call_arguments(text, name),
                    },
                ],
            }
        )
        result = text.code(shape.result_bytes)
        content: str | list = result if turn % 2 else [{"type": "text", "text": result}]
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call_id, "content": content}],
            }
        )
    messages[-1]["content"][-1]["cache_control"] = ephemeral
    body: dict = {
        "model": model,
        "messages": messages,
        "temperature": 1,
        "system": system,
        "tools": tools,
        "metadata": {"user_id": text.token("user_") + "_account__session_" + text.token("")},
        "max_tokens": 32000,
    }
    if stream:
        body["stream"] = True
    return body


def responses_body(shape: Shape, *, stream: bool = True, model: str = "mock-model") -> dict:
    """A Codex `POST /v1/responses` body: function, namespaced and freeform tools."""
    text = Text(shape.seed)
    groups = [(None, name) for name in CODEX_FUNCTIONS]
    groups += [(space, name) for space, members in CODEX_NAMESPACES.items() for name in members]
    count = max(shape.tools - 1, 0)  # apply_patch is the last one
    chosen = [groups[i % len(groups)] for i in range(count)]
    specs = _tool_specs(text, [name for _, name in chosen] + ["apply_patch"], shape.tools_bytes)
    tools: list[dict] = []
    spaces: dict[str, dict] = {}
    for (space, _), (name, description, schema) in zip(chosen, specs, strict=False):
        function = {
            "type": "function",
            "name": name,
            "description": description,
            "strict": False,
            "parameters": schema,
        }
        if space is None:
            tools.append(function)
        elif space in spaces:
            spaces[space]["tools"].append(function)
        else:
            spaces[space] = {
                "type": "namespace",
                "name": space,
                "description": "Tools of a connected MCP server.",
                "tools": [function],
            }
            tools.append(spaces[space])
    if shape.tools:
        _, description, _ = specs[-1]
        grammar = 'start: "*** Begin Patch" LF hunk+ "*** End Patch" LF?\n' + text.prose(400)
        tools.append(
            {
                "type": "custom",
                "name": "apply_patch",
                "description": description,
                "format": {"type": "grammar", "syntax": "lark", "definition": grammar},
            }
        )
    items: list[dict] = [
        _input_message("developer", text.prose(shape.prompt_bytes // 2)),
        _input_message("user", text.prose(shape.prompt_bytes // 2)),
    ]
    for turn in range(shape.turns):
        call_id = text.token("call_")
        items.append(_output_message(text.prose(300)))
        if turn % 3 == 2:
            patch = "*** Begin Patch\n*** Update File: src/app.py\n" + text.code(600)
            items.append(
                {
                    "type": "custom_tool_call",
                    "name": "apply_patch",
                    "call_id": call_id,
                    "input": patch,
                }
            )
            items.append(
                {
                    "type": "custom_tool_call_output",
                    "call_id": call_id,
                    "output": text.code(shape.result_bytes - 700),
                }
            )
            continue
        command = ["bash", "-lc", f"sed -n 1,200p src/{text.rng.choice(CODE_NAMES)}.py"]
        items.append(
            {
                "type": "function_call",
                "name": "shell",
                "arguments": _dumps({"command": command, "workdir": "/work/project"}),
                "call_id": call_id,
            }
        )
        items.append(
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": text.code(shape.result_bytes),
            }
        )
    return {
        "model": model,
        "instructions": text.prose(shape.system_bytes),
        "input": items,
        "tools": tools,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": stream,
        "include": [],
        "prompt_cache_key": text.token(""),
    }


def _input_message(role: str, value: str) -> dict:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": value}]}


def _output_message(value: str) -> dict:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": value}],
    }


def chat_body(shape: Shape, *, stream: bool = True, model: str = "mock-model") -> dict:
    """An agent framework's `POST /v1/chat/completions` body: tools, tool_calls, tool results."""
    text = Text(shape.seed)
    names = _names(CHAT_TOOLS, shape.tools)
    tools = [
        {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": schema},
        }
        for name, description, schema in _tool_specs(text, names, shape.tools_bytes)
    ]
    messages: list[dict] = [
        {"role": "system", "content": text.prose(shape.system_bytes)},
        {"role": "user", "content": text.prose(shape.prompt_bytes)},
    ]
    for turn in range(shape.turns):
        call_id = text.token("call_")
        name = names[turn % len(names)] if names else "read_file"
        function = {"name": name, "arguments": _dumps(_call_arguments(text, name))}
        messages.append(
            {
                "role": "assistant",
                "content": text.prose(300),
                "tool_calls": [{"id": call_id, "type": "function", "function": function}],
            }
        )
        messages.append(
            {"role": "tool", "tool_call_id": call_id, "content": text.code(shape.result_bytes)}
        )
    body: dict = {"model": model, "messages": messages, "max_tokens": 4096, "temperature": 0.2}
    if tools:
        body |= {"tools": tools, "tool_choice": "auto"}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


BUILDERS: dict[Kind, Callable[..., dict]] = {
    "anthropic": anthropic_body,
    "responses": responses_body,
    "chat": chat_body,
}
# Defaults per client shape; `turns` is then chosen for the size asked for.
SHAPES: dict[Kind, Shape] = {
    "anthropic": Shape(),  # Claude Code: 24 tools, ~64 KB of them
    "responses": Shape(tools=9, tools_bytes=28_000, system_bytes=14_000),  # Codex
    "chat": Shape(tools=7, tools_bytes=24_000, system_bytes=12_000),
}


def body(kind: Kind, shape: Shape, *, stream: bool = True, model: str = "mock-model") -> dict:
    return BUILDERS[kind](shape, stream=stream, model=model)


def sized(
    kind: Kind, size: int, *, stream: bool = True, model: str = "mock-model", seed: int = 0
) -> dict:
    """A body of about `size` bytes: the kind's shape with as many round trips as it takes."""
    shape = replace(SHAPES[kind], seed=seed)
    base = len(render(body(kind, shape, stream=stream, model=model)))
    one = len(render(body(kind, replace(shape, turns=1), stream=stream, model=model))) - base
    turns = max(0, round((size - base) / max(one, 1)))
    return body(kind, replace(shape, turns=turns), stream=stream, model=model)


def small_responses_body(*, stream: bool = True, model: str = "mock-model") -> dict:
    """A ~1 KB Responses body, the size of `load.py`'s basic modes."""
    shape = Shape(tools=0, tools_bytes=0, system_bytes=350, prompt_bytes=500, turns=0)
    return responses_body(shape, stream=stream, model=model)


@dataclass(frozen=True, slots=True)
class Preset:
    kind: Kind
    size: int  # 0: the 1 KB body
    stream: bool


# The benchmark modes' bodies (bench/load.py and the rig wrapper use these names)
PRESETS: dict[str, Preset] = {
    "anthropic-nonstream-78k": Preset("anthropic", 78_000, False),
    "anthropic-stream-78k": Preset("anthropic", 78_000, True),
    "anthropic-stream-370k": Preset("anthropic", 370_000, True),
    "openai-nonstream-77k": Preset("chat", 77_000, False),
    "openai-stream-77k": Preset("chat", 77_000, True),
    "responses-stream-77k": Preset("responses", 77_000, True),
    "responses-stream": Preset("responses", 0, True),
}


def preset(name: str, *, model: str = "mock-model") -> bytes:
    spec = PRESETS[name]
    if spec.size == 0:
        return render(small_responses_body(stream=spec.stream, model=model))
    return render(sized(spec.kind, spec.size, stream=spec.stream, model=model))


def render(value: dict) -> bytes:
    """Compact JSON, as the clients send it."""
    return _dumps(value).encode()


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", help="write every preset as <name>.json here")
    parser.add_argument("--kind", choices=list(BUILDERS), help="one body of this client shape")
    parser.add_argument("--size", type=int, default=0, help="bytes to reach (picks --turns)")
    parser.add_argument("--turns", type=int, default=0, help="tool round trips (without --size)")
    parser.add_argument("--no-stream", dest="stream", action="store_false")
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="file for the one body (--kind)")
    args = parser.parse_args()
    if args.out_dir:
        folder = Path(args.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in PRESETS:
            data = preset(name, model=args.model)
            (folder / f"{name}.json").write_bytes(data)
            print(f"{folder / f'{name}.json'}: {len(data):,} bytes")
    if args.kind:
        if not args.out:
            parser.error("--kind needs --out")
        if args.size:
            value = sized(
                args.kind, args.size, stream=args.stream, model=args.model, seed=args.seed
            )
        else:
            shape = replace(SHAPES[args.kind], turns=args.turns, seed=args.seed)
            value = body(args.kind, shape, stream=args.stream, model=args.model)
        data = render(value)
        Path(args.out).write_bytes(data)
        print(f"{args.out}: {len(data):,} bytes")
    if not args.out_dir and not args.kind:
        parser.error("give --out-dir and/or --kind")


if __name__ == "__main__":
    main()
