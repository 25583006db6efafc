"""Chat SSE -> Responses SSE (spec §4); scenarios 1, 3-9, 13, 15, 16, 21, 24, 25, 29 and 32.

Every translated stream goes through `lint` (scenario 32, the rules of §4.3) and most also
through the openai SDK's own accumulator or the whole SDK client, so "valid" means what the SDK
says it is.
"""

from __future__ import annotations

import itertools
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from proxy_service.convert.responses import (
    ResponsesOptions,
    ResponsesStreamTranslator,
    chat_to_response,
)
from proxy_service.convert.responses.reasoning import unseal
from tests.convert.chat_chunks import chunk, content, finish, reasoning, sse, tool, usage

from .support import (
    APPLY_PATCH,
    MULTI_AGENT,
    REQUEST,
    TOOLS,
    WEATHER,
    bridge_client,
    completion,
    convert,
    lint,
    parse_frames,
    sdk_accumulate,
    strip_ids,
    terminal,
    translate,
    types,
)

HEAD = ["response.created", "response.in_progress"]
MESSAGE = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL_OPEN = ["response.output_item.added", "response.function_call_arguments.delta"]
CALL_CLOSE = ["response.function_call_arguments.done", "response.output_item.done"]


def items_of(events: list[dict]) -> list[dict]:
    return terminal(events)["output"]


# -- scenarios --------------------------------------------------------------------------------


def test_s01_codex_one_shot_text_gives_the_items_codex_reads() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        content("Hello"),
        content(", world"),
        finish("stop"),
        usage(20, 7, prompt_tokens_details={"cached_tokens": 8}),
    )
    frames, translator = translate(raw)
    events = lint(frames)
    assert types(events) == [
        *HEAD,
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert (created["status"], created["output"], created["model"]) == (
        "in_progress",
        [],
        "gw-model",
    )
    message = events[-2]["item"]  # what Codex turns into its agent_message
    assert message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Hello, world", "annotations": [], "logprobs": []}
    ]
    final = terminal(events)
    assert final["status"] == "completed" and final["id"] == translator.response_id
    assert final["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 27,
    }
    assert translator.response == final and translator.error is None
    assert translator.usage == {
        "prompt_tokens": 20,
        "completion_tokens": 7,
        "total_tokens": 27,
        "cached_tokens": 8,
    }
    assert (translator.upstream_id, translator.upstream_model) == ("chatcmpl-1", "up")
    assert not translator.usage_estimated
    assert sdk_accumulate(events)._completed_response.output_text == "Hello, world"


def test_s04_parallel_calls_follow_the_reference_sequence() -> None:
    """§4.5 exactly: text, then two calls whose fragments interleave by upstream index."""
    raw = sse(
        content("Checking "),
        content("both."),
        tool(0, "call_a", "get_weather", '{"city":'),
        tool(1, "call_b", "get_weather", ""),
        tool(0, args='"Paris"}'),
        tool(1, args='{"city":"Rome"}'),
        finish("tool_calls"),
        usage(),
    )
    events = lint(translate(raw)[0])
    assert types(events) == [
        *HEAD,
        *MESSAGE[:3],
        "response.output_text.delta",
        *MESSAGE[3:],
        *CALL_OPEN,
        "response.function_call_arguments.delta",
        "response.output_item.added",  # call_b opens once its arguments flow
        "response.function_call_arguments.delta",
        *CALL_CLOSE,
        *CALL_CLOSE,
        "response.completed",
    ]
    calls = items_of(events)[1:]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_weather", '{"city":"Rome"}'),
    ]
    assert [c["output_index"] for c in events if c["type"] == "response.output_item.added"] == [
        0,
        1,
        2,
    ]
    state = sdk_accumulate(events)
    assert [o.type for o in state._completed_response.output] == [
        "message",
        "function_call",
        "function_call",
    ]


def test_s04_parallel_calls_all_at_index_zero_are_told_apart_by_id() -> None:
    raw = sse(
        tool(0, "call_a", "get_weather", '{"city":"Paris"}'),
        tool(0, "call_b", "get_weather", '{"city":"Rome"}'),
        finish("tool_calls"),
    )
    calls = items_of(lint(translate(raw)[0]))
    assert [(c["call_id"], json.loads(c["arguments"])) for c in calls] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"city": "Rome"}),
    ]


def test_s03_namespaced_calls_carry_their_namespace() -> None:
    """Codex dispatches only name + namespace: `close_agent` alone is an "unsupported call"."""
    colliding = {"type": "function", "name": "close_agent", "parameters": {}}
    request = convert(stream=True, tools=[colliding, MULTI_AGENT])
    raw = sse(
        tool(0, "call_1", "spawn_agent", "{}"),
        tool(1, "call_2", "multi_agent_v1__close_agent", '{"id":"a"}'),
        tool(2, "call_3", "close_agent", "{}"),
        finish("tool_calls"),
    )
    calls = items_of(lint(translate(raw, request)[0]))
    assert [(c["name"], c.get("namespace")) for c in calls] == [
        ("spawn_agent", "multi_agent_v1"),
        ("close_agent", "multi_agent_v1"),
        ("close_agent", None),
    ]


def test_s05_sdk_stream_text_and_get_final_response() -> None:
    raw = sse(content("The answer "), content("is 42."), finish(), usage())
    client = bridge_client(lambda body: raw)
    with client.responses.stream(model="gw-model", input="question") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "The answer is 42."
    assert final.status == "completed" and final.usage.input_tokens == 20


def test_s06_sdk_argument_snapshots_accumulate_over_many_fragments() -> None:
    arguments = json.dumps({"cmd": "grep -rn 'TODO' src/ | head -50", "workdir": "/repo"})
    fragments = [arguments[i : i + 6] for i in range(0, len(arguments), 6)]
    assert len(fragments) >= 5
    raw = sse(
        tool(0, "call_x", "exec_command", ""),
        *(tool(0, args=f) for f in fragments),
        finish("tool_calls"),
        usage(),
    )
    client = bridge_client(lambda body: raw)
    with client.responses.stream(model="gw-model", input="x", tools=[TOOLS[0]]) as stream:
        snapshots = [
            e.snapshot for e in stream if e.type == "response.function_call_arguments.delta"
        ]
        final = stream.get_final_response()
    assert snapshots == ["".join(fragments[: i + 1]) for i in range(len(fragments))]
    (call,) = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == json.loads(arguments)


def test_s07_agents_style_two_tools_then_the_next_request_pairs_them() -> None:
    """What the Agents SDK reads (completed.output) and sends next: both calls as items (with
    id and status), then both outputs. Its tracing is the route's business, not conversion's."""
    raw = sse(
        tool(0, "call_a", "get_weather", '{"city":"Paris"}'),
        tool(1, "call_b", "exec_command", '{"cmd":"date"}'),
        finish("tool_calls"),
        usage(),
    )
    calls = items_of(lint(translate(raw)[0]))
    follow_up = [
        {"role": "user", "content": "weather and date?"},
        *calls,
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": "Mon"},
    ]
    messages = convert(input=follow_up, tools=TOOLS).body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_a", "call_b"]


def test_s08_custom_tool_call_has_raw_input() -> None:
    patch = '*** Begin Patch\n*** Add File: a.txt\n+hello "quoted"\n*** End Patch\n'
    wrapped = json.dumps({"input": patch})
    raw = sse(
        tool(0, "call_p", "apply_patch", wrapped[:10]),
        tool(0, args=wrapped[10:25]),
        tool(0, args=wrapped[25:]),
        finish("tool_calls"),
    )
    events = lint(translate(raw)[0])
    assert types(events) == [
        *HEAD,
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = items_of(events)
    assert call["type"] == "custom_tool_call" and call["id"].startswith("ctc_")
    assert (call["call_id"], call["name"], call["input"]) == ("call_p", "apply_patch", patch)
    assert events[3]["delta"] == patch and events[4]["input"] == patch
    sdk_accumulate(events)


def test_s09_length_stop_is_incomplete_and_a_cut_call_stays_broken() -> None:
    raw = sse(
        content("Running:"),
        tool(0, "call_r", "exec_command", '{"cmd": "rm -rf /tmp/bu'),
        finish("length"),
        usage(),
    )
    events = lint(translate(raw)[0])
    assert events[-1]["type"] == "response.incomplete"
    final = terminal(events)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    message, call = final["output"]
    assert message["status"] == "completed"  # it was finished before the call started
    assert call["status"] == "incomplete"
    assert call["arguments"] == '{"cmd": "rm -rf /tmp/bu'  # unparseable: nobody runs it
    assert REQUEST.body["max_tokens"] == 32_768  # the default that makes this rare (§2.2)


def test_s09_only_the_last_of_parallel_calls_was_cut_off() -> None:
    raw = sse(
        tool(0, "a", "get_weather", '{"city":"Oslo"}'),
        tool(1, "b", "get_weather", '{"city":"Ber'),
        finish("length"),
    )
    first, second = items_of(lint(translate(raw)[0]))
    assert (first["status"], first["arguments"]) == ("completed", '{"city":"Oslo"}')
    assert (second["status"], second["arguments"]) == ("incomplete", '{"city":"Ber')


def test_s09_content_filter_is_incomplete_too() -> None:
    events = lint(translate(sse(content("I can"), finish("content_filter")))[0])
    assert terminal(events)["incomplete_details"] == {"reason": "content_filter"}
    assert items_of(events)[0]["status"] == "incomplete"


def test_s13_mid_stream_failure_keeps_items_so_far_and_ends() -> None:
    raw = sse(content("Half an ans"), tool(0, "call_h", "exec_command", '{"cmd":'), done=False)
    translator = ResponsesStreamTranslator(REQUEST)
    frames = translator.start() + translator.feed(raw)
    frames += translator.fail("upstream connection reset mid-stream")
    events = lint(frames)
    assert events[-1]["type"] == "response.failed"
    failed = terminal(events)
    assert failed["error"] == {
        "code": "server_error",
        "message": "upstream connection reset mid-stream",
    }
    message, call = failed["output"]
    assert message["status"] == "completed" and call["status"] == "incomplete"
    # The half-streamed call was never `output_item.done`: Codex must not execute it.
    assert [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"] == [
        "message"
    ]
    assert translator.fail("again") == [] and translator.finish() == []
    assert translator.feed(sse(content("late"))) == [] and translator.heartbeat() == b""
    assert translator.error == "upstream connection reset mid-stream"
    assert translator.usage_estimated and translator.usage["completion_tokens"] >= 1


def test_s13_sdk_raises_cleanly_on_failed() -> None:
    client = bridge_client(lambda body: sse(content("partial"), done=False))
    with client.responses.stream(model="gw-model", input="x") as stream:
        kinds = [e.type for e in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert kinds[-1] == "response.failed"


@pytest.mark.parametrize(
    ("error_chunk", "code"),
    [
        ({"error": {"message": "boom", "type": "server_error"}}, "server_error"),
        ({"error": {"message": "slow down", "code": 429}}, "rate_limit_exceeded"),
        (
            {"error": {"message": "This model's maximum context length is 8192 tokens"}},
            "context_length_exceeded",
        ),
        ({"object": "error", "message": "vLLM died", "code": 500}, None),
    ],
)
def test_s13_upstream_error_chunk_fails_with_a_mapped_code(
    error_chunk: dict, code: str | None
) -> None:
    raw = sse(content("Hi"), error_chunk, content("ignored"), finish())
    events = lint(translate(raw)[0])
    if code is None:  # an error object without the `error` key is just a malformed chunk
        assert events[-1]["type"] == "response.completed"
        return
    assert events[-1]["type"] == "response.failed"
    assert terminal(events)["error"]["code"] == code
    assert "ignored" not in json.dumps(terminal(events))


def test_s13_named_error_event_and_eof_without_finish() -> None:
    named = b"event: error\ndata: " + orjson.dumps({"error": {"message": "x"}}) + b"\n\n"
    events = lint(translate(sse(content("a"), done=False) + named)[0])
    assert terminal(events)["error"]["code"] == "server_error"
    cut = lint(translate(sse(content("a"), done=False))[0])
    assert terminal(cut)["status"] == "failed"
    assert "ended before" in terminal(cut)["error"]["message"]
    done_only = lint(translate(sse(content("a"), done=True))[0])  # [DONE] is a proper end
    assert terminal(done_only)["status"] == "completed"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_s15_reasoning_item_is_added_before_its_deltas_and_done_before_the_message(
    field: str,
) -> None:
    raw = sse(
        chunk({field: "Let me "}),
        chunk({field: "think."}),
        content("Done."),
        finish(),
        usage(completion_tokens_details={"reasoning_tokens": 3}),
    )
    events = lint(translate(raw)[0])
    assert types(events) == [
        *HEAD,
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        *MESSAGE,
        "response.completed",
    ]
    thinking, message = items_of(events)
    assert thinking["type"] == "reasoning" and "encrypted_content" not in thinking
    assert thinking["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert message["content"][0]["text"] == "Done."
    assert terminal(events)["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    sdk_accumulate(events)


def test_s15_interleaved_reasoning_opens_new_items() -> None:
    raw = sse(reasoning("a"), tool(0, "c1", "exec_command", "{}"), reasoning("b"), content("c"))
    events = lint(translate(raw + sse(finish()))[0])
    assert [i["type"] for i in items_of(events)] == [
        "reasoning",
        "function_call",
        "reasoning",
        "message",
    ]


def test_s16_reasoning_envelope_round_trip_in_a_tool_loop() -> None:
    request = convert(stream=True, tools=TOOLS, include=["reasoning.encrypted_content"])
    raw = sse(
        reasoning("I should list files."),
        tool(0, "call_l", "exec_command", '{"cmd":"ls"}'),
        finish("tool_calls"),
    )
    output = items_of(lint(translate(raw, request)[0]))
    assert unseal(output[0]["encrypted_content"]) == "I should list files."
    follow_up = [
        {"role": "user", "content": "list"},
        *output,
        {"type": "function_call_output", "call_id": "call_l", "output": "a.txt"},
    ]
    options = ResponsesOptions(reasoning_content_in_history=True)
    messages = convert(options, input=follow_up, tools=TOOLS).body["messages"]
    assistant = messages[1]
    assert assistant["reasoning_content"] == "I should list files."
    assert assistant["tool_calls"][0]["id"] == "call_l"


@pytest.mark.parametrize(
    ("upstream_usage", "expected"),
    [
        (
            usage(
                100,
                10,
                prompt_tokens_details={"cached_tokens": 60},
                completion_tokens_details={"reasoning_tokens": 4},
            ),
            (100, 60, 10, 4, 110),
        ),
        (
            usage(100, 10, prompt_cache_hit_tokens=70, prompt_cache_miss_tokens=30),
            (100, 70, 10, 0, 110),
        ),
        (None, None),
    ],
    ids=["openai-details", "deepseek-cache-fields", "absent"],
)
def test_s24_usage_always_has_the_full_shape(
    upstream_usage: dict | None, expected: tuple | None
) -> None:
    chunks = [content("Some answer text"), finish()] + ([upstream_usage] if upstream_usage else [])
    frames, translator = translate(sse(*chunks))
    got = terminal(lint(frames))["usage"]
    shape = (
        got["input_tokens"],
        got["input_tokens_details"]["cached_tokens"],
        got["output_tokens"],
        got["output_tokens_details"]["reasoning_tokens"],
        got["total_tokens"],
    )
    if expected is None:
        assert translator.usage_estimated
        assert shape[0] == REQUEST.estimated_input_tokens and shape[2] >= 1
        assert translator.usage["prompt_tokens"] == shape[0]
        assert translator.usage["completion_tokens"] == shape[2]
    else:
        assert shape == expected and not translator.usage_estimated


def test_s24_usage_on_every_chunk_never_closes_anything() -> None:
    running = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    raw = sse(*(chunk({"content": c}, usage=running) for c in "abc"), finish(), usage(5, 3))
    events = lint(translate(raw)[0])
    assert types(events).count("response.output_text.delta") == 3
    assert terminal(events)["usage"]["output_tokens"] == 3


def test_s25_heartbeats_are_in_progress_events_in_sequence() -> None:
    translator = ResponsesStreamTranslator(REQUEST)
    first = translator.heartbeat()  # before start: the start frames themselves
    frames = [first, translator.heartbeat(), translator.heartbeat()]
    frames += translator.feed(sse(content("late answer"), finish(), done=False))
    frames.append(translator.heartbeat())
    frames += translator.finish()
    assert translator.heartbeat() == b""
    events = lint([f for frame in frames for f in split_frames(frame)])
    assert types(events)[:4] == [*HEAD, "response.in_progress", "response.in_progress"]
    beat = events[2]
    assert beat["response"]["status"] == "in_progress" and beat["response"]["output"] == []
    assert sdk_accumulate(events)._completed_response.output_text == "late answer"


def split_frames(blob: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in blob.split(b"\n\n") if part]


@pytest.mark.parametrize(
    ("chunks", "arguments"),
    [
        ([tool(0, "c", "exec_command", {"cmd": "ls"})], {"cmd": "ls"}),  # an object
        (
            [tool(0, "c", "exec_command", '{"cmd"'), tool(0, "c", "exec_command", '{"cmd":"ls"}')],
            {"cmd": "ls"},
        ),  # cumulative snapshots, id and name resent
        ([tool(0, "c", "exec_command", "")], {}),  # empty arguments
        ([tool(0, "c", "exec_command")], {}),  # no arguments at all
        ([tool(0, "c", "exec_command", "{'cmd': 'ls',}")], {"cmd": "ls"}),  # repairable
        ([tool(0, "c", "exec_command", '"{\\"cmd\\":\\"ls\\"}"')], {"cmd": "ls"}),  # double
    ],
    ids=["object", "snapshots", "empty", "missing", "broken", "double-encoded"],
)
def test_s29_arguments_are_one_json_object_string(chunks: list[dict], arguments: dict) -> None:
    raw = sse(*chunks, finish("tool_calls"))
    events = lint(translate(raw)[0], exact_arguments=False)
    (call,) = items_of(events)
    assert isinstance(call["arguments"], str) and json.loads(call["arguments"]) == arguments
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == call["arguments"]
    sdk_accumulate(events)


def test_s29_valid_arguments_are_relayed_verbatim() -> None:
    text = '{"cmd": "echo \\u00e9",  "workdir":"/"}'
    (call,) = items_of(lint(translate(sse(tool(0, "c", "exec_command", text), finish()))[0]))
    assert call["arguments"] == text


# -- robustness -------------------------------------------------------------------------------


def test_name_in_fragments_missing_index_and_late_id() -> None:
    raw = sse(
        tool(None, None, "exec_", ""),
        tool(None, "call_late", "command", '{"cmd":'),
        tool(None, args='"ls"}'),
        finish("tool_calls"),
    )
    (call,) = items_of(lint(translate(raw)[0]))
    assert (call["name"], call["call_id"], call["arguments"]) == (
        "exec_command",
        "call_late",
        '{"cmd":"ls"}',
    )


def test_missing_and_repeated_upstream_ids_become_unique_call_ids() -> None:
    raw = sse(
        tool(0, None, "exec_command", "{}"),
        tool(1, "dup", "exec_command", "{}"),
        tool(2, "dup", "exec_command", "{}"),
        finish("tool_calls"),
    )
    ids = [c["call_id"] for c in items_of(lint(translate(raw)[0]))]
    assert len(set(ids)) == 3 and ids[1] == "dup" and ids[0].startswith("call_")


def test_a_named_call_without_arguments_opens_before_later_calls() -> None:
    raw = sse(
        tool(0, "c0", "exec_command"),
        tool(1, "c1", "get_weather", '{"city":"Oslo"}'),
        finish("tool_calls"),
    )
    calls = items_of(lint(translate(raw)[0]))
    assert [(c["call_id"], c["arguments"]) for c in calls] == [
        ("c0", "{}"),
        ("c1", '{"city":"Oslo"}'),
    ]


def test_late_arguments_for_a_closed_call_are_dropped() -> None:
    raw = sse(tool(0, "c0", "exec_command", "{}"), content("text"), tool(0, args="more"), finish())
    calls = [i for i in items_of(lint(translate(raw)[0])) if i["type"] == "function_call"]
    assert calls[0]["arguments"] == "{}"


def test_unnamed_calls_are_dropped_and_unknown_names_pass_through() -> None:
    raw = sse(tool(0, "c0", None, "{}"), tool(1, "c1", "made_up", "{}"), finish("tool_calls"))
    (call,) = items_of(lint(translate(raw)[0]))
    assert (call["name"], call.get("namespace")) == ("made_up", None)


def test_malformed_chunks_and_odd_sse_are_harmless() -> None:
    raw = (
        b": keep-alive\n\n"
        + b"data: {not json\n\n"
        + b"data: [1, 2]\n\n"
        + b'data: {"choices": null}\n\n'
        + b'data: {"choices": [{"delta": null}]}\n\n'
        + sse(content("ok"), finish(), done=False).replace(b"\n", b"\r\n")
    )
    events = lint(translate(raw)[0])
    assert sdk_accumulate(events)._completed_response.output_text == "ok"


def test_unicode_split_inside_characters_and_lone_surrogates() -> None:
    text = "héllo 世界 🎉"
    raw = sse(content(text), finish())
    whole = items_of(lint(translate(raw)[0]))
    split = items_of(lint(translate(raw, cuts=range(len(raw)))[0]))
    assert whole[0]["content"][0]["text"] == split[0]["content"][0]["text"] == text
    surrogate = b'data: {"choices":[{"delta":{"content":"a\\ud83d b"}}]}\n\n' + sse(finish())
    lint(translate(surrogate)[0])


def test_done_finalizes_and_later_input_is_ignored() -> None:
    translator = ResponsesStreamTranslator(REQUEST, response_id="resp_fixed", created_at=7)
    frames = translator.feed(sse(content("a"), finish()) + sse(content("b")))
    frames += translator.finish()
    events = lint(frames)  # feed without start() still begins with response.created
    assert terminal(events)["id"] == "resp_fixed" and terminal(events)["created_at"] == 7
    assert items_of(events)[0]["content"][0]["text"] == "a"


def test_empty_completion_has_no_items() -> None:
    events = lint(translate(sse(chunk({"role": "assistant"}), finish(), usage()))[0])
    assert types(events) == [*HEAD, "response.completed"] and items_of(events) == []


def test_concurrent_translators_do_not_share_state() -> None:
    one, two = ResponsesStreamTranslator(REQUEST), ResponsesStreamTranslator(REQUEST)
    frames_one = one.start() + one.feed(sse(content("one"), done=False))
    frames_two = two.start() + two.feed(sse(content("two"), done=False))
    frames_one += one.finish()
    frames_two += two.finish()
    assert one.response_id != two.response_id
    assert terminal(lint(frames_one))["status"] == terminal(lint(frames_two))["status"] == "failed"
    assert items_of(parse_frames(frames_one))[0]["content"][0]["text"] == "one"


# -- scenario 32: random streams, random byte splits ------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_args = st.dictionaries(st.text(max_size=6), st.text(max_size=10) | st.integers(-5, 5), max_size=3)
_TOOL_NAMES = ["exec_command", "get_weather", "spawn_agent", "apply_patch"]


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, dict]:
    """A random upstream answer as SSE (reasoning, text, parallel calls with interleaved
    fragments, usage) and the same answer as one buffered chat.completion."""
    thinking = "".join(draw(st.lists(_text, max_size=3)))
    text = "".join(draw(st.lists(_text, max_size=3)))
    calls = draw(
        st.lists(st.tuples(st.sampled_from(_TOOL_NAMES), _args, st.booleans()), max_size=4)
    )
    chunks = [reasoning(piece) for piece in _pieces(draw, thinking)]
    chunks += [content(piece) for piece in _pieces(draw, text)]
    tool_calls = []
    queues = []
    for index, (name, args, ascii_escapes) in enumerate(calls):
        encoded = json.dumps(
            {"input": json.dumps(args)} if name == "apply_patch" else args,
            ensure_ascii=ascii_escapes,
        )
        pieces = _pieces(draw, encoded) or [""]
        chunks.append(tool(index, f"call_{index}", name, pieces[0]))  # opened in index order
        queues.append([tool(index, args=piece) for piece in pieces[1:]])
        tool_calls.append(
            {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": name, "arguments": encoded},
            }
        )
    while any(queues):  # the rest of the fragments interleave across calls at random
        queue = draw(st.sampled_from([q for q in queues if q]))
        chunks.append(queue.pop(0))
    reason = draw(st.sampled_from(["length", "content_filter", "tool_calls" if calls else "stop"]))
    chunks.append(finish(reason))
    counts = draw(st.none() | st.just(usage(31, 17, prompt_tokens_details={"cached_tokens": 3})))
    if counts:
        chunks.append(counts)
    message = {"content": text or None, "reasoning_content": thinking or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    buffered = completion(message, reason, **({"usage": counts["usage"]} if counts else {}))
    return sse(*chunks, done=draw(st.booleans())), buffered


def _pieces(draw: st.DrawFn, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=4))))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(answers(), st.lists(st.integers(0, 100_000), max_size=12))
def test_s32_random_streams_split_anywhere_lint_clean_and_equal_the_buffered_answer(
    answer: tuple[bytes, dict], cut_seeds: list[int]
) -> None:
    raw, buffered = answer
    frames, translator = translate(raw, cuts={seed % (len(raw) + 1) for seed in cut_seeds})
    events = lint(frames)
    whole, _ = translate(raw)
    assert strip_ids(parse_frames(whole)) == strip_ids(events)  # splitting changes nothing
    sdk_accumulate(events)
    expected = chat_to_response(buffered, REQUEST)
    streamed = terminal(events)
    assert strip_ids(streamed["output"]) == strip_ids(expected["output"])
    assert streamed["usage"] == expected["usage"] and streamed["status"] == expected["status"]
    assert translator.usage_estimated == ("usage" not in buffered)


_segment = st.one_of(
    st.tuples(st.just("reasoning"), _text),
    st.tuples(st.just("content"), _text),
    st.tuples(st.just("tool"), st.sampled_from(_TOOL_NAMES), _text),
    st.tuples(st.just("usage"), st.integers(0, 50)),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_segment, max_size=10),
    st.sampled_from(["stop", "tool_calls", "length", "content_filter", None]),
    st.booleans(),
)
def test_s32_any_chunk_order_still_lints(
    segments: list[tuple], reason: str | None, done: bool
) -> None:
    """Whatever order the upstream mixes reasoning, text, call fragments and usage in (and
    with broken arguments, or no end at all), the grammar holds and the SDK accepts it."""
    chunks = []
    for position, segment in enumerate(segments):
        match segment:
            case ("reasoning", text):
                chunks.append(reasoning(text))
            case ("content", text):
                chunks.append(content(text))
            case ("tool", name, text):
                chunks.append(tool(position % 3, f"c{position % 3}", name, text))
            case ("usage", count):
                chunks.append(usage(count, count))
    if reason:
        chunks.append(finish(reason))
    events = lint(translate(sse(*chunks, done=done))[0], exact_arguments=False)
    state = sdk_accumulate(events)
    if events[-1]["type"] == "response.completed":
        assert state._completed_response is not None


class Answer(BaseModel):
    city: str
    degrees: int


def test_s21_stream_text_format_parsed() -> None:
    raw = sse(content('{"city": "Oslo", '), content('"degrees": -3}'), finish())
    seen: list[dict] = []
    client = bridge_client(lambda body: raw, seen)
    with client.responses.stream(model="gw-model", input="x", text_format=Answer) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Answer(city="Oslo", degrees=-3)
    assert seen[0]["response_format"]["json_schema"]["name"] == "Answer"


def test_s32_sdk_accepts_a_full_codex_like_turn() -> None:
    """Reasoning, text, a namespaced call, a custom call and a plain call in one turn."""
    raw = sse(
        reasoning("plan"),
        content("Doing three things."),
        tool(0, "a", "spawn_agent", "{}"),
        tool(1, "b", "apply_patch", '{"input":"*** Begin Patch"}'),
        tool(2, "c", "get_weather", '{"city":"x"}'),
        finish("tool_calls"),
        usage(),
    )
    client = bridge_client(lambda body: raw)
    tools = [WEATHER, APPLY_PATCH, MULTI_AGENT]
    with client.responses.stream(model="gw-model", input="x", tools=tools) as stream:
        final = stream.get_final_response()
    assert [o.type for o in final.output] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
        "function_call",
    ]
    assert final.output[2].namespace == "multi_agent_v1"
    assert final.output[3].input == "*** Begin Patch"


def test_s26_a_streamed_tool_search_call_is_one_item_with_object_arguments() -> None:
    request = convert(stream=True, tools=[{"type": "tool_search", "execution": "client"}, WEATHER])
    raw = sse(
        tool(0, "ts_1", "tool_search", '{"query": '),
        tool(0, args='"calendar"}'),
        tool(1, "call_w", "get_weather", '{"city": "Oslo"}'),
        finish("tool_calls"),
    )
    events = lint(translate(raw, request)[0])
    assert types(events) == [
        *HEAD,
        "response.output_item.added",  # the search: no argument events, ever
        *CALL_OPEN,
        "response.output_item.done",
        *CALL_CLOSE,
        "response.completed",
    ]
    assert events[2]["item"]["type"] == "tool_search_call" and events[2]["item"]["arguments"] == {}
    search, weather = items_of(events)
    assert search["type"] == "tool_search_call" and search["call_id"] == "ts_1"
    assert search["arguments"] == {"query": "calendar"} and search["execution"] == "client"
    assert weather["type"] == "function_call" and weather["call_id"] == "call_w"
    sdk_accumulate(events)
