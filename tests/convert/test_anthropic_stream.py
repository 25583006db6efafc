"""OpenAI SSE -> Anthropic SSE (spec §4); scenarios 1-9, 19, 22-24, 26, 29, 36-38.

Every translated stream goes through `check_grammar` (the rules strict clients enforce, §4.1) and
most also through the SDK's own accumulator, so "valid" means what the anthropic SDK says it is.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable

import anthropic
import httpx2
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_service.convert.anthropic.request import (
    ConversionOptions,
    ConvertedRequest,
    anthropic_to_openai_request,
)
from proxy_service.convert.anthropic.stream import AnthropicStreamTranslator
from tests.convert.chat_chunks import chunk, content, finish, reasoning, sse, tool, usage
from tests.convert.frames import parse_frames, run

LONG_TOOL = "mcp__claude_ai_Some_Very_Long_Server_Name__some_extremely_long_tool_name_here"
BLOCK_DELTA = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}


def make_request(**fields: object) -> ConvertedRequest:
    body = {
        "model": "claude-proxy-test",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Read"}, {"name": "Bash"}, {"name": LONG_TOOL}],
        **fields,
    }
    return anthropic_to_openai_request(body, ConversionOptions())


REQUEST = make_request()


# -- running and checking ---------------------------------------------------------------------


def translate(
    raw: bytes, request: ConvertedRequest = REQUEST, cuts: Iterable[int] = ()
) -> tuple[list[bytes], AnthropicStreamTranslator]:
    translator = AnthropicStreamTranslator(request, "msg_test")
    return run(translator, raw, cuts), translator


def check_grammar(frames: list[bytes]) -> list[dict]:
    """The §4.1 rules: order, contiguous indexes, matching delta types, parseable tool input."""
    events = parse_frames(frames)
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1
    if kinds[-1] == "error":
        assert "message_stop" not in kinds and kinds.count("error") == 1
    else:
        assert kinds[-2:] == ["message_delta", "message_stop"]
        assert kinds.count("message_delta") == kinds.count("message_stop") == 1
    blocks: list[dict] = []
    open_index: int | None = None
    for event in events:
        match event["type"]:
            case "content_block_start":
                assert open_index is None and event["index"] == len(blocks)
                block = event["content_block"]
                assert block in (
                    {"type": "text", "text": ""},
                    {"type": "thinking", "thinking": "", "signature": ""},
                ) or (
                    block["type"] == "tool_use"
                    and block["input"] == {}
                    and block["id"]
                    and block["name"]
                )
                open_index = event["index"]
                blocks.append({"type": block["type"], "body": []})
            case "content_block_delta":
                assert event["index"] == open_index
                delta = event["delta"]
                block = blocks[open_index]
                assert delta["type"] == BLOCK_DELTA[block["type"]]
                piece = delta.get("text", delta.get("thinking", delta.get("partial_json")))
                assert piece or delta["type"] == "input_json_delta"
                block["body"].append(piece)
            case "content_block_stop":
                assert event["index"] == open_index
                block = blocks[open_index]
                if block["type"] == "tool_use":
                    assert isinstance(json.loads("".join(block["body"])), dict)
                else:
                    assert "".join(block["body"]), "empty text/thinking block"
                open_index = None
            case "message_delta":
                assert open_index is None
                assert set(event["usage"]) == {
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "output_tokens",
                }
                assert event["delta"]["stop_reason"] in (
                    "end_turn",
                    "max_tokens",
                    "stop_sequence",
                    "tool_use",
                    "refusal",
                )
    return events


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def sdk_accumulate(events: list[dict]):
    """Fold our events with the SDK's own accumulator (what `get_final_message` returns)."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] not in ("ping", "error"):
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def sdk_client(frames: list[bytes]) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, content=b"".join(frames), headers={"content-type": "text/event-stream"}
        )

    return anthropic.Anthropic(
        api_key="k",
        base_url="http://proxy.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def sdk_final_message(frames: list[bytes]):
    """SDK-e2e: the official client's `messages.stream(...).get_final_message()` on our bytes."""
    with sdk_client(frames).messages.stream(
        model="claude-proxy-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def tool_inputs(events: list[dict]) -> list[object]:
    """Joined partial_json per tool block, parsed."""
    joined: dict[int, str] = {}
    for event in events:
        if event["type"] == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            joined[event["index"]] = joined.get(event["index"], "") + event["delta"]["partial_json"]
    return [json.loads(v) for _, v in sorted(joined.items())]


HEAD = ["message_start", "ping"]
TAIL = ["message_delta", "message_stop"]
TEXT_BLOCK = ["content_block_start", "content_block_delta", "content_block_stop"]


# -- scenarios --------------------------------------------------------------------------------


def test_s01_text_only() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        content("Hello"),
        content(", world"),
        finish("stop"),
        usage(20, 7, cached=8),
    )
    frames, translator = translate(raw)
    events = check_grammar(frames)
    assert types(events) == [
        *HEAD,
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        *TAIL,
    ]
    start = events[0]["message"]
    assert start == {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-proxy-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": REQUEST.estimated_input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 8,
            "output_tokens": 7,
        },
    }
    final = sdk_final_message(frames)
    assert final.content[0].text == "Hello, world"
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "end_turn",
        12,
        7,
    )
    assert final.usage.cache_read_input_tokens == 8
    assert translator.usage == {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "cached_tokens": 8,
    }
    assert (translator.upstream_id, translator.upstream_model, translator.stop_reason) == (
        "chatcmpl-1",
        "up",
        "end_turn",
    )
    assert translator.error is None and not translator.usage_estimated


def test_s02_fragmented_tool_arguments() -> None:
    arguments = json.dumps({"file_path": "/src/proxy/main.py", "offset": 10, "limit": 200})
    fragments = [arguments[i : i + 3] for i in range(0, len(arguments), 3)]
    assert len(fragments) >= 20
    raw = sse(
        tool(0, "call_abc", "Read", ""),
        *(tool(0, args=f) for f in fragments),
        finish("tool_calls"),
        usage(),
    )
    frames, _ = translate(raw)
    events = check_grammar(frames)
    assert types(events) == [*HEAD, *TEXT_BLOCK, *TAIL]
    assert events[2]["content_block"] == {
        "type": "tool_use",
        "id": "call_abc",
        "name": "Read",
        "input": {},
    }
    assert tool_inputs(events) == [json.loads(arguments)]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    final = sdk_final_message(frames)
    assert [b.type for b in final.content] == ["tool_use"]
    assert final.content[0].input == json.loads(arguments)
    assert final.stop_reason == "tool_use"


def test_s03_text_then_tool_keeps_first_token_and_first_fragment() -> None:
    raw = sse(
        content("I"),
        content(" will read it."),
        tool(0, "call_1", "Read", '{"file_'),
        tool(0, args='path": "/a"}'),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    assert types(events) == [
        *HEAD,
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        *TEXT_BLOCK,
        *TAIL,
    ]
    assert events[3]["delta"]["text"] == "I"
    assert (events[5]["index"], events[6]["index"]) == (0, 1)
    assert tool_inputs(events) == [{"file_path": "/a"}]


def test_s04_two_parallel_calls() -> None:
    raw = sse(
        content("Checking."),
        tool(0, "call_a", "Read", ""),
        tool(0, args='{"file_path": "/a"}'),
        tool(1, "call_b", "Read", ""),
        tool(1, args='{"file_path": "/b"}'),
        finish("tool_calls"),
        usage(),
    )
    frames, _ = translate(raw)
    events = check_grammar(frames)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "text"),
        (1, "tool_use"),
        (2, "tool_use"),
    ]
    assert [s["content_block"]["id"] for s in starts[1:]] == ["call_a", "call_b"]
    assert tool_inputs(events) == [{"file_path": "/a"}, {"file_path": "/b"}]
    assert types(events).count("message_delta") == 1
    final = sdk_accumulate(events)
    assert [b.input for b in final.content[1:]] == [{"file_path": "/a"}, {"file_path": "/b"}]


def test_s05_name_and_full_arguments_in_one_chunk() -> None:
    raw = sse(tool(0, "call_1", "Bash", '{"command": "ls -la"}'), finish("tool_calls"))
    events = check_grammar(translate(raw)[0])
    assert tool_inputs(events) == [{"command": "ls -la"}]


def test_s05_single_fake_streaming_chunk_loses_nothing() -> None:
    single = chunk(
        {
            "role": "assistant",
            "reasoning_content": "think",
            "content": "All at once.",
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"file_path": "/x"}'},
                }
            ],
        },
        "tool_calls",
        usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    )
    frames, _ = translate(sse(single))
    events = check_grammar(frames)
    final = sdk_accumulate(events)
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[1].text == "All at once."
    assert final.content[2].input == {"file_path": "/x"}
    assert (final.stop_reason, final.usage.output_tokens) == ("tool_use", 3)


def test_s06_stop_with_tool_calls_is_tool_use() -> None:
    events = check_grammar(translate(sse(tool(0, "c", "Read", "{}"), finish("stop")))[0])
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_s06_tool_calls_reason_without_a_buildable_call_is_end_turn() -> None:
    raw = sse(content("hm"), tool(0, "c", None, '{"a": 1}'), finish("tool_calls"))
    events = check_grammar(translate(raw)[0])
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert "tool_use" not in orjson.dumps(events).decode()


def test_s06_length_wins_over_tool_use() -> None:
    raw = sse(tool(0, "c", "Read", '{"a": 1, "b": "tex'), finish("length"))
    events = check_grammar(translate(raw)[0])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert tool_inputs(events) == [{"a": 1, "b": "tex"}]  # truncated arguments repaired


def test_s07_usage_after_finish_reason_is_in_the_single_message_delta() -> None:
    events = check_grammar(translate(sse(content("hi"), finish(), usage(100, 42)))[0])
    deltas = [e for e in events if e["type"] == "message_delta"]
    assert len(deltas) == 1
    assert deltas[0]["usage"]["output_tokens"] == 42


def test_s07_usage_on_every_chunk_never_closes_a_block_early() -> None:
    def with_usage(c: dict, n: int) -> dict:
        return c | {"usage": {"prompt_tokens": 50, "completion_tokens": n, "total_tokens": 50 + n}}

    raw = sse(
        with_usage(tool(0, "c1", "Read", ""), 1),
        with_usage(tool(0, args='{"file_path":'), 2),
        with_usage(tool(0, args=' "/a"}'), 3),
        with_usage(finish("tool_calls"), 4),
    )
    events = check_grammar(translate(raw)[0])
    assert types(events) == [*HEAD, *TEXT_BLOCK, *TAIL]
    assert tool_inputs(events) == [{"file_path": "/a"}]
    assert events[-2]["usage"]["output_tokens"] == 4


def test_s08_no_usage_at_all_is_estimated() -> None:
    frames, translator = translate(sse(content("word " * 70), finish()))
    events = check_grammar(frames)
    assert events[-2]["usage"]["output_tokens"] == 100
    assert events[-2]["usage"]["input_tokens"] == REQUEST.estimated_input_tokens > 0
    assert translator.usage_estimated
    assert translator.usage["prompt_tokens"] == REQUEST.estimated_input_tokens
    assert translator.usage["completion_tokens"] == 100


def test_s09_reasoning_content_tool() -> None:
    raw = sse(
        reasoning("Let me"),
        reasoning(" think."),
        content("Answer"),
        tool(0, "c1", "Read", '{"file_path": "/a"}'),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    thinking_deltas = [
        e["delta"]["type"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0
    ]
    assert thinking_deltas == ["thinking_delta", "thinking_delta"]
    assert sdk_accumulate(events).content[0].thinking == "Let me think."


def test_s09_reasoning_after_tool_opens_a_new_thinking_block() -> None:
    raw = sse(
        reasoning("first"),
        tool(0, "c1", "Read", '{"file_path": "/a"}'),
        chunk({"reasoning": "second"}),  # OpenRouter's field name
        content("done"),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "tool_use", "thinking", "text"]
    final = sdk_accumulate(events)
    assert [final.content[0].thinking, final.content[2].thinking] == ["first", "second"]


def test_text_after_tool_gets_its_own_block() -> None:
    raw = sse(content("a"), tool(0, "c1", "Read", "{}"), content("b"), finish())
    events = check_grammar(translate(raw)[0])
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["text", "tool_use", "text"]


def test_s19_mid_stream_failure_ends_with_an_error_frame() -> None:
    translator = AnthropicStreamTranslator(REQUEST, "msg_test")
    frames = translator.start() + translator.feed(sse(content("partial answer"), done=False))
    frames += translator.fail("upstream connection lost")
    events = check_grammar(frames)
    assert events[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream connection lost"},
    }
    assert translator.error == "upstream connection lost"
    assert translator.feed(sse(content("more"))) == []
    assert translator.finish() == []
    assert translator.fail("again") == []
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_final_message(frames)
    assert caught.value.body == events[-1]


def test_fail_after_a_completed_stream_emits_nothing() -> None:
    translator = AnthropicStreamTranslator(REQUEST, "msg_test")
    translator.start()
    translator.feed(sse(content("x")))
    assert translator.fail("late") == []
    assert translator.error is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1,}', {"a": 1}),
        ("{'a': 'b'}", {"a": "b"}),
        ('"{\\"a\\": 2}"', {"a": 2}),
        ("not json at all", {"_raw_arguments": "not json at all"}),
        ("[1]", {"value": [1]}),
    ],
)
def test_s22_invalid_arguments_still_give_an_object(arguments: str, expected: dict) -> None:
    mid = len(arguments) // 2
    raw = sse(
        tool(0, "c1", "Read", arguments[:mid]), tool(0, args=arguments[mid:]), finish("tool_calls")
    )
    frames, _ = translate(raw)
    events = check_grammar(frames)
    assert tool_inputs(events) == [expected]
    assert sdk_final_message(frames).content[0].input == expected


def test_s23_unicode_split_everywhere() -> None:
    arguments = json.dumps({"text": "中文 😀 ünï"}, ensure_ascii=True)  # \uXXXX escapes
    raw = sse(
        content("Grüße 你好 "),
        content("🎉"),
        tool(0, "c1", "Read", arguments[:13]),
        tool(0, args=arguments[13:]),
        finish("tool_calls"),
    )
    expected, _ = translate(raw)
    for cut in range(1, len(raw)):
        assert translate(raw, cuts=[cut])[0] == expected
    events = check_grammar(expected)
    final = sdk_accumulate(events)
    assert final.content[0].text == "Grüße 你好 🎉"
    assert final.content[1].input == {"text": "中文 😀 ünï"}


def test_s23_lone_surrogate_and_invalid_utf8_do_not_crash() -> None:
    raw = (
        b'data: {"choices":[{"index":0,"delta":{"content":"a\\ud800b"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"c\xffd"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    events = check_grammar(translate(raw)[0])
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert texts == ["a?b", "c\ufffdd"]


def test_s24_parallel_calls_all_at_index_zero() -> None:
    raw = sse(
        tool(0, "call_a", "Read", '{"file_path": "/a"}'),
        tool(0, "call_b", "Bash", ""),
        tool(0, args='{"command": "ls"}'),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(s["id"], s["name"]) for s in starts] == [("call_a", "Read"), ("call_b", "Bash")]
    assert tool_inputs(events) == [{"file_path": "/a"}, {"command": "ls"}]


def test_s24_resent_id_and_name_on_every_chunk() -> None:
    raw = sse(
        tool(0, "call_a", "Read", '{"file_'),
        tool(0, "call_a", "Read", 'path": '),
        tool(0, "call_a", "Read", '"/a"}'),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    assert types(events) == [*HEAD, *TEXT_BLOCK, *TAIL]
    assert tool_inputs(events) == [{"file_path": "/a"}]


def test_s24_cumulative_argument_snapshots() -> None:
    raw = sse(
        tool(0, "call_a", "Read", ""),
        tool(0, args='{"file_path": '),
        tool(0, args='{"file_path": "/a'),
        tool(0, args='{"file_path": "/a"}'),
        tool(0, args='{"file_path": "/a"}'),
        finish("tool_calls"),
    )
    assert tool_inputs(check_grammar(translate(raw)[0])) == [{"file_path": "/a"}]


def test_tool_name_streamed_in_fragments_and_missing_index() -> None:
    raw = sse(
        tool(None, "call_a", "Re", ""),
        tool(None, name="ad"),
        tool(None, args="{}"),
        finish("tool_calls"),
    )
    events = check_grammar(translate(raw)[0])
    assert events[2]["content_block"]["name"] == "Read"


def test_tool_without_arguments_is_sent_at_the_end_and_ids_are_normalized() -> None:
    raw = sse(tool(0, "functions.Read:0", "Read", ""), content("meanwhile"), finish("tool_calls"))
    events = check_grammar(translate(raw)[0])
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["text", "tool_use"]
    assert starts[1]["id"].startswith("toolu_")
    assert tool_inputs(events) == [{}]


def test_late_arguments_for_a_closed_tool_are_dropped_safely() -> None:
    raw = sse(
        tool(0, "call_a", "Read", '{"file_path": "/a"}'),
        tool(1, "call_b", "Bash", '{"command": "ls"}'),
        tool(0, args="garbage"),
        finish("tool_calls"),
    )
    assert tool_inputs(check_grammar(translate(raw)[0])) == [{"file_path": "/a"}, {"command": "ls"}]


def test_repeated_upstream_ids_are_made_unique() -> None:
    raw = sse(tool(0, "dup", "Read", "{}"), tool(1, "dup", "Bash", "{}"), finish("tool_calls"))
    events = check_grammar(translate(raw)[0])
    ids = [e["content_block"]["id"] for e in events if e["type"] == "content_block_start"]
    assert ids[0] == "dup" and ids[1] != "dup"


def test_s26_hashed_tool_name_is_restored() -> None:
    upstream_name = next(iter(REQUEST.tool_names))
    raw = sse(tool(0, "c1", upstream_name, "{}"), finish("tool_calls"))
    events = check_grammar(translate(raw)[0])
    assert events[2]["content_block"]["name"] == LONG_TOOL


def test_s29_ping_frames_anywhere_are_harmless() -> None:
    translator = AnthropicStreamTranslator(REQUEST, "msg_test")
    assert translator.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'
    frames, _ = translate(sse(content("a"), tool(0, "c", "Read", "{}"), finish()))
    with_pings = [f for frame in frames for f in (frame, translator.ping())]
    events = check_grammar(with_pings)
    assert sdk_final_message(with_pings).content[1].input == {}
    assert types(events).count("ping") == len(frames) + 1


def test_s36_empty_completion_has_zero_blocks() -> None:
    frames, _ = translate(
        sse(chunk({"role": "assistant", "content": ""}), content(""), finish(), usage(5, 0))
    )
    events = check_grammar(frames)
    assert types(events) == [*HEAD, *TAIL]
    final = sdk_final_message(frames)
    assert final.content == [] and final.stop_reason == "end_turn"


def test_s37_concurrent_streams_do_not_cross_talk() -> None:
    rng = random.Random(37)
    layouts = []
    for n in range(20):
        parts = [content(f"stream {n}")]
        for t in range(n % 4):
            parts += [
                tool(t, f"call_{n}_{t}", "Read", ""),
                tool(t, args=json.dumps({"n": n, "t": t})),
            ]
        layouts.append(sse(*parts, finish("tool_calls"), usage(n + 1, n + 2)))
    solo = [translate(raw)[0] for raw in layouts]
    translators = [AnthropicStreamTranslator(REQUEST, "msg_test") for _ in layouts]
    outputs = [t.start() for t in translators]
    offsets = [0] * len(layouts)
    while any(offset < len(raw) for offset, raw in zip(offsets, layouts, strict=True)):
        i = rng.randrange(len(layouts))
        step = rng.randint(1, 40)
        outputs[i] += translators[i].feed(layouts[i][offsets[i] : offsets[i] + step])
        offsets[i] += step
    for i, translator in enumerate(translators):
        outputs[i] += translator.finish()
        assert outputs[i] == solo[i]
        check_grammar(outputs[i])


def test_s38_malformed_chunk_is_skipped() -> None:
    raw = (
        sse(content("a"), done=False)
        + b"data: {not json\n\n"
        + b"data: \n\n"
        + sse(content("b"), finish())
    )
    events = check_grammar(translate(raw)[0])
    assert sdk_accumulate(events).content[0].text == "ab"


@pytest.mark.parametrize(
    ("error_chunk", "error_type"),
    [
        ({"error": {"message": "Internal failure", "type": "server_error"}}, "api_error"),
        ({"error": {"message": "Slow down", "code": 429}}, "rate_limit_error"),
        ({"error": {"message": "Model is overloaded"}}, "overloaded_error"),
        ({"error": "bare string"}, "api_error"),
        (
            {
                "object": "error",
                "error": {"message": "maximum context length is 8 tokens", "code": 400},
            },
            "invalid_request_error",
        ),
    ],
)
def test_s38_upstream_error_chunk_takes_the_error_path(error_chunk: dict, error_type: str) -> None:
    raw = sse(content("partial"), error_chunk, content("never"), finish())
    frames, translator = translate(raw)
    events = check_grammar(frames)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == error_type
    assert translator.error == events[-1]["error"]["message"]
    assert translator.stop_reason is None


def test_named_error_event_from_upstream() -> None:
    raw = sse(content("x"), done=False) + b"event: error\ndata: upstream exploded\n\n"
    events = check_grammar(translate(raw)[0])
    assert events[-1]["error"] == {"type": "api_error", "message": "upstream exploded"}


def test_missing_done_and_sse_variants() -> None:
    raw = (
        b": keep-alive\r\n\r\ndata:"
        + orjson.dumps(content("no space"))
        + b"\r\n\r\nevent: message\ndata: "
        + orjson.dumps(finish())
    )
    events = check_grammar(translate(raw)[0])  # no [DONE], no final blank line
    assert sdk_accumulate(events).content[0].text == "no space"


def test_done_finalizes_immediately_and_later_input_is_ignored() -> None:
    translator = AnthropicStreamTranslator(REQUEST, "msg_test")
    frames = translator.start() + translator.feed(
        sse(content("a"), finish()) + sse(content("late"))
    )
    assert types(check_grammar(frames))[-1] == "message_stop"
    assert translator.feed(sse(content("more"))) == []
    assert translator.finish() == []
    assert translator.start() == []


def test_feed_without_start_still_begins_with_message_start() -> None:
    translator = AnthropicStreamTranslator(REQUEST, "msg_test")
    frames = translator.feed(sse(content("x"))) + translator.finish()
    assert types(check_grammar(frames))[:2] == HEAD


def test_stop_sequence_from_vllm_stop_reason() -> None:
    request = make_request(stop_sequences=["</done>"])
    final_chunk = finish("stop")
    final_chunk["choices"][0]["stop_reason"] = "</done>"
    events = check_grammar(translate(sse(content("x"), final_chunk), request)[0])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "</done>"}


# -- properties -------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_args = st.dictionaries(st.text(max_size=6), st.text(max_size=10) | st.integers(-5, 5), max_size=3)
_segment = st.one_of(
    st.tuples(st.just("thinking"), _text),
    st.tuples(st.just("text"), _text),
    st.tuples(
        st.just("tool_use"),
        st.sampled_from(["Read", "Bash"]),
        _args,
        st.booleans(),
        st.integers(1, 6),
    ),
)


@st.composite
def upstream_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, object]]]:
    """A random OpenAI stream and the Anthropic content the SDK must assemble from it."""
    segments = draw(st.lists(_segment, max_size=6))
    chunks: list[dict] = []
    expected: list[tuple[str, object]] = []
    tool_index = 0
    for segment in segments:
        kind = segment[0]
        if kind == "tool_use":
            _, name, args, ascii_escapes, pieces = segment
            encoded = json.dumps(args, ensure_ascii=ascii_escapes)
            cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=pieces)))
            bounds = [0, *cuts, len(encoded)]
            chunks.append(tool(tool_index, f"call_{tool_index}", name, ""))
            chunks += [tool(tool_index, args=encoded[a:b]) for a, b in itertools.pairwise(bounds)]
            expected.append(("tool_use", (name, args)))
            tool_index += 1
            continue
        value = segment[1]
        chunks.append(reasoning(value) if kind == "thinking" else content(value))
        if expected and expected[-1][0] == kind:
            expected[-1] = (kind, expected[-1][1] + value)
        else:
            expected.append((kind, value))
    chunks += [finish("tool_calls" if tool_index else "stop"), usage()]
    return sse(*chunks, done=draw(st.booleans())), expected


@settings(max_examples=200, deadline=None)
@given(upstream_streams(), st.lists(st.integers(0, 10_000), max_size=12))
def test_random_byte_splits_give_identical_valid_frames(
    stream: tuple[bytes, list[tuple[str, object]]], cut_seeds: list[int]
) -> None:
    """s1-s4, s9, s23: any byte split (inside UTF-8 chars, JSON strings, \\u escapes) gives the
    same frames, and the SDK assembles exactly the upstream's content."""
    raw, expected = stream
    whole, _ = translate(raw)
    split, _ = translate(raw, cuts={seed % (len(raw) + 1) for seed in cut_seeds})
    assert split == whole
    events = check_grammar(whole)
    final = sdk_accumulate(events)
    got = [
        (
            b.type,
            b.thinking
            if b.type == "thinking"
            else b.text
            if b.type == "text"
            else (b.name, b.input),
        )
        for b in final.content
    ]
    assert got == expected
    assert final.stop_reason == (
        "tool_use" if any(k == "tool_use" for k, _ in expected) else "end_turn"
    )
