"""Golden tests for OpenAI answers as Anthropic's (``to_anthropic``): messages, stream events, errors.

Inputs are checked against the ``openai`` SDK's models and outputs against the ``anthropic``
SDK's (every field known), as in the other adapter goldens. The tables are checked against
``adapters/anthropic.py``'s, whose inverses they are.
"""

from __future__ import annotations

import anthropic.types as at
import orjson
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from sdk_shapes import assert_known_fields

from forge_ref.adapters.anthropic import FINISH, AnthropicAdapter, openai_usage
from forge_ref.adapters.base import Target
from forge_ref.adapters.gemini import GeminiAdapter
from forge_ref.adapters.openai import PassThroughStream
from forge_ref.adapters.to_anthropic import (
    STOP_REASONS,
    MessagesStream,
    anthropic_usage,
    error_json,
    to_anthropic,
)
from forge_ref.errors import ForgeError, UpstreamError

STREAM_EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)
LABEL = "openai/gpt-4o"


def completion(message: dict, finish: str, usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-abc123", "object": "chat.completion", "created": 1700000000, "model": LABEL,
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}


def message(content: list, stop_reason: str, usage: dict | None = None) -> dict:
    return {"id": "msg_abc123", "type": "message", "role": "assistant", "model": LABEL, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 12, "output_tokens": 5}}


def call(id_: str, name: str, arguments: str) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_CALL = call("call_1", "get_weather", '{"city":"Paris"}')
WEATHER_USE = {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}

RESPONSES = [
    ("text", completion({"content": "Hello!"}, "stop"), message([{"type": "text", "text": "Hello!"}], "end_turn")),
    ("length is max_tokens", completion({"content": "Hel"}, "length"),
     message([{"type": "text", "text": "Hel"}], "max_tokens")),
    ("content_filter is refusal", completion({"content": None}, "content_filter"), message([], "refusal")),
    ("a refusal is its text, and the stop reason", completion({"content": None, "refusal": "I can't."}, "stop"),
     message([{"type": "text", "text": "I can't."}], "refusal")),
    ("only tool calls", completion({"content": None, "tool_calls": [WEATHER_CALL]}, "tool_calls"),
     message([WEATHER_USE], "tool_use")),
    ("text, then tool calls; empty arguments are an empty input",
     completion({"content": "Checking.", "tool_calls": [WEATHER_CALL, call("call_2", "ping", "")]}, "tool_calls"),
     message([{"type": "text", "text": "Checking."}, WEATHER_USE,
              {"type": "tool_use", "id": "call_2", "name": "ping", "input": {}}], "tool_use")),
    ("cached prompt tokens are cache reads, apart from input_tokens",
     completion({"content": "ok"}, "stop", {"prompt_tokens": 160, "completion_tokens": 3, "total_tokens": 163,
                                           "prompt_tokens_details": {"cached_tokens": 150}}),
     message([{"type": "text", "text": "ok"}], "end_turn",
             {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 150})),
]


@pytest.mark.parametrize(("name", "openai_answer", "expected"), RESPONSES, ids=[c[0] for c in RESPONSES])
def test_response_translation(name, openai_answer, expected):
    assert_known_fields(ChatCompletion.model_validate(openai_answer))
    out = to_anthropic(openai_answer, LABEL)
    assert out == expected
    assert_known_fields(at.Message.model_validate(out))


def test_response_without_usage_or_id():
    out = to_anthropic({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}, LABEL)
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0} and out["model"] == LABEL
    assert out["id"].startswith("msg_") and len(out["id"]) > 10


@pytest.mark.parametrize("arguments", ["{city: Paris", "[1, 2]", '"x"'])
def test_tool_arguments_that_are_no_json_object_are_the_upstreams_fault(arguments):
    with pytest.raises(UpstreamError):
        to_anthropic(completion({"content": None, "tool_calls": [call("c", "f", arguments)]}, "tool_calls"), LABEL)


def test_round_trip_through_the_anthropic_adapter():
    """An Anthropic message taken to OpenAI's shape by the existing adapter and back is the message."""
    original = message([{"type": "text", "text": "Checking."}, WEATHER_USE], "tool_use",
                       {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 150})
    target = Target(base_url="https://api.anthropic.com", api_key="k", model="claude-sonnet-4-5", label=LABEL)
    back = to_anthropic(AnthropicAdapter().chat_response(target, orjson.dumps(original)), LABEL)
    assert back == dict(original, id="msg_" + original["id"])


def test_tables_are_the_anthropic_adapters_backwards():
    for finish, reason in STOP_REASONS.items():
        if finish in FINISH.values():
            assert FINISH[reason] == finish, finish
    assert set(FINISH.values()) <= set(STOP_REASONS)
    usage = {"prompt_tokens": 160, "completion_tokens": 3, "total_tokens": 163,
             "prompt_tokens_details": {"cached_tokens": 150}}
    assert openai_usage(anthropic_usage(usage)) == usage


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
    (405, "invalid_request_error"), (409, "invalid_request_error"), (413, "request_too_large"),
    (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
    (504, "api_error"), (529, "overloaded_error")])
def test_error_shape(status, kind):
    body = error_json(status, "what went wrong")
    assert body == {"type": "error", "error": {"type": kind, "message": "what went wrong"}}
    if kind != "request_too_large":  # Anthropic's error docs list it; the SDK's union of error types does not
        assert_known_fields(at.ErrorResponse.model_validate(body))


# --- streams ----------------------------------------------------------------------------------------


def sse(*chunks) -> bytes:
    """An OpenAI stream as an OpenAI server sends it."""
    frames = b"".join(b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n" for c in chunks)
    return frames + b"data: [DONE]\n\n"


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1700000000, "model": LABEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt: int, completion_: int) -> dict:
    return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1700000000, "model": LABEL,
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion_,
                                     "total_tokens": prompt + completion_}}


def tool_delta(index: int, id_: str | None = None, name: str | None = None, arguments: str = "") -> dict:
    fn = {"arguments": arguments} if id_ is None else {"name": name, "arguments": arguments}
    head = {} if id_ is None else {"id": id_, "type": "function"}
    return chunk({"tool_calls": [{"index": index, **head, "function": fn}]})


START = {"type": "message_start", "message": {
    "id": "msg_s1", "type": "message", "role": "assistant", "model": LABEL, "content": [], "stop_reason": None,
    "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}
STOP = {"type": "message_stop"}


def block_start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def json_delta(index: int, fragment: str) -> dict:
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def message_delta(reason: str, input_tokens: int = 0, output_tokens: int = 0) -> dict:
    return {"type": "message_delta", "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "delta": {"stop_reason": reason, "stop_sequence": None}}


ROLE = chunk({"role": "assistant", "content": ""})
TEXT = sse(ROLE, chunk({"content": "Bonjour"}), chunk({"content": ", ça va ? 🙂"}), chunk({}, "stop"),
           usage_chunk(9, 4))

STREAMS = [
    ("text", TEXT, [START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "Bonjour"),
                    text_delta(0, ", ça va ? 🙂"), block_stop(0), message_delta("end_turn", 9, 4), STOP], (9, 4)),
    ("text, then two tool calls streamed OpenAI's way (name first, then argument fragments)", sse(
        ROLE, chunk({"content": "Let me check."}),
        tool_delta(0, "call_A", "get_weather"),
        tool_delta(0, arguments='{"city": "Pa'), tool_delta(0, arguments='ris"}'),
        tool_delta(1, "call_B", "ping"), chunk({}, "tool_calls"), usage_chunk(40, 30)), [
        START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "Let me check."), block_stop(0),
        block_start(1, {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}),
        json_delta(1, '{"city": "Pa'), json_delta(1, 'ris"}'), block_stop(1),
        block_start(2, {"type": "tool_use", "id": "call_B", "name": "ping", "input": {}}), block_stop(2),
        message_delta("tool_use", 40, 30), STOP], (40, 30)),
    ("a whole call in one chunk (Gemini's way), then text", sse(
        tool_delta(0, "call_0", "lookup", '{"q":"x"}'), chunk({"content": "done"}), chunk({}, "tool_calls")), [
        START, block_start(0, {"type": "tool_use", "id": "call_0", "name": "lookup", "input": {}}),
        json_delta(0, '{"q":"x"}'), block_stop(0), block_start(1, {"type": "text", "text": ""}), text_delta(1, "done"),
        block_stop(1), message_delta("tool_use"), STOP], (None, None)),
    ("length", sse(ROLE, chunk({"content": "a"}), chunk({}, "length")),
     [START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "a"), block_stop(0),
      message_delta("max_tokens"), STOP], (None, None)),
    ("refusal deltas", sse(ROLE, chunk({"refusal": "I can't."}), chunk({}, "stop")),
     [START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "I can't."), block_stop(0),
      message_delta("refusal"), STOP], (None, None)),
    ("nothing at all", sse(), [START, message_delta("end_turn"), STOP], (None, None)),
]
SPLITS = {
    "whole": lambda data: [data],
    "1-byte": lambda data: [data[i : i + 1] for i in range(len(data))],
    "7-byte": lambda data: [data[i : i + 7] for i in range(0, len(data), 7)],
}


def run(translator, pieces: list[bytes]) -> list[bytes]:
    frames = []
    for piece in pieces:
        frames += translator.feed(piece)
    return frames + translator.close()


def events(frames: list[bytes]) -> list[dict]:
    """Frames back to events: each an ``event:`` line naming its ``data``'s type, known to the SDK."""
    out = []
    for block in b"".join(frames).split(b"\n\n")[:-1]:
        head, data = block.split(b"\n")
        ev = orjson.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + ev["type"].encode()
        if ev["type"] != "error":
            assert_known_fields(STREAM_EVENT.validate_python(ev))
        out.append(ev)
    return out


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("name", "data", "expected", "tokens"), STREAMS, ids=[c[0] for c in STREAMS])
def test_stream_translation(name, data, expected, tokens, split):
    for block in data.split(b"\n\n")[:-2]:
        assert_known_fields(ChatCompletionChunk.model_validate_json(block.removeprefix(b"data: ")))
    translator = MessagesStream(PassThroughStream(), LABEL)
    out = events(run(translator, SPLITS[split](data)))
    if not data.startswith(b"data: {"):  # no chunk, so no upstream id: one is made up
        assert out[0]["message"]["id"].startswith("msg_")
        out[0]["message"]["id"] = "msg_s1"
    assert out == expected
    assert (translator.result.prompt_tokens, translator.result.completion_tokens) == tokens
    assert translator.result.error is None


def test_stream_error_from_the_upstream_ends_the_stream():
    data = sse(ROLE, chunk({"content": "Hal"}), {"error": {"message": "overloaded", "type": "server_error"}},
               chunk({"content": "ignored"}))
    translator = MessagesStream(PassThroughStream(), LABEL)
    out = events(run(translator, [data]))
    assert out == [START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hal"),
                   {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}]
    assert isinstance(translator.result.error, UpstreamError)
    assert translator.close() == []


def test_stream_error_the_kinds_translator_raised_keeps_its_status():
    """Gemini's in-stream RESOURCE_EXHAUSTED is a 429 for OpenAI clients: a rate_limit_error here."""
    target = Target(base_url="https://generativelanguage.googleapis.com", api_key="k", model="g", label="gemini/g")
    translator = MessagesStream(GeminiAdapter().chat_stream(target, {"stream_options": {"include_usage": True}}),
                                target.label)
    error = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    out = events(run(translator, [b"data: " + orjson.dumps(error) + b"\n\n"]))
    assert out == [{"type": "error", "error": {"type": "rate_limit_error", "message": "Resource exhausted"}}]
    assert isinstance(translator.result.error, ForgeError) and translator.result.error.status == 429


@pytest.mark.parametrize("bad", [b"{not json", b'{"choices": "x"}', b'{"choices": [{"delta": 5}]}'])
def test_stream_event_of_the_wrong_shape_is_an_upstream_error(bad):
    translator = MessagesStream(PassThroughStream(), LABEL)
    out = events(run(translator, [b"data: " + orjson.dumps(ROLE) + b"\n\ndata: " + bad + b"\n\n"]))
    assert out[-1] == {"type": "error", "error": {"type": "api_error", "message": out[-1]["error"]["message"]}}
    assert "upstream sent" in out[-1]["error"]["message"]
