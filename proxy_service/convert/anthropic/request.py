"""Anthropic Messages request -> OpenAI Chat Completions request body (conversion spec §2).

Permissive by design: Claude Code keeps adding fields and block types, so anything unknown is
dropped (top-level fields through an allowlist) and only a body that cannot mean anything raises
`InvalidRequest`. The output is deterministic so upstream prefix caches keep hitting.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

from proxy_service.convert.anthropic.token_count import count_tokens
from proxy_service.convert.model_map import ModelMap

_VALID_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_INVALID_TOOL_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_SCHEMA_DROP = frozenset({"$schema", "$comment"})
_SCHEMA_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_BILLING_HEADER = "x-anthropic-billing-header:"
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_MAX_STOP = 4  # OpenAI rejects more than four stop strings
_MAX_USER_ID = 64  # OpenAI's limit for `user`
_NO_RESULT = "(no result)"
_IDENTITY_MAP = ModelMap()
_SYSTEM_NOTE = "System note: "


class InvalidRequest(ValueError):
    """The body cannot be converted; the message is shown to the client as a 400."""


@dataclass(frozen=True, slots=True)
class ConversionOptions:
    """Per-upstream switches; every default is the portable choice."""

    model_map: ModelMap = _IDENTITY_MAP
    max_tokens_cap: int | None = None  # clamp max_tokens
    reasoning_content_in_history: bool = False  # DeepSeek/Kimi need thinking replayed
    stream_usage: bool = True  # add stream_options.include_usage when streaming
    send_reasoning_effort: bool = True  # OpenAI 400s `reasoning_effort` on non-reasoning models
    pdf_as_file_part: bool = True  # OpenAI `file` part; servers without it get a placeholder


@dataclass(frozen=True, slots=True)
class ConvertedRequest:
    """The upstream body plus what the response side needs to answer in Anthropic terms."""

    body: dict  # the OpenAI chat.completions request body
    requested_model: str  # as the client sent it (echoed back in responses)
    upstream_model: str
    stream: bool
    tool_names: dict[str, str]  # upstream (sanitized/hashed) name -> original; changed names only
    stop_sequences: tuple[str, ...]
    estimated_input_tokens: int  # from token_count (used in message_start when upstream gives none)


def anthropic_to_openai_request(body: object, options: ConversionOptions) -> ConvertedRequest:
    """Convert one `POST /v1/messages` body; raise InvalidRequest only for meaningless bodies."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        raise InvalidRequest("max_tokens: field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: field required (an array of messages)")

    names = _ToolNames()
    tools = _convert_tools(body.get("tools"), names)
    upstream_model = options.model_map.resolve(model)
    stream = body.get("stream") is True
    out: dict = {
        "model": upstream_model,
        "messages": _History(options, names).convert(body.get("system"), messages),
        "max_tokens": min(max_tokens, options.max_tokens_cap or max_tokens),
    }
    stops = tuple(s for s in _blocks(body.get("stop_sequences")) if isinstance(s, str) and s)
    if stops:
        out["stop"] = list(stops[:_MAX_STOP])
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    out["stream"] = stream
    if stream and options.stream_usage:
        out["stream_options"] = {"include_usage": True}
    if tools:
        out["tools"] = tools
        out.update(_tool_choice(body.get("tool_choice"), tools, names))
    if options.send_reasoning_effort and (effort := _reasoning_effort(body)):
        out["reasoning_effort"] = effort
    if response_format := _response_format(body):
        out["response_format"] = response_format
    if user := _user(body.get("metadata")):
        out["user"] = user
    return ConvertedRequest(
        body=out,
        requested_model=model,
        upstream_model=upstream_model,
        stream=stream,
        tool_names=names.originals,
        stop_sequences=stops,
        estimated_input_tokens=count_tokens(body),
    )


class _ToolNames:
    """OpenAI-safe tool names for one request, remembering the originals to restore later."""

    def __init__(self) -> None:
        self.originals: dict[str, str] = {}

    def upstream(self, name: str) -> str:
        """`name` if OpenAI accepts it, else a stable <=64-char prefix + sha256 form."""
        if _VALID_TOOL_NAME.fullmatch(name):
            return name
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{_INVALID_TOOL_CHARS.sub('_', name)[:55]}_{digest}"
        self.originals[safe] = name
        return safe


def _convert_tools(raw: object, names: _ToolNames) -> list[dict]:
    """Custom tools become functions; server tools (typed, e.g. `web_search_20250305`) drop."""
    if not isinstance(raw, list):
        return []
    tools: list[dict] = []
    seen: set[str] = set()
    for tool in raw:
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue
        name = tool.get("name")
        upstream = names.upstream(name if isinstance(name, str) else "")
        if upstream in seen:
            continue  # a duplicate definition is a 400 on strict servers
        seen.add(upstream)
        function: dict = {"name": upstream}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        function["parameters"] = _parameters(tool.get("input_schema"))
        tools.append({"type": "function", "function": function})
    return tools


def _parameters(schema: object) -> dict:
    """A JSON schema OpenAI accepts: `type: object`, `properties` present, no `$schema`."""
    if not isinstance(schema, dict):
        params: object = {}
    elif _dropped_only_at_top(schema):
        params = {key: value for key, value in schema.items() if key not in _SCHEMA_DROP}
    else:
        params = _clean_schema(schema)
    assert isinstance(params, dict)
    params["type"] = "object"
    if not isinstance(params.get("properties"), dict):
        params["properties"] = {}
    return params


def _dropped_only_at_top(schema: dict) -> bool:
    """Whether the only `$` in the schema's JSON are the keywords to drop at its top level,
    asked at C speed: then a shallow copy is the clean schema (its nested values are shared,
    never changed), where the deep copy in Python costs about twice as much (Claude Code sends 24
    tools a turn). Schemas with `$ref`, `$defs` or a `$` in any text take the deep copy."""
    try:
        text = orjson.dumps(schema)
    except TypeError:  # not what a parsed body holds: the full walk copes
        return False
    return text.count(b"$") == sum(key in schema for key in _SCHEMA_DROP)


def _clean_schema(node: object, *, name_map: bool = False) -> object:
    """Copy a schema without `$schema`/`$comment` keywords (property names are kept as-is)."""
    if isinstance(node, dict):
        if name_map:
            return {key: _clean_schema(value) for key, value in node.items()}
        return {
            key: _clean_schema(value, name_map=key in _SCHEMA_NAME_MAPS)
            for key, value in node.items()
            if key not in _SCHEMA_DROP
        }
    if isinstance(node, list):
        return [_clean_schema(value) for value in node]
    return node


def _tool_choice(raw: object, tools: list[dict], names: _ToolNames) -> dict:
    """auto/any/tool/none -> auto/required/function/none, plus `parallel_tool_calls: false`."""
    if not isinstance(raw, dict):
        return {}
    out: dict = {}
    kind = raw.get("type")
    if choice := _TOOL_CHOICES.get(kind) if isinstance(kind, str) else None:
        out["tool_choice"] = choice
    elif kind == "tool" and isinstance(name := raw.get("name"), str):
        upstream = names.upstream(name)
        # A choice naming a dropped (server) tool would be a 400: leave the choice to the model.
        if any(tool["function"]["name"] == upstream for tool in tools):
            out["tool_choice"] = {"type": "function", "function": {"name": upstream}}
    if kind in ("auto", "any", "tool") and raw.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _reasoning_effort(body: dict) -> str | None:
    """thinking.budget_tokens buckets (LiteLLM's: <2048 low, <4096 medium) or adaptive effort."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    match thinking.get("type"):
        case "enabled":
            budget = thinking.get("budget_tokens")
            if type(budget) is not int:
                return "medium"
            return "low" if budget < 2048 else "medium" if budget < 4096 else "high"
        case "adaptive":
            config = body.get("output_config")
            effort = config.get("effort") if isinstance(config, dict) else None
            return _EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium"
        case _:
            return None


def _response_format(body: dict) -> dict | None:
    """output_config.format (or legacy output_format) json_schema -> OpenAI response_format."""
    config = body.get("output_config")
    match (config.get("format") if isinstance(config, dict) else None) or body.get("output_format"):
        case {"type": "json_schema", "schema": dict(schema)}:
            return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        case _:
            return None


def _user(metadata: object) -> str | None:
    """metadata.user_id, hashed when longer than OpenAI's 64 chars (Claude Code's is ~150)."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    if len(user_id) <= _MAX_USER_ID:
        return user_id
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def _blocks(content: object) -> list:
    """A string or a list of blocks, as a list (anything else is no content)."""
    return [content] if isinstance(content, str) else content if isinstance(content, list) else []


def _text_of(content: object, separator: str) -> str:
    """System/note text: a string, or the text blocks joined, billing-header lines removed."""
    kept = []
    for block in _blocks(content):
        text = block.get("text") if isinstance(block, dict) else block
        if not isinstance(text, str):
            continue
        if text.startswith(_BILLING_HEADER):
            # Claude Code's per-request `cch=` value would defeat upstream prefix caching.
            text = text.partition("\n")[2]
        if text.strip():
            kept.append(text)
    return separator.join(kept)


class _History:
    """Builds the OpenAI message list and owns tool-call adjacency (results, orphans)."""

    def __init__(self, options: ConversionOptions, names: _ToolNames) -> None:
        self._options = options
        self._names = names
        self._out: list[dict] = []
        self._pending: dict[str, None] = {}  # call ids of the last assistant still unanswered

    def convert(self, system: object, messages: list) -> list[dict]:
        if text := _text_of(system, "\n\n"):
            self._out.append({"role": "system", "content": text})
        held: list[str] = []  # mid-conversation system notes waiting for a safe spot
        for position, message in enumerate(messages):
            if not isinstance(message, dict):
                raise InvalidRequest(f"messages.{position}: must be an object")
            content = message.get("content")
            if not isinstance(content, str | list):
                raise InvalidRequest(
                    f"messages.{position}.content: must be a string or an array of content blocks"
                )
            role = message.get("role")
            if role == "system":
                if note := _text_of(content, "\n\n"):
                    held.append(note)
                continue
            answers_tools = role != "assistant" and _has_tool_result(content)
            if not answers_tools:
                self._flush_notes(held)
            if role == "assistant":
                self._add_assistant(content)
            else:
                self._add_user(content)
            self._flush_notes(held)
        self._flush_notes(held)
        if self._out and self._out[-1]["role"] == "assistant" and not self._pending:
            self._out.pop()  # a text-only final assistant turn is a prefill: no portable meaning
        self._answer_pending()
        return self._out

    def _flush_notes(self, held: list[str]) -> None:
        """Mid-conversation system entries as user notes, kept clear of tool adjacency (§2.3)."""
        for note in held:
            self._append({"role": "user", "content": _SYSTEM_NOTE + note})
        held.clear()

    def _append(self, message: dict) -> None:
        if message["role"] != "tool":
            self._answer_pending()
        self._out.append(message)

    def _answer_pending(self) -> None:
        """Interrupted turns: every tool call needs a tool message or the upstream 400s."""
        for call_id in self._pending:
            self._out.append({"role": "tool", "tool_call_id": call_id, "content": _NO_RESULT})
        self._pending.clear()

    def _add_assistant(self, content: str | list) -> None:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict] = []
        for block in [content] if isinstance(content, str) else content:
            match block:
                case str() | {"type": "text", "text": str()}:
                    text = block if isinstance(block, str) else block["text"]
                    if text.strip():
                        texts.append(text)
                case {"type": "tool_use", "id": str(call_id), "name": str(name)} if call_id:
                    calls.append(
                        _tool_call(call_id, self._names.upstream(name), block.get("input"))
                    )
                case {"type": "thinking", "thinking": str(thinking)}:
                    thoughts.append(thinking)
        if not texts and not calls:
            return  # thinking-only or empty turns are rejected by some servers
        message: dict = {"role": "assistant", "content": "\n\n".join(texts) or None}
        if self._options.reasoning_content_in_history:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        self._append(message)
        self._pending = dict.fromkeys(call["id"] for call in calls)

    def _add_user(self, content: str | list) -> None:
        if isinstance(content, str):
            if content.strip():
                self._append({"role": "user", "content": content})
            return
        attached: list[dict] = []  # images out of tool results, labelled, before the user's parts
        parts: list[dict] = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                self._add_tool_result(block, attached, parts)
            else:
                parts.extend(self._parts(block))
        parts = attached + parts
        if not parts:
            self._answer_pending()
            return
        if len(parts) == 1 and parts[0]["type"] == "text":
            self._append({"role": "user", "content": parts[0]["text"]})
        else:
            self._append({"role": "user", "content": parts})

    def _add_tool_result(self, block: dict, attached: list[dict], parts: list[dict]) -> None:
        """Exactly one tool message per result; orphans and duplicates become user text."""
        call_id = block.get("tool_use_id")
        texts: list[str] = []
        media: list[dict] = []  # OpenAI allows images only in user messages
        for part in (p for item in _blocks(block.get("content")) for p in self._parts(item)):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                media.append(part)
        if media:
            texts.append("(attachment below)")
        text = "\n".join(texts)
        if block.get("is_error") is True:
            text = f"Error: {text}"
        if isinstance(call_id, str) and call_id in self._pending:
            del self._pending[call_id]
            self._out.append({"role": "tool", "tool_call_id": call_id, "content": text})
            if media:
                attached.append(_text_part(f"[attachment from tool result {call_id}]"))
                attached.extend(media)
            return
        parts.append(_text_part(f"[tool result {call_id}]\n{text}"))
        parts.extend(media)

    def _parts(self, block: object) -> list[dict]:
        """One user content block -> OpenAI parts; unknown blocks with text render as text."""
        match block:
            case str():
                return [_text_part(block)] if block.strip() else []
            case {"type": "image", "source": dict(source)}:
                return [_image_part(source)]
            case {"type": "document", "source": dict(source)}:
                return self._document_parts(block, source)
            case {"type": "text", "text": str(text)} if text.strip():
                return [_text_part(text)]
            case {"type": "search_result"}:
                body = _text_of(block.get("content"), "\n")
                return self._parts(f"{block.get('title', '')}\n{block.get('source', '')}\n{body}")
            case {
                "type": "text" | "thinking" | "redacted_thinking" | "tool_use" | "tool_reference"
            }:
                return []
            case {"text": str(text)}:
                return self._parts(text)
            case _:
                return []

    def _document_parts(self, block: dict, source: dict) -> list[dict]:
        """PDF -> `file` part (or placeholder), text/content sources -> text, others placeholder."""
        title = block.get("title") if isinstance(block.get("title"), str) else ""
        match source.get("type"):
            case "base64" if self._options.pdf_as_file_part:
                data = f"data:{source.get('media_type') or 'application/pdf'};base64,"
                file = {
                    "filename": title or "document.pdf",
                    "file_data": data + source.get("data", ""),
                }
                return [{"type": "file", "file": file}]
            case "text":
                texts = (title, block.get("context"), source.get("data"))
                return self._parts("\n\n".join(t for t in texts if isinstance(t, str) and t))
            case "content":
                return [
                    part for item in _blocks(source.get("content")) for part in self._parts(item)
                ]
            case kind:
                where = source.get("url") or source.get("file_id") or title or "untitled"
                return [_text_part(f"[{kind} document not forwarded: {where}]")]


def _has_tool_result(content: str | list) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def _image_part(source: dict) -> dict:
    """base64 -> data URI, url -> as is; Files API ids cannot be forwarded (placeholder)."""
    match source.get("type"):
        case "base64":
            media_type = source.get("media_type") or "image/png"
            url = f"data:{media_type};base64,{source.get('data', '')}"
        case "url" if isinstance(source.get("url"), str):
            url = source["url"]
        case kind:
            return _text_part(f"[{kind} image not forwarded: {source.get('file_id', '')}]")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call(call_id: str, name: str, arguments: object) -> dict:
    encoded = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}
