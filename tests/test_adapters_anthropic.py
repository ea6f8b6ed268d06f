"""Golden tests for the Anthropic adapter: OpenAI wire format <-> Messages API, both directions.

Provider-side fixtures are checked against the official ``anthropic`` SDK models and every
OpenAI-side output against the ``openai`` SDK models, so neither side of a golden can drift
into a shape the real clients would not accept.
"""

from __future__ import annotations

import anthropic.types as at
import openai_schema
import orjson
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from sdk_shapes import assert_known_fields, drain

from forge_ref.adapters.anthropic import AnthropicAdapter
from forge_ref.adapters.base import DONE_FRAME, Target
from forge_ref.errors import BadRequest, ForgeError, UpstreamError

ADAPTER = AnthropicAdapter()
LABEL = "claude/sonnet"
TARGET = Target(base_url="https://api.anthropic.com/", api_key="sk-ant-test", model="claude-sonnet-4-5", label=LABEL)
STREAM_EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)
CREATE_PARAMS = pydantic.TypeAdapter(at.MessageCreateParams)


def request_body(body: dict) -> dict:
    return orjson.loads(ADAPTER.chat_request(TARGET, body).body)


def user(content) -> dict:
    return {"role": "user", "content": content}


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def tool_call(id_, name, arguments) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def base(messages, **extra) -> dict:
    return {"model": "claude-sonnet-4-5", "messages": messages, "max_tokens": 4096, **extra}


REQUEST_CASES = [
    ("plain user message", {"model": LABEL, "messages": [user("Hi")]}, base([user("Hi")])),
    (
        "system and developer become one top-level system",
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": [
            {"type": "text", "text": "Answer in French."}]}, user("Hi")]},
        base([user("Hi")], system="Be brief.\n\nAnswer in French."),
    ),
    (
        "multi-turn keeps order, consecutive same-role messages merge",
        {"messages": [user("one"), user("two"), {"role": "assistant", "content": "ok"}, user("three")]},
        base([user([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]),
              {"role": "assistant", "content": "ok"}, user("three")]),
    ),
    (
        "image parts: data URL to base64 source, http URL to url source",
        {"messages": [user([
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        ])]},
        base([user([
            {"type": "text", "text": "Compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])]),
    ),
    (
        "tools without tool_choice",
        {"messages": [user("Weather?")], "tools": [TOOL]},
        base([user("Weather?")], tools=[ANTHROPIC_TOOL]),
    ),
    (
        "tool without description or parameters gets an empty object schema",
        {"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "ping"}}]},
        base([user("x")], tools=[{"name": "ping", "input_schema": {"type": "object", "properties": {}}}]),
    ),
    *[
        (
            f"tool_choice {name}",
            {"messages": [user("Weather?")], "tools": [TOOL], "tool_choice": choice},
            base([user("Weather?")], tools=[ANTHROPIC_TOOL], tool_choice=expected),
        )
        for name, choice, expected in [
            ("auto", "auto", {"type": "auto"}),
            ("required", "required", {"type": "any"}),
            ("none", "none", {"type": "none"}),
            ("named", {"type": "function", "function": {"name": "get_weather"}},
             {"type": "tool", "name": "get_weather"}),
        ]
    ],
    (
        "parallel_tool_calls false disables parallel tool use",
        {"messages": [user("Weather?")], "tools": [TOOL], "parallel_tool_calls": False},
        base([user("Weather?")], tools=[ANTHROPIC_TOOL],
             tool_choice={"type": "auto", "disable_parallel_tool_use": True}),
    ),
    (
        "tool_choice without tools is dropped",
        {"messages": [user("Hi")], "tool_choice": "auto"},
        base([user("Hi")]),
    ),
    (
        "assistant tool_calls and tool results round trip, following user text merges into the results turn",
        {"messages": [
            user("Weather in Paris and Oslo?"),
            {"role": "assistant", "content": None, "tool_calls": [
                tool_call("toolu_01", "get_weather", '{"city": "Paris"}'),
                tool_call("toolu_02", "get_weather", '{"city":"Oslo"}'),
            ]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "-3C"}]},
            user("Thanks, which is warmer?"),
        ]},
        base([
            user("Weather in Paris and Oslo?"),
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
            ]},
            user([
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "-3C"}]},
                {"type": "text", "text": "Thanks, which is warmer?"},
            ]),
        ]),
    ),
    (
        "assistant text before tool calls; empty arguments become an empty input",
        {"messages": [user("Ping it"), {"role": "assistant", "content": "Sure.", "tool_calls": [
            {"id": "toolu_9", "type": "function", "function": {"name": "ping", "arguments": ""}}]}]},
        base([user("Ping it"), {"role": "assistant", "content": [
            {"type": "text", "text": "Sure."}, {"type": "tool_use", "id": "toolu_9", "name": "ping", "input": {}}]}]),
    ),
    (
        "stop string, max_tokens, temperature, top_p, user, stream",
        {"messages": [user("Hi")], "stop": "END", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9,
         "user": "u-42", "stream": True, "stream_options": {"include_usage": True}, "seed": 7},
        {"model": "claude-sonnet-4-5", "messages": [user("Hi")], "max_tokens": 50, "temperature": 0.2, "top_p": 0.9,
         "stop_sequences": ["END"], "metadata": {"user_id": "u-42"}, "stream": True},
    ),
    (
        "stop list; max_completion_tokens wins over max_tokens",
        {"messages": [user("Hi")], "stop": ["a", "b"], "max_tokens": 10, "max_completion_tokens": 99, "stream": False},
        base([user("Hi")], max_tokens=99, stop_sequences=["a", "b"]),
    ),
    (
        "temperature 0 is kept, null max_tokens defaults",
        {"messages": [user("Hi")], "temperature": 0, "max_tokens": None},
        base([user("Hi")], temperature=0),
    ),
    (
        "empty assistant content is dropped so the neighbours merge",
        {"messages": [user("a"), {"role": "assistant", "content": ""}, user("b")]},
        base([user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])]),
    ),
]


@pytest.mark.parametrize(("name", "openai_body", "expected"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_chat_request_translation(name, openai_body, expected):
    body = request_body(openai_body)
    assert body == expected
    # The translated body must still be something the official SDK's params describe.
    drain(CREATE_PARAMS.validate_python(body))


def test_chat_request_url_and_headers():
    req = ADAPTER.chat_request(TARGET, {"messages": [user("Hi")]})
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers == {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01",
                           "content-type": "application/json"}


@pytest.mark.parametrize(
    ("name", "openai_body", "param"),
    [
        ("invalid tool arguments JSON", {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{city: Paris"}}]}]}, "messages"),
        ("tool arguments not an object", {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]}, "messages"),
        ("unknown role", {"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages"),
        ("unsupported content part", {"messages": [user([{"type": "input_audio", "input_audio": {}}])]}, "messages"),
        ("non-base64 data URL",
         {"messages": [user([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}])]}, "messages"),
        ("no messages", {"messages": []}, "messages"),
        ("n > 1", {"messages": [user("x")], "n": 2}, "n"),
        ("non-function tool", {"messages": [user("x")], "tools": [{"type": "web_search"}]}, "tools"),
        ("unknown tool_choice", {"messages": [user("x")], "tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_chat_request_rejects(name, openai_body, param):
    with pytest.raises(BadRequest) as info:
        ADAPTER.chat_request(TARGET, openai_body)
    assert info.value.status == 400
    assert info.value.param == param


# --- responses -------------------------------------------------------------------------------


def message(content, stop_reason="end_turn", usage=None, **extra) -> dict:
    return {"id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 12, "output_tokens": 5}, **extra}


def completion(message_, finish, usage=(12, 5)) -> dict:
    return {"id": "msg_01XYZ", "object": "chat.completion", "model": LABEL,
            "choices": [{"index": 0, "message": {**message_, "refusal": None}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}}


WEATHER_CALL = tool_call("toolu_01", "get_weather", '{"city":"Paris"}')

RESPONSE_CASES = [
    ("text", message([{"type": "text", "text": "Hello!"}]),
     completion({"role": "assistant", "content": "Hello!"}, "stop")),
    ("text blocks are joined", message([{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo ✓"}]),
     completion({"role": "assistant", "content": "Hello ✓"}, "stop")),
    ("stop_sequence maps to stop", message([{"type": "text", "text": "a"}], "stop_sequence", stop_sequence="END"),
     completion({"role": "assistant", "content": "a"}, "stop")),
    ("max_tokens maps to length", message([{"type": "text", "text": "a"}], "max_tokens"),
     completion({"role": "assistant", "content": "a"}, "length")),
    ("refusal maps to content_filter", message([], "refusal"),
     completion({"role": "assistant", "content": ""}, "content_filter")),
    ("only tool calls: content is null",
     message([{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}], "tool_use"),
     completion({"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]}, "tool_calls")),
    ("text and tool calls",
     message([{"type": "text", "text": "Checking."},
              {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
              {"type": "tool_use", "id": "toolu_02", "name": "ping", "input": {}}], "tool_use"),
     completion({"role": "assistant", "content": "Checking.", "tool_calls": [
         WEATHER_CALL, {"id": "toolu_02", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]},
         "tool_calls")),
    ("thinking blocks are not part of the answer",
     message([{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "42"}]),
     completion({"role": "assistant", "content": "42"}, "stop")),
    ("cached input tokens count as prompt tokens",
     message([{"type": "text", "text": "ok"}], usage={
         "input_tokens": 10, "output_tokens": 3, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}),
     {**completion({"role": "assistant", "content": "ok"}, "stop", (160, 3)),
      "usage": {"prompt_tokens": 160, "completion_tokens": 3, "total_tokens": 163,
                "prompt_tokens_details": {"cached_tokens": 50}}}),
]


@pytest.mark.parametrize(("name", "provider", "expected"), RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_chat_response_translation(name, provider, expected):
    assert_known_fields(at.Message.model_validate(provider))
    out = ADAPTER.chat_response(TARGET, orjson.dumps(provider))
    assert_known_fields(ChatCompletion.model_validate(out))
    openai_schema.validate(openai_schema.CHAT_COMPLETION, out)
    assert isinstance(out.pop("created"), int)
    assert out == expected


def test_chat_response_invalid_json_is_upstream_error():
    with pytest.raises(UpstreamError):
        ADAPTER.chat_response(TARGET, b"<html>bad gateway</html>")


# --- streaming -------------------------------------------------------------------------------


def sse(*events: dict) -> bytes:
    """A recorded Anthropic stream: ``event:`` lines mirror each event's ``type``."""
    return b"".join(b"event: " + ev["type"].encode() + b"\ndata: " + orjson.dumps(ev) + b"\n\n" for ev in events)


def start(input_tokens=25):
    return {"type": "message_start", "message": {
        "id": "msg_stream1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}


def block_start(index, block):
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index, text):
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def json_delta(index, fragment):
    delta = {"type": "input_json_delta", "partial_json": fragment}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index):
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason, output_tokens):
    return {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens}}


STOP = {"type": "message_stop"}
PING = {"type": "ping"}


def chunk(delta, finish=None) -> dict:
    return {"object": "chat.completion.chunk", "model": LABEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt, completion_) -> dict:
    return {"object": "chat.completion.chunk", "model": LABEL, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_, "total_tokens": prompt + completion_}}


ROLE = chunk({"role": "assistant", "content": ""})
TEXT_STREAM = sse(start(), block_start(0, {"type": "text", "text": ""}), PING, text_delta(0, "Bonjour"),
                  text_delta(0, ", ça va ? 🙂"), block_stop(0), message_delta("end_turn", 9), STOP)
TOOL_STREAM = sse(
    start(40), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Let me check."), block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    json_delta(1, ""), json_delta(1, '{"city": "Pa'), json_delta(1, 'ris"}'), block_stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "ping", "input": {}}), block_stop(2),
    message_delta("tool_use", 30), STOP,
)

STREAM_CASES = [
    ("text", TEXT_STREAM, False,
     [ROLE, chunk({"content": "Bonjour"}), chunk({"content": ", ça va ? 🙂"}), chunk({}, "stop")],
     (25, 9, "stop")),
    ("text with include_usage", TEXT_STREAM, True,
     [ROLE, chunk({"content": "Bonjour"}), chunk({"content": ", ça va ? 🙂"}), chunk({}, "stop"), usage_chunk(25, 9)],
     (25, 9, "stop")),
    ("tool calls: name first, then argument fragments; argument-less call gets {}", TOOL_STREAM, True, [
        ROLE, chunk({"content": "Let me check."}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function",
                               "function": {"name": "ping", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"), usage_chunk(40, 30),
    ], (40, 30, "tool_calls")),
    ("max_tokens", sse(start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "a"), block_stop(0),
                       message_delta("max_tokens", 1), STOP), False,
     [ROLE, chunk({"content": "a"}), chunk({}, "length")], (25, 1, "length")),
    ("thinking deltas are dropped", sse(
        start(), block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        block_stop(0), block_start(1, {"type": "text", "text": ""}), text_delta(1, "42"), block_stop(1),
        message_delta("end_turn", 7), STOP), False,
     [ROLE, chunk({"content": "42"}), chunk({}, "stop")], (25, 7, "stop")),
    ("cache tokens count toward prompt usage", sse(
        {**start(), "message": {**start()["message"], "usage": {
            "input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}}},
        message_delta("end_turn", 2), STOP), True,
     [ROLE, chunk({}, "stop"), usage_chunk(105, 2) | {"usage": {"prompt_tokens": 105, "completion_tokens": 2,
                                                                 "total_tokens": 107,
                                                                 "prompt_tokens_details": {"cached_tokens": 100}}}],
     (105, 2, "stop")),
]

SPLITS = {
    "whole": lambda data: [data],
    "1-byte": lambda data: [data[i : i + 1] for i in range(len(data))],
    "7-byte": lambda data: [data[i : i + 7] for i in range(0, len(data), 7)],
    "at-newlines": lambda data: [piece for line in data.split(b"\n") for piece in (line, b"\n")][:-1],
    "crlf-1-byte": lambda data: [bytes([b]) for b in data.replace(b"\n", b"\r\n")],
}


def run(translator, pieces: list[bytes]) -> list[bytes]:
    frames = []
    for piece in pieces:
        frames += translator.feed(piece)
    frames += translator.close()
    return frames


def parse(frames: list[bytes]) -> list[dict]:
    """Frames back to dicts: exactly one [DONE], last; ids consistent; ids and created stripped."""
    raw = b"".join(frames)
    assert raw.endswith(DONE_FRAME) and raw.count(DONE_FRAME) == 1
    out, ids = [], set()
    for block in raw[: -len(DONE_FRAME)].split(b"\n\n")[:-1]:
        assert block.startswith(b"data: ")
        obj = orjson.loads(block[6:])
        openai_schema.validate(openai_schema.ERROR if "error" in obj else openai_schema.CHAT_CHUNK, obj)
        if "error" not in obj:
            assert_known_fields(ChatCompletionChunk.model_validate(obj))
            ids.add(obj.pop("id"))
            assert isinstance(obj.pop("created"), int)
        out.append(obj)
    assert len(ids) <= 1
    return out


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("name", "data", "include_usage", "expected", "result"), STREAM_CASES,
                         ids=[c[0] for c in STREAM_CASES])
def test_stream_translation(name, data, include_usage, expected, result, split):
    for block in data.split(b"\n\n")[:-1]:
        event = orjson.loads(block.split(b"data: ", 1)[1])
        if event["type"] != "ping":
            assert_known_fields(STREAM_EVENT.validate_python(event))
    body = {"messages": [user("x")], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    translator = ADAPTER.chat_stream(TARGET, body)
    assert parse(run(translator, SPLITS[split](data))) == expected
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == result
    assert res.error is None


def test_stream_chunks_carry_the_anthropic_message_id():
    frames = run(ADAPTER.chat_stream(TARGET, {}), [TEXT_STREAM])
    ids = {orjson.loads(f[6:])["id"] for f in b"".join(frames).split(b"\n\n") if f and f != DONE_FRAME.strip()}
    assert ids == {"msg_stream1"}


@pytest.mark.parametrize("split", SPLITS)
def test_stream_error_event(split):
    data = sse(start(), block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hal")) + (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        + sse(text_delta(0, "ignored after the error"))
    )
    translator = ADAPTER.chat_stream(TARGET, {"stream_options": {"include_usage": True}})
    frames = run(translator, SPLITS[split](data))
    assert parse(frames) == [ROLE, chunk({"content": "Hal"}), {"error": {
        "message": "upstream error 529: Overloaded", "type": "upstream_error", "param": None,
        "code": "upstream_error"}}]
    assert isinstance(translator.result.error, UpstreamError)
    assert translator.close() == []  # DONE went out exactly once


def test_stream_rate_limit_error_event_keeps_its_type():
    translator = ADAPTER.chat_stream(TARGET, {})
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
    frames = run(translator, [sse(start(), error)])
    assert parse(frames)[-1]["error"]["type"] == "rate_limit_error"
    assert translator.result.error.status == 429


def test_stream_invalid_event_json_is_upstream_error():
    translator = ADAPTER.chat_stream(TARGET, {})
    frames = run(translator, [sse(start()), b"event: content_block_delta\ndata: {not json\n\n"])
    assert parse(frames)[-1]["error"]["code"] == "upstream_error"
    assert isinstance(translator.result.error, UpstreamError)


def test_stream_last_event_without_blank_line_is_flushed_on_close():
    data = sse(start(), message_delta("end_turn", 3))[:-1]  # connection closed right after the last line
    translator = ADAPTER.chat_stream(TARGET, {})
    assert parse(run(translator, [data])) == [ROLE, chunk({}, "stop")]
    assert translator.result.finish_reason == "stop"


def test_stream_translators_share_no_state():
    first, second = ADAPTER.chat_stream(TARGET, {}), ADAPTER.chat_stream(TARGET, {})
    first.feed(TEXT_STREAM[:200])
    assert parse(run(second, [TEXT_STREAM]))[1] == chunk({"content": "Bonjour"})


# --- errors, embeddings, models --------------------------------------------------------------

ANTHROPIC_ERROR = b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests exceeded"}}'

ERROR_CASES = [
    ("429 keeps Retry-After", 429, ANTHROPIC_ERROR, {"retry-after": "17"},
     (429, "rate_limit_error", "rate_limit_exceeded", "Number of requests exceeded", {"Retry-After": "17"})),
    ("429 without Retry-After", 429, ANTHROPIC_ERROR, {},
     (429, "rate_limit_error", "rate_limit_exceeded", "Number of requests exceeded", {})),
    ("400 is the client's request", 400,
     b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}', {},
     (400, "invalid_request_error", "upstream_rejected", "max_tokens: too large", {})),
    ("401 is the stored key, not the Forge key", 401,
     b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', {},
     (502, "upstream_error", "provider_auth_failed", "provider rejected the stored key: invalid x-api-key", {})),
    ("500 becomes 502", 500, b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}', {},
     (502, "upstream_error", "upstream_error", "upstream error 500: Internal server error", {})),
    ("529 overloaded becomes 502", 529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
     {}, (502, "upstream_error", "upstream_error", "upstream error 529: Overloaded", {})),
    ("non-JSON body", 503, b"<html>Service Unavailable</html>", {},
     (502, "upstream_error", "upstream_error", "upstream error 503: no detail", {})),
    ("JSON without the error object", 500, b"[1, 2]", {},
     (502, "upstream_error", "upstream_error", "upstream error 500: no detail", {})),
]


@pytest.mark.parametrize(("name", "status", "data", "headers", "expected"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_error_mapping(name, status, data, headers, expected):
    err = ADAPTER.error(status, data, headers)
    assert isinstance(err, ForgeError)
    openai_schema.validate(openai_schema.ERROR, orjson.loads(err.body()))
    assert (err.status, err.type, err.code, err.message, err.headers) == expected


def test_embeddings_are_unsupported():
    with pytest.raises(BadRequest) as info:
        ADAPTER.embeddings_request(TARGET, {"input": "hello", "model": LABEL})
    assert info.value.status == 400
    assert info.value.code == "unsupported_operation"
    assert "does not support embeddings" in info.value.message


def test_models_request():
    req = ADAPTER.models_request("https://api.anthropic.com/", "sk-ant-test")
    assert (req.method, req.body) == ("GET", None)
    assert req.url == "https://api.anthropic.com/v1/models?limit=1000"
    assert req.headers["x-api-key"] == "sk-ant-test"
    assert req.headers["anthropic-version"] == "2023-06-01"


def test_models_response():
    data = orjson.dumps({"data": [
        {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
         "created_at": "2025-09-29T00:00:00Z"},
        {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5",
         "created_at": "2025-10-01T00:00:00Z"},
        {"type": "model"},
    ], "has_more": False, "first_id": "claude-sonnet-4-5", "last_id": "claude-haiku-4-5"})
    assert ADAPTER.models_response(data) == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert ADAPTER.models_response(b'{"data": null}') == []


def test_adapter_is_stateless():
    assert AnthropicAdapter.kind == "anthropic"
    before = dict(vars(ADAPTER))
    ADAPTER.chat_request(TARGET, {"messages": [user("Hi")], "tools": [TOOL]})
    ADAPTER.chat_response(TARGET, orjson.dumps(message([{"type": "text", "text": "x"}])))
    assert vars(ADAPTER) == before == {}
