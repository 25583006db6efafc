"""Responses request -> Chat Completions request body (bridge spec §2).

Permissive like anthropic_request: unknown top-level fields and item types are dropped (fields go
through an allowlist), so a newer Codex or SDK never gets a 422; only a body that cannot mean
anything raises InvalidRequest, naming the field. Stateless: `previous_response_id` and the other
stored-state features are refused rather than ignored (ignoring them loses context silently).
The output is deterministic so upstream prefix caches keep hitting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Literal

import orjson

from proxy_service.convert.model_map import ModelMap
from proxy_service.convert.openai.estimate import estimate_prompt
from proxy_service.convert.responses.errors import (
    InvalidRequest,
    PreviousResponseNotFound,
    UnsupportedParameter,
)
from proxy_service.convert.responses.reasoning import unseal
from proxy_service.convert.responses.tools import (
    CUSTOM_INPUT,
    TOOL_SEARCH,
    ToolMap,
    ToolTarget,
    convert_tool_choice,
    convert_tools,
    namespace_of,
)

# Portable efforts: upstreams know low/medium/high; newer catalogs send more.
_EFFORTS = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
    "ultra": "high",
}
_ROLES = ("user", "assistant", "system", "developer")
_NOTES = {"system": "System note: ", "developer": "Developer note: "}
_IMAGE_DETAILS = ("low", "high", "auto")
_ENCRYPTED_REASONING = "reasoning.encrypted_content"
_MAX_USER = 64  # OpenAI's limit for `user`
_NO_RESULT = "(no result)"
_NO_OUTPUT = "(no output)"
_IDENTITY_MAP = ModelMap()


@dataclass(frozen=True, slots=True)
class ResponsesOptions:
    """Per-upstream switches; every default is the portable choice."""

    model_map: ModelMap = _IDENTITY_MAP
    # Codex never sends max_output_tokens, and a `length` stop is fatal to it (§2.2). Set None
    # for upstreams that default to the remaining context (vLLM, SGLang) and reject more.
    default_max_output_tokens: int | None = 32_768
    max_tokens_cap: int | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    send_reasoning_effort: bool = True  # OpenAI 400s `reasoning_effort` on non-reasoning models
    reasoning_content_in_history: bool = False  # DeepSeek/Kimi need thinking replayed
    stream_usage: bool = True  # add stream_options.include_usage when streaming
    strict_tools: bool = False  # hosted tools: UnsupportedTool instead of dropped
    system_mid_conversation: bool = False  # later system/developer items stay `system` messages
    file_parts: bool = True  # input_file -> Chat `file` part; False: InvalidRequest


@dataclass(frozen=True, slots=True)
class ConvertedRequest:
    """The upstream body plus what the response side needs to answer in Responses terms."""

    body: dict  # the chat.completions request body
    requested_model: str  # as the client sent it (echoed in every Response)
    upstream_model: str
    stream: bool
    tools: Mapping[str, ToolTarget]  # upstream function name -> the client's tool
    estimated_input_tokens: int  # openai/estimate.py on the upstream body, for missing usage
    echo: dict  # the request fields every Response object repeats
    encrypted_reasoning: bool  # `include` asked for reasoning.encrypted_content


def responses_to_chat_request(
    body: object, options: ResponsesOptions, session_id: str | None = None
) -> ConvertedRequest:
    """Convert one `POST /v1/responses` body; `session_id` is Codex's `session-id` header.

    Raises InvalidRequest (or its subclasses UnsupportedTool, UnsupportedParameter,
    PreviousResponseNotFound): all 400s, see errors.request_error.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    _refuse_state(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: field required (a non-empty string)", "model")
    items = _items(body)
    declared = [(f"tools[{i}]", tool) for i, tool in enumerate(_array(body, "tools"))]
    functions, names = convert_tools(
        declared + _additional_tools(items), strict=options.strict_tools
    )
    functions, choice = convert_tool_choice(body.get("tool_choice"), functions, names)
    messages = _History(options, names).convert(_instructions(body), items)
    if not messages:
        raise InvalidRequest("input: field required (a string or an array of input items)", "input")

    upstream_model = options.model_map.resolve(model)
    stream = body.get("stream") is True
    out: dict = {"model": upstream_model, "messages": messages}
    if limit := _max_tokens(body, options):
        out[options.max_tokens_field] = limit
    for key in ("temperature", "top_p"):
        if (value := _number(body, key)) is not None:
            out[key] = value
    out["stream"] = stream
    if stream and options.stream_usage:
        out["stream_options"] = {"include_usage": True}
    if functions:
        out["tools"] = functions
        out.update(choice)
        if isinstance(parallel := body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = parallel  # OpenAI 400s it without tools
    if options.send_reasoning_effort and (effort := _effort(body)):
        out["reasoning_effort"] = effort
    if response_format := _response_format(body):
        out["response_format"] = response_format
    if user := _user(body, session_id):
        out["user"] = user
    include = body.get("include")
    return ConvertedRequest(
        body=out,
        requested_model=model,
        upstream_model=upstream_model,
        stream=stream,
        tools=names.targets,
        estimated_input_tokens=estimate_prompt(out),
        echo=_echo(body),
        encrypted_reasoning=isinstance(include, list) and _ENCRYPTED_REASONING in include,
    )


def _refuse_state(body: dict) -> None:
    """Stored-state features: a storeless bridge says so instead of answering without context."""
    previous = body.get("previous_response_id")
    if isinstance(previous, str) and previous:
        raise PreviousResponseNotFound(previous)
    if previous not in (None, ""):
        raise InvalidRequest("previous_response_id: must be a string", "previous_response_id")
    for key in ("conversation", "prompt"):
        if body.get(key) is not None:
            raise UnsupportedParameter(
                f"{key}: not supported by this gateway (it stores nothing); send the full input",
                key,
            )
    if body.get("background") is True:
        raise UnsupportedParameter("background: not supported by this gateway", "background")


def _items(body: dict) -> list[tuple[str, object]]:
    """(where, item) in order: `instructions` given as items, then `input`."""
    instructions = body.get("instructions")
    items: list[tuple[str, object]] = (
        [(f"instructions[{i}]", item) for i, item in enumerate(instructions)]
        if isinstance(instructions, list)
        else []
    )
    raw = body.get("input")
    if isinstance(raw, str):
        items.append(("input", {"role": "user", "content": raw}))
    elif isinstance(raw, list):
        items += [(f"input[{i}]", item) for i, item in enumerate(raw)]
    elif raw is not None:
        raise InvalidRequest("input: must be a string or an array of input items", "input")
    return items


def _instructions(body: dict) -> str:
    instructions = body.get("instructions")
    if instructions is None or isinstance(instructions, list):
        return ""
    if not isinstance(instructions, str):
        raise InvalidRequest("instructions: must be a string or an array of items", "instructions")
    return instructions


def _array(body: dict, key: str) -> list:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{key}: must be an array", key)
    return value


def _additional_tools(items: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Responses-lite Codex declares its tools in an `additional_tools` input item (§2.1)."""
    declared: list[tuple[str, object]] = []
    for where, item in items:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            tools = item.get("tools")
            for j, tool in enumerate(tools if isinstance(tools, list) else []):
                declared.append((f"{where}.tools[{j}]", tool))
    return declared


def _max_tokens(body: dict, options: ResponsesOptions) -> int | None:
    raw = body.get("max_output_tokens")
    if raw is None:
        limit = options.default_max_output_tokens
    elif type(raw) is int and raw >= 1:
        limit = raw
    else:
        raise InvalidRequest("max_output_tokens: must be a positive integer", "max_output_tokens")
    if limit is not None and options.max_tokens_cap:
        limit = min(limit, options.max_tokens_cap)
    return limit


def _number(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key}: must be a number", key)
    return value


def _effort(body: dict) -> str | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return _EFFORTS.get(effort) if isinstance(effort, str) else None


def _response_format(body: dict) -> dict | None:
    """text.format -> response_format: json_schema is flat in Responses, nested in Chat."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    match fmt:
        case {"type": "json_object"}:
            return {"type": "json_object"}
        case {"type": "json_schema"}:
            schema = fmt.get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequest(
                    "text.format.schema: field required (a JSON schema object)",
                    "text.format.schema",
                )
            name = fmt.get("name")
            spec: dict = {"name": name if isinstance(name, str) and name else "output"}
            if isinstance(description := fmt.get("description"), str) and description:
                spec["description"] = description
            spec["schema"] = schema
            if isinstance(strict := fmt.get("strict"), bool):
                spec["strict"] = strict
            return {"type": "json_schema", "json_schema": spec}
        case _:
            return None  # `text`, absent, or a format type newer than this bridge


def _user(body: dict, session_id: str | None) -> str | None:
    """A stable upstream `user` (sticky routing, prefix caches), hashed beyond OpenAI's 64."""
    for value in (
        body.get("prompt_cache_key"),
        session_id,
        body.get("safety_identifier"),
        body.get("user"),
    ):
        if isinstance(value, str) and value:
            if len(value) <= _MAX_USER:
                return value
            return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return None


def _echo(body: dict) -> dict:
    """The request fields a Response repeats; the SDK reads tools, tool_choice, text... (§3)."""
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    fmt = text.get("format")
    echoed_text: dict = {"format": fmt if isinstance(fmt, dict) else {"type": "text"}}
    if isinstance(verbosity := text.get("verbosity"), str):
        echoed_text["verbosity"] = verbosity
    choice = body.get("tool_choice")
    return {
        "instructions": _of(body, "instructions", str | list),
        "max_output_tokens": _of(body, "max_output_tokens", int),
        "metadata": _of(body, "metadata", dict) or {},
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "prompt_cache_key": _of(body, "prompt_cache_key", str),
        "reasoning": {
            "effort": _of(reasoning, "effort", str),
            "summary": _of(reasoning, "summary", str),
        },
        "safety_identifier": _of(body, "safety_identifier", str),
        "store": body.get("store") is not False,
        "temperature": _of(body, "temperature", float | int),
        "text": echoed_text,
        "tool_choice": choice if isinstance(choice, str | dict) else "auto",
        "tools": [tool for tool in _of(body, "tools", list) or [] if isinstance(tool, dict)],
        "top_p": _of(body, "top_p", float | int),
        "truncation": "auto" if body.get("truncation") == "auto" else "disabled",
        "user": _of(body, "user", str),
    }


def _of(mapping: dict, key: str, kind: type | UnionType) -> object:
    """`mapping[key]` when it has the type (never a bool standing in for a number), else None."""
    value = mapping.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


@dataclass(slots=True)
class _Assistant:
    """One assistant message merged from consecutive assistant-side items (text, calls)."""

    thoughts: list[str]
    texts: list[str] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    call_ids: set[str] = field(default_factory=set)


class _History:
    """Builds the Chat message list and owns tool-call adjacency: every tool message follows the
    assistant message declaring its call, and every declared call gets one (§2.3 invariants)."""

    def __init__(self, options: ResponsesOptions, names: ToolMap) -> None:
        self._options = options
        self._names = names
        self._out: list[dict] = []
        self._system: list[str] = []  # the leading run of instructions/system/developer text
        self._assistant: _Assistant | None = None
        self._thoughts: list[str] = []  # reasoning waiting for the next assistant message
        self._pending: dict[str, None] = {}  # call ids of the last assistant still unanswered
        self._held: list[dict] = []  # notes and orphans, placed after the current tool run
        self._media: list[dict] = []  # images out of tool outputs: one user message after the run

    def convert(self, instructions: str, items: list[tuple[str, object]]) -> list[dict]:
        if instructions.strip():
            self._system.append(instructions)
        for where, item in items:
            self._item(where, item)
        self._close_turn()
        if self._system:
            self._out.insert(0, {"role": "system", "content": "\n\n".join(self._system)})
        return self._out

    def _item(self, where: str, item: object) -> None:
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object", where)
        match item.get("type"):
            case "message" | None:
                self._message(where, item)
            case "function_call" | "custom_tool_call" as kind:
                self._call(where, item, custom=kind == "custom_tool_call")
            case "function_call_output" | "custom_tool_call_output":
                self._output(where, item)
            case "tool_search_call":
                self._call(where, {**item, "name": TOOL_SEARCH}, custom=False)
            case "tool_search_output":
                self._output(where, {**item, "output": _found_tools(item)})
            case "reasoning":
                self._reasoning(item)
            case str(kind) if kind.endswith("_output") and isinstance(item.get("output"), str):
                # Hosted-tool or legacy outputs (local_shell, tool_search...): keep the context.
                if text := item["output"].strip():
                    self._held.append({"role": "user", "content": f"[{kind}]\n{text}"})
            case _:
                pass  # additional_tools (read earlier), item_reference, compaction, hosted calls

    def _message(self, where: str, item: dict) -> None:
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"{where}.role: must be one of user, assistant, system, developer", f"{where}.role"
            )
        content = item.get("content")
        if not isinstance(content, str | list):
            raise InvalidRequest(
                f"{where}.content: must be a string or an array of content parts",
                f"{where}.content",
            )
        if role == "user":
            self._user(self._parts(f"{where}.content", content))
        elif role == "assistant":
            if text := _joined_text(content):
                self._open_assistant().texts.append(text)
        else:
            self._instruction(role, _joined_text(content))

    def _instruction(self, role: str, text: str) -> None:
        """The leading run merges into the first system message; OSS chat templates reject a
        system message anywhere else, so later ones become user notes unless configured."""
        if not text:
            return
        if not self._out and self._assistant is None:
            self._system.append(text)
        elif self._options.system_mid_conversation:
            self._held.append({"role": "system", "content": text})
        else:
            self._held.append({"role": "user", "content": _NOTES[role] + text})

    def _user(self, parts: list[dict]) -> None:
        if not parts:
            return
        self._close_turn()
        if len(parts) == 1 and parts[0]["type"] == "text":
            self._out.append({"role": "user", "content": parts[0]["text"]})
        else:
            self._out.append({"role": "user", "content": parts})

    def _call(self, where: str, item: dict, *, custom: bool) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(
                f"{where}.call_id: field required (a non-empty string)", f"{where}.call_id"
            )
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                f"{where}.name: field required (a non-empty string)", f"{where}.name"
            )
        if custom:
            raw = item.get("input")
            arguments = orjson.dumps({CUSTOM_INPUT: raw if isinstance(raw, str) else ""}).decode()
        else:
            arguments = _arguments(item.get("arguments"))
        assistant = self._open_assistant()
        if call_id in assistant.call_ids:
            return  # a repeated id in one message is a 400 upstream; its output answers the first
        assistant.call_ids.add(call_id)
        function = {"name": self._names.upstream(name, namespace_of(item)), "arguments": arguments}
        assistant.calls.append({"id": call_id, "type": "function", "function": function})

    def _output(self, where: str, item: dict) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            return  # cannot be paired with anything
        self._close_assistant()
        text, media = self._output_content(where, item.get("output"))
        if call_id in self._pending:
            del self._pending[call_id]
            self._out.append({"role": "tool", "tool_call_id": call_id, "content": text})
            if media:  # Chat allows images only in user messages
                self._media += [_text_part(f"[attachment from tool result {call_id}]"), *media]
            return
        orphan = [_text_part(f"[tool result {call_id}]\n{text}"), *media]
        self._held.append({"role": "user", "content": orphan if media else orphan[0]["text"]})

    def _output_content(self, where: str, output: object) -> tuple[str, list[dict]]:
        """(tool message text, images/files): a string, or input_text/input_image parts."""
        if isinstance(output, str):
            return output or _NO_OUTPUT, []
        if not isinstance(output, list):
            return (_NO_OUTPUT if output is None else orjson.dumps(output).decode()), []
        texts: list[str] = []
        media: list[dict] = []
        for j, part in enumerate(output):
            for converted in self._part(f"{where}.output[{j}]", part):
                if converted["type"] == "text":
                    texts.append(converted["text"])
                else:
                    media.append(converted)
        if media:
            texts.append("(attachment below)")
        return "\n".join(texts) or _NO_OUTPUT, media

    def _reasoning(self, item: dict) -> None:
        """Thinking for the next assistant message: our envelope, else the echoed text."""
        if not self._options.reasoning_content_in_history:
            return
        text = unseal(item.get("encrypted_content"))
        if text is None:
            text = _joined_text(item.get("content")) or _joined_text(item.get("summary"))
        if text:
            (self._assistant.thoughts if self._assistant else self._thoughts).append(text)

    def _open_assistant(self) -> _Assistant:
        if self._assistant is None:
            self._close_turn()
            self._assistant = _Assistant(self._thoughts)
            self._thoughts = []
        return self._assistant

    def _close_assistant(self) -> None:
        assistant, self._assistant = self._assistant, None
        if assistant is None or not (assistant.texts or assistant.calls):
            return  # reasoning-only or empty turns are rejected by some servers
        message: dict = {"role": "assistant", "content": "\n\n".join(assistant.texts) or None}
        if self._options.reasoning_content_in_history:
            message["reasoning_content"] = "\n\n".join(assistant.thoughts)
        if assistant.calls:
            message["tool_calls"] = assistant.calls
        self._out.append(message)
        self._pending = dict.fromkeys(assistant.call_ids)

    def _close_turn(self) -> None:
        """End the current assistant turn: answer interrupted calls (or the upstream 400s),
        then the tool outputs' images, then what was held back from the tool run."""
        self._close_assistant()
        for call_id in self._pending:
            self._out.append({"role": "tool", "tool_call_id": call_id, "content": _NO_RESULT})
        self._pending.clear()
        if self._media:
            self._out.append({"role": "user", "content": self._media})
            self._media = []
        self._out += self._held
        self._held = []

    def _parts(self, where: str, content: str | list) -> list[dict]:
        if isinstance(content, str):
            return self._part(where, content)
        return [p for j, part in enumerate(content) for p in self._part(f"{where}[{j}]", part)]

    def _part(self, where: str, part: object) -> list[dict]:
        """One input content part -> Chat parts; unknown parts with text render as text."""
        match part:
            case str():
                return [_text_part(part)] if part.strip() else []
            case {"type": "input_image"}:
                return [_image_part(where, part)]
            case {"type": "input_file"}:
                return [self._file_part(where, part)]
            case {"type": "input_audio", "input_audio": dict(audio)}:
                return [{"type": "input_audio", "input_audio": audio}]
            case {"text": str(text)} | {"type": "refusal", "refusal": str(text)}:
                return [_text_part(text)] if text.strip() else []
            case _:
                return []

    def _file_part(self, where: str, part: dict) -> dict:
        data = part.get("file_data")
        if isinstance(data, str) and data and self._options.file_parts:
            filename = part.get("filename")
            name = filename if isinstance(filename, str) and filename else "file"
            return {"type": "file", "file": {"filename": name, "file_data": data}}
        if part.get("file_id") is not None:
            raise InvalidRequest(
                f"{where}.file_id: file ids cannot be resolved (this gateway has no Files API); "
                "send file_data",
                f"{where}.file_id",
            )
        if not self._options.file_parts:
            raise InvalidRequest(
                f"{where}: input_file is not supported by this gateway's upstream", where
            )
        raise InvalidRequest(f"{where}.file_data: field required", f"{where}.file_data")


def _image_part(where: str, part: dict) -> dict:
    url = part.get("image_url")
    if isinstance(url, dict):  # the Chat shape, sent by some clients
        url = url.get("url")
    if isinstance(url, str) and url:
        image = {"url": url}
        if part.get("detail") in _IMAGE_DETAILS:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if part.get("file_id") is not None:
        raise InvalidRequest(
            f"{where}.file_id: file ids cannot be resolved (this gateway has no Files API); "
            "send image_url (a data URL works)",
            f"{where}.file_id",
        )
    raise InvalidRequest(f"{where}.image_url: field required", f"{where}.image_url")


def _found_tools(item: dict) -> object:
    """A tool_search_output as the tool message's text: the tools it returned (Codex), or its
    textual `output`."""
    tools = item.get("tools")
    return orjson.dumps(tools).decode() if isinstance(tools, list) else item.get("output")


def _arguments(raw: object) -> str:
    """Call arguments as the JSON text Chat wants; `"{}"` for none."""
    if isinstance(raw, str):
        return raw if raw.strip() else "{}"
    return "{}" if raw is None else orjson.dumps(raw).decode()


def _joined_text(content: object) -> str:
    """The text of a string or of text-bearing parts, blank-line joined."""
    if isinstance(content, str):
        return content if content.strip() else ""
    parts = content if isinstance(content, list) else []
    texts = [
        text
        for part in parts
        if isinstance(part, dict)
        and isinstance(text := part.get("text", part.get("refusal")), str)
        and text.strip()
    ]
    return "\n\n".join(texts)


def _text_part(text: str) -> dict:
    return {"type": "text", "text": text}
