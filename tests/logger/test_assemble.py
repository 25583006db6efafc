"""Streams folded into chunks plus an assembled result."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_service.assemble import event_data, stream_response
from shared.sse import SSEDecoder, encode_event

SSE_PIECES = (b"data", b"data: ", b"event: e\n", b":", b" ", b"\n", b"\n\n", b"\r", b"x", b"{}")


def sse(*payloads) -> str:
    return "".join(
        f"data: {p if isinstance(p, str) else orjson.dumps(p).decode()}\n\n" for p in payloads
    )


def test_openai_stream_assembles_text_tools_reasoning_and_usage():
    raw = sse(
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                }
            ],
        },
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        "[DONE]",
    )
    out = stream_response(raw, "openai_chat")
    assert out["chunk_count"] == 8
    assembled = out["assembled"]
    assert assembled["id"] == "c1" and assembled["model"] == "m"
    assert assembled["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}
    [choice] = assembled["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Hello"
    assert choice["message"]["reasoning_content"] == "think"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_non_json_data_lines_are_kept_as_text():
    out = stream_response(sse("not json", {"choices": []}), "openai_chat")
    assert out["chunks"][0] == "not json"


def test_anthropic_stream_assembles_the_message_the_client_saw():
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "role": "assistant",
                "content": [],
                "usage": {"input_tokens": 5, "output_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"q": '},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"x"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    raw = b"".join(encode_event(e["type"], e) for e in events).decode()
    message = stream_response(raw, "anthropic_messages")["assembled"]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 5, "output_tokens": 9}
    assert message["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "x"}},
    ]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(SSE_PIECES), max_size=40))
def test_event_data_is_what_the_sse_decoder_dispatches(pieces):
    raw = b"".join(pieces)
    decoder = SSEDecoder()
    assert event_data(raw) == [event.data for event in (*decoder.feed(raw), *decoder.flush())]


def _responses_stream(cut_after: int | None = None) -> tuple[str, dict]:
    """What a client of /v1/responses receives for a text + tool-call answer, as the proxy
    relays it, and the Response its terminal event carries."""
    from proxy_service.convert.responses import (
        ResponsesOptions,
        ResponsesStreamTranslator,
        responses_to_chat_request,
    )

    body = {
        "model": "m",
        "input": "hi",
        "stream": True,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }
    request = responses_to_chat_request(body, ResponsesOptions())
    translator = ResponsesStreamTranslator(request)
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
    ]
    frames = translator.start()
    for chunk in chunks[:cut_after]:
        frames += translator.feed(b"data: " + orjson.dumps(chunk) + b"\n\n")
    if cut_after is None:
        frames += translator.feed(b"data: [DONE]\n\n") + translator.finish()
    return b"".join(frames).decode(), translator.response


def test_a_responses_stream_is_recorded_as_the_response_it_completed():
    raw, response = _responses_stream()
    recorded = stream_response(raw, "openai_responses")
    assert recorded["assembled"] == response
    assert response["status"] == "completed" and len(response["output"]) == 2
    assert recorded["chunk_count"] == raw.count("\n\n")


def test_a_cut_responses_stream_keeps_what_it_announced():
    raw, _ = _responses_stream(cut_after=2)
    assembled = stream_response(raw, "openai_responses")["assembled"]
    assert assembled["status"] == "cut" and assembled["id"].startswith("resp_")
