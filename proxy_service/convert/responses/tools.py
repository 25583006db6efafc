"""Responses tool declarations -> Chat functions, and the way back for the model's calls (§2.4).

Chat only knows flat functions, so Codex's namespaced groups are flattened (prefixed only where a
name would collide) and freeform tools become a function with one string argument; ToolMap keeps
upstream name -> client tool, because Codex dispatches only calls that carry their `namespace` and
only executes a freeform tool returned as `custom_tool_call` (Codex prints "unsupported call").
A client-executed `tool_search` (Codex with many MCP tools) becomes a function of that name, and
its calls go back as `tool_search_call` items.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass

from proxy_service.convert.responses.errors import InvalidRequest, UnsupportedTool

logger = logging.getLogger(__name__)

CUSTOM_INPUT = "input"  # the single string argument a freeform tool becomes upstream
_VALID_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_CALLABLE = ("function", "custom")
TOOL_SEARCH = "tool_search"
_SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
}
_SEARCH_DESCRIPTION = (
    "Search the available tools by query; returns the matching tools' definitions."
)
_CHOICES = ("auto", "none", "required")


@dataclass(frozen=True, slots=True)
class ToolTarget:
    """The client's tool behind one upstream function name."""

    name: str
    namespace: str | None = None
    custom: bool = False  # freeform: the call goes back as `custom_tool_call` with raw `input`
    search: bool = False  # the client's tool_search: the call goes back as `tool_search_call`


@dataclass(frozen=True, slots=True)
class _Declared:
    where: str  # e.g. "tools[3].tools[0]", for error messages
    tool: dict
    namespace: str | None
    preamble: str  # the namespace's description, given once (on its first tool)


class ToolMap:
    """Upstream function names of one request's tools, both ways."""

    def __init__(self) -> None:
        self.targets: dict[str, ToolTarget] = {}
        self._names: dict[tuple[str | None, str], str] = {}

    def add(self, upstream: str, target: ToolTarget) -> bool:
        """Register a tool; False for a second tool under the same upstream name (dropped)."""
        if upstream in self.targets:
            return False
        self.targets[upstream] = target
        self._names[target.namespace, target.name] = upstream
        return True

    def upstream(self, name: str, namespace: str | None = None) -> str:
        """The upstream name of a tool, stable also for tools this request no longer declares
        (calls in the history of an earlier turn)."""
        known = self._names.get((namespace, name))
        if known is not None:
            return known
        return safe_name(name if namespace is None else f"{namespace}__{name}")


def safe_name(name: str) -> str:
    """`name` if OpenAI's `^[a-zA-Z0-9_-]{1,64}$` accepts it, else a stable hashed form."""
    if _VALID_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_INVALID_CHARS.sub('_', name)[:55]}_{digest}"


def convert_tools(
    declared: list[tuple[str, object]], *, strict: bool
) -> tuple[list[dict], ToolMap]:
    """(Chat `tools`, name map) for `(where, tool)` declarations; hosted tools are dropped, or
    raise UnsupportedTool when `strict`."""
    flat = _flatten(declared, strict=strict)
    counts = Counter(entry.tool["name"] for entry in flat)
    names = ToolMap()
    functions: list[dict] = []
    for entry in flat:
        name = entry.tool["name"]
        bare = entry.namespace is None or counts[name] == 1
        upstream = safe_name(name if bare else f"{entry.namespace}__{name}")
        custom = entry.tool.get("type") == "custom"
        search = entry.tool.get("type") == TOOL_SEARCH
        if names.add(upstream, ToolTarget(name, entry.namespace, custom, search)):
            functions.append(_function(upstream, entry, custom))
    return functions, names


def convert_tool_choice(
    raw: object, functions: list[dict], names: ToolMap
) -> tuple[list[dict], dict]:
    """(functions, `{"tool_choice": ...}` or `{}`); allowed_tools narrows the functions."""
    match raw:
        case None:
            choice: object = None
        case str() if raw in _CHOICES:
            choice = raw
        case {"type": "function" | "custom", "name": str(name)}:
            upstream = names.upstream(name, namespace_of(raw))
            # A choice naming a dropped or unknown tool would be a 400: leave it to the model.
            known = any(f["function"]["name"] == upstream for f in functions)
            choice = {"type": "function", "function": {"name": upstream}} if known else None
        case {"type": "function" | "custom"}:
            raise InvalidRequest("tool_choice.name: field required", param="tool_choice.name")
        case {"type": "allowed_tools"}:
            functions = _allowed(raw, functions, names)
            choice = raw.get("mode") if raw.get("mode") in _CHOICES else "auto"
        case {"type": str(kind)}:
            raise UnsupportedTool(
                f"tool_choice type '{kind}' is not supported by this gateway",
                param="tool_choice",
                code="unsupported_tool_choice",
            )
        case _:
            raise InvalidRequest(
                "tool_choice: must be 'auto', 'none', 'required' or a tool choice object",
                param="tool_choice",
            )
    return functions, ({"tool_choice": choice} if functions and choice is not None else {})


def _flatten(declared: list[tuple[str, object]], *, strict: bool) -> list[_Declared]:
    flat: list[_Declared] = []
    for where, tool in declared:
        kind = _kind(where, tool)
        if kind in _CALLABLE:
            flat.append(_Declared(where, _named(where, tool), None, ""))
        elif kind == TOOL_SEARCH and tool.get("execution") == "client":
            flat.append(_Declared(where, _search_function(tool), None, ""))
        elif kind == "namespace":
            namespace = _named(where, tool)["name"]
            members = tool.get("tools")
            if not isinstance(members, list):
                raise InvalidRequest(f"{where}.tools: must be an array of tools", f"{where}.tools")
            description = tool.get("description")
            preamble = description.strip() if isinstance(description, str) else ""
            for position, member in enumerate(members):
                inner = f"{where}.tools[{position}]"
                if _kind(inner, member) in _CALLABLE:
                    flat.append(_Declared(inner, _named(inner, member), namespace, preamble))
                    preamble = ""
                else:
                    _hosted(inner, member, strict=strict)
        else:
            _hosted(where, tool, strict=strict)
    return flat


def _kind(where: str, tool: object) -> object:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where}: must be an object", param=where)
    return tool.get("type")


def _named(where: str, tool: dict) -> dict:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name: field required (a non-empty string)", f"{where}.name")
    return tool


def _hosted(where: str, tool: dict, *, strict: bool) -> None:
    """A tool the upstream cannot execute: Codex declares web_search by default, so dropping it
    keeps the gateway usable; strict deployments prefer the explicit 400."""
    kind = tool.get("type")
    if strict:
        raise UnsupportedTool(
            f"Tool type '{kind}' is not supported by this gateway", param=f"{where}.type"
        )
    logger.debug("dropping hosted tool %r at %s", kind, where)


def _search_function(tool: dict) -> dict:
    """A client-executed tool_search as the function the upstream sees (its own schema, if
    it gives one)."""
    description = tool.get("description")
    return {
        "type": TOOL_SEARCH,
        "name": TOOL_SEARCH,
        "description": description if isinstance(description, str) else _SEARCH_DESCRIPTION,
        "parameters": tool.get("parameters") or _SEARCH_PARAMETERS,
    }


def _function(upstream: str, entry: _Declared, custom: bool) -> dict:
    tool = entry.tool
    texts = [entry.preamble]
    if isinstance(description := tool.get("description"), str):
        texts.append(description.strip())
    if custom:
        texts.append(_custom_instructions(tool.get("format")))
        parameters = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string"}},
            "required": [CUSTOM_INPUT],
        }
    else:
        parameters = _parameters(tool.get("parameters"))
    function: dict = {"name": upstream}
    if text := "\n\n".join(t for t in texts if t):
        function["description"] = text
    function["parameters"] = parameters
    return {"type": "function", "function": function}


def _custom_instructions(fmt: object) -> str:
    """Where a freeform tool's raw text goes, and its grammar (the upstream cannot enforce it)."""
    text = f"Pass the raw text as the `{CUSTOM_INPUT}` string argument."
    if isinstance(fmt, dict) and isinstance(definition := fmt.get("definition"), str):
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "grammar"
        text += f" It must match this {syntax} grammar:\n{definition}"
    return text


def _parameters(schema: object) -> dict:
    """An object schema every upstream accepts: `type: object` and `properties` present."""
    params = dict(schema) if isinstance(schema, dict) else {}
    params["type"] = "object"
    if not isinstance(params.get("properties"), dict):
        params["properties"] = {}
    return params


def namespace_of(raw: dict) -> str | None:
    """The `namespace` of a call or choice; absent and empty both mean none."""
    namespace = raw.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else None


def _allowed(raw: dict, functions: list[dict], names: ToolMap) -> list[dict]:
    """The functions an `allowed_tools` choice names (hosted entries in it name nothing)."""
    listed = raw.get("tools")
    allowed = {
        names.upstream(entry["name"], namespace_of(entry))
        for entry in (listed if isinstance(listed, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    }
    return [f for f in functions if f["function"]["name"] in allowed]
