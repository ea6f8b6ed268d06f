"""Golden tests for the Gemini adapter: OpenAI wire format <-> native generateContent / embedContent.

Request bodies are validated against the ``google-genai`` SDK models (which forbid unknown
fields, so a misspelt camelCase key fails here rather than at Google), response fixtures too,
and every OpenAI-side output against the ``openai`` SDK models.
"""

from __future__ import annotations

import base64
import struct

import openai_schema
import orjson
import pytest
import sdk_shapes
from google.genai import types as gt
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from forge_ref.adapters.base import DONE_FRAME, Target
from forge_ref.adapters.gemini import GeminiAdapter
from forge_ref.errors import BadRequest, ForgeError, UpstreamError

ADAPTER = GeminiAdapter()
LABEL = "google/flash"
TARGET = Target(base_url="https://generativelanguage.googleapis.com/", api_key="AIza-test",
                model="gemini-2.5-flash", label=LABEL)
MODEL_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
# Google's own OpenAI-compatible endpoint carries thought signatures here; it is the one
# field outside the OpenAI SDK's models that the adapter emits on purpose.
ALLOWED_EXTRA = {"extra_content"}
PLACEHOLDER = "skip_thought_signature_validator"


def assert_known_fields(value) -> None:
    sdk_shapes.assert_known_fields(value, allowed=ALLOWED_EXTRA)


def validate_request(body: dict) -> None:
    """Each top-level field against the SDK model for it (camelCase aliases, extra fields forbidden)."""
    models = {"contents": gt.Content, "systemInstruction": gt.Content, "tools": gt.Tool,
              "toolConfig": gt.ToolConfig, "generationConfig": gt.GenerationConfig}
    assert set(body) <= set(models)
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            models[key].model_validate(item)


def user(content) -> dict:
    return {"role": "user", "content": content}


def g(role, *parts) -> dict:
    return {"role": role, "parts": list(parts)}


TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}
DECLS = [{"functionDeclarations": [{
    "name": "get_weather", "description": "Current weather for a city",
    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                             "additionalProperties": False}}]}]


def call(id_, name, arguments, **extra) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}, **extra}


REQUEST_CASES = [
    ("plain user message", {"model": LABEL, "messages": [user("Hi")]}, {"contents": [g("user", {"text": "Hi"})]}),
    (
        "system and developer messages become systemInstruction",
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]}, user("Hi")]},
        {"contents": [g("user", {"text": "Hi"})],
         "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}},
    ),
    (
        "assistant becomes model; consecutive same-role messages merge",
        {"messages": [user("one"), user("two"), {"role": "assistant", "content": "ok"}, user("three")]},
        {"contents": [g("user", {"text": "one"}, {"text": "two"}), g("model", {"text": "ok"}),
                      g("user", {"text": "three"})]},
    ),
    (
        "images: data URL inline, remote URL as fileData with a guessed MIME type",
        {"messages": [user([
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.png?size=large"}},
            {"type": "image_url", "image_url": "https://example.com/render"},
        ])]},
        {"contents": [g("user", {"text": "Compare"}, {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
                        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a/cat.png?size=large"}},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}})]},
    ),
    (
        "tools without tool_choice",
        {"messages": [user("Weather?")], "tools": [TOOL]},
        {"contents": [g("user", {"text": "Weather?"})], "tools": DECLS},
    ),
    (
        "tool without parameters",
        {"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "ping"}}]},
        {"contents": [g("user", {"text": "x"})],
         "tools": [{"functionDeclarations": [{"name": "ping", "description": ""}]}]},
    ),
    *[
        (
            f"tool_choice {name}",
            {"messages": [user("Weather?")], "tools": [TOOL], "tool_choice": choice},
            {"contents": [g("user", {"text": "Weather?"})], "tools": DECLS,
             "toolConfig": {"functionCallingConfig": expected}},
        )
        for name, choice, expected in [
            ("auto", "auto", {"mode": "AUTO"}),
            ("required", "required", {"mode": "ANY"}),
            ("none", "none", {"mode": "NONE"}),
            ("named", {"type": "function", "function": {"name": "get_weather"}},
             {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ]
    ],
    (
        "tool call round trip: names looked up by id, JSON results parsed, signatures replayed",
        {"messages": [
            user("Weather in Paris and Oslo?"),
            {"role": "assistant", "content": None, "tool_calls": [
                call("call_0", "get_weather", '{"city": "Paris"}',
                     extra_content={"google": {"thought_signature": "c2lnLTE="}}),
                call("call_1", "lookup", '{"city":"Oslo"}'),
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 18, "unit": "C"}'},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "cold"}]},
            user("Which is warmer?"),
        ]},
        {"contents": [
            g("user", {"text": "Weather in Paris and Oslo?"}),
            g("model", {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2lnLTE="},
              {"functionCall": {"name": "lookup", "args": {"city": "Oslo"}}}),
            g("user", {"functionResponse": {"name": "get_weather", "response": {"content": {"temp": 18, "unit": "C"}}}},
              {"functionResponse": {"name": "lookup", "response": {"content": "cold"}}},
              {"text": "Which is warmer?"}),
        ]},
    ),
    (
        "history without signatures gets Google's documented placeholder on the first call only",
        {"messages": [user("go"), {"role": "assistant", "content": "Sure.", "tool_calls": [
            call("call_a", "ping", ""), call("call_b", "ping", "{}")]},
            {"role": "tool", "tool_call_id": "call_a", "content": "42"},
            {"role": "tool", "tool_call_id": "call_b", "content": "not json"}]},
        {"contents": [
            g("user", {"text": "go"}),
            g("model", {"text": "Sure."},
              {"functionCall": {"name": "ping", "args": {}}, "thoughtSignature": PLACEHOLDER},
              {"functionCall": {"name": "ping", "args": {}}}),
            g("user", {"functionResponse": {"name": "ping", "response": {"content": 42}}},
              {"functionResponse": {"name": "ping", "response": {"content": "not json"}}}),
        ]},
    ),
    (
        "repeated call ids across turns resolve to the latest call",
        {"messages": [
            user("a"), {"role": "assistant", "tool_calls": [call("call_0", "first", "{}")]},
            {"role": "tool", "tool_call_id": "call_0", "content": "1"},
            {"role": "assistant", "tool_calls": [call("call_0", "second", "{}")]},
            {"role": "tool", "tool_call_id": "call_0", "content": "2"},
        ]},
        {"contents": [
            g("user", {"text": "a"}),
            g("model", {"functionCall": {"name": "first", "args": {}}, "thoughtSignature": PLACEHOLDER}),
            g("user", {"functionResponse": {"name": "first", "response": {"content": 1}}}),
            g("model", {"functionCall": {"name": "second", "args": {}}, "thoughtSignature": PLACEHOLDER}),
            g("user", {"functionResponse": {"name": "second", "response": {"content": 2}}}),
        ]},
    ),
    (
        "generationConfig from sampling parameters",
        {"messages": [user("Hi")], "temperature": 0, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 64,
         "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.25, "user": "u-1",
         "stream_options": {"include_usage": True}},
        {"contents": [g("user", {"text": "Hi"})], "generationConfig": {
            "temperature": 0, "topP": 0.9, "candidateCount": 2, "seed": 7, "presencePenalty": 0.5,
            "frequencyPenalty": 0.25, "maxOutputTokens": 64, "stopSequences": ["END"]}},
    ),
    (
        "stop list and max_tokens",
        {"messages": [user("Hi")], "stop": ["a", "b"], "max_tokens": 12},
        {"contents": [g("user", {"text": "Hi"})],
         "generationConfig": {"maxOutputTokens": 12, "stopSequences": ["a", "b"]}},
    ),
    (
        "response_format json_schema",
        {"messages": [user("Hi")], "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}},
        {"contents": [g("user", {"text": "Hi"})], "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
    ),
    (
        "response_format json_object",
        {"messages": [user("Hi")], "response_format": {"type": "json_object"}},
        {"contents": [g("user", {"text": "Hi"})], "generationConfig": {"responseMimeType": "application/json"}},
    ),
]


@pytest.mark.parametrize(("name", "openai_body", "expected"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_chat_request_translation(name, openai_body, expected):
    body = orjson.loads(ADAPTER.chat_request(TARGET, openai_body).body)
    assert body == expected
    validate_request(body)


@pytest.mark.parametrize(("stream", "suffix"), [(False, ":generateContent"), (True, ":streamGenerateContent?alt=sse")])
def test_chat_request_url_and_headers(stream, suffix):
    req = ADAPTER.chat_request(TARGET, {"messages": [user("Hi")], "stream": stream})
    assert req.method == "POST"
    assert req.url == MODEL_URL + suffix
    assert req.headers == {"x-goog-api-key": "AIza-test", "Content-Type": "application/json"}
    assert "AIza-test" not in req.url


@pytest.mark.parametrize(
    ("name", "openai_body"),
    [
        ("invalid tool arguments JSON", {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            call("c", "f", "{city: Paris")]}]}),
        ("tool arguments not an object", {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            call("c", "f", '"Paris"')]}]}),
        ("tool result for an unknown call",
         {"messages": [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
        ("unknown role", {"messages": [{"role": "function", "name": "f", "content": "x"}]}),
        ("unsupported content part", {"messages": [user([{"type": "file", "file": {"file_id": "f"}}])]}),
        ("non-base64 data URL",
         {"messages": [user([{"type": "image_url", "image_url": {"url": "data:image/png,x"}}])]}),
        ("no messages", {}),
        ("non-function tool", {"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
        ("unknown tool_choice", {"messages": [user("x")], "tools": [TOOL], "tool_choice": "sometimes"}),
    ],
)
def test_chat_request_rejects(name, openai_body):
    with pytest.raises(BadRequest) as info:
        ADAPTER.chat_request(TARGET, openai_body)
    assert info.value.status == 400


# --- responses -------------------------------------------------------------------------------


def candidate(*parts, finish="STOP", index=0) -> dict:
    return {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish, "index": index}


def response(*candidates, usage=(10, 5), **extra) -> dict:
    return {"candidates": list(candidates), "responseId": "resp-1", "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                              "totalTokenCount": usage[0] + usage[1]}, **extra}


def completion(*choices, usage=(10, 5)) -> dict:
    return {"id": "chatcmpl-resp-1", "object": "chat.completion", "model": LABEL, "choices": list(choices),
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}}


def choice(content, finish="stop", index=0, tool_calls=None) -> dict:
    message = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


SIGNED = {"google": {"thought_signature": "c2lnLTE="}}

RESPONSE_CASES = [
    ("text parts are joined", response(candidate({"text": "Hello"}, {"text": ", wörld ✓"})),
     completion(choice("Hello, wörld ✓"))),
    ("function call with signature: tool_calls, finish tool_calls",
     response(candidate({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                         "thoughtSignature": "c2lnLTE="})),
     completion(choice(None, "tool_calls", tool_calls=[
         call("call_0", "get_weather", '{"city":"Paris"}', extra_content=SIGNED)]))),
    ("text and parallel function calls",
     response(candidate({"text": "Checking."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "ping"}})),
     completion(choice("Checking.", "tool_calls", tool_calls=[
         call("call_0", "get_weather", '{"city":"Paris"}'), call("call_1", "ping", "{}")]))),
    ("MAX_TOKENS maps to length", response(candidate({"text": "a"}, finish="MAX_TOKENS")),
     completion(choice("a", "length"))),
    *[
        (f"{reason} maps to content_filter", response(candidate(finish=reason)),
         completion(choice("", "content_filter")))
        for reason in ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII")
    ],
    ("other finish reasons map to stop", response(candidate({"text": "a"}, finish="OTHER")), completion(choice("a"))),
    ("blocked prompt: no candidates, content_filter",
     {"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "resp-1",
      "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}},
     completion(choice("", "content_filter"), usage=(10, 0))),
    ("thought parts are dropped, thinking tokens count as completion",
     {**response(candidate({"text": "pondering", "thought": True}, {"text": "42"})),
      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 30,
                        "totalTokenCount": 42}},
     {**completion(choice("42")), "usage": {"prompt_tokens": 10, "completion_tokens": 32, "total_tokens": 42,
                                            "completion_tokens_details": {"reasoning_tokens": 30}}}),
    ("n=2 candidates become two choices; call ids stay unique",
     response(candidate({"text": "A"}), candidate({"functionCall": {"name": "ping", "args": {}}}, index=1)),
     completion(choice("A"), choice(None, "tool_calls", index=1, tool_calls=[call("call_0", "ping", "{}")]))),
]


@pytest.mark.parametrize(("name", "provider", "expected"), RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_chat_response_translation(name, provider, expected):
    gt.GenerateContentResponse.model_validate(provider)
    out = ADAPTER.chat_response(TARGET, orjson.dumps(provider))
    assert_known_fields(ChatCompletion.model_validate(out))
    openai_schema.validate(openai_schema.CHAT_COMPLETION, out)
    assert isinstance(out.pop("created"), int)
    assert out == expected


def test_chat_response_without_response_id_gets_a_fresh_id():
    body = response(candidate({"text": "a"}))
    del body["responseId"]
    first, second = (ADAPTER.chat_response(TARGET, orjson.dumps(body))["id"] for _ in range(2))
    assert first.startswith("chatcmpl-") and first != second


def test_chat_response_invalid_json_is_upstream_error():
    with pytest.raises(UpstreamError):
        ADAPTER.chat_response(TARGET, b"not json")


# --- streaming -------------------------------------------------------------------------------


def sse(*events: dict) -> bytes:
    """A recorded ``alt=sse`` stream; Google terminates events with CRLF pairs."""
    return b"".join(b"data: " + orjson.dumps(ev) + b"\r\n\r\n" for ev in events)


def ev(*parts, finish=None, usage=(8, 1), index=0) -> dict:
    cand = {"content": {"role": "model", "parts": list(parts)}, "index": index}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "responseId": "s-1", "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                              "totalTokenCount": usage[0] + usage[1]}}


def chunk(delta, finish=None, index=0) -> dict:
    return {"object": "chat.completion.chunk", "model": LABEL,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt, completion_) -> dict:
    return {"object": "chat.completion.chunk", "model": LABEL, "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_, "total_tokens": prompt + completion_}}


TEXT_STREAM = sse(ev({"text": "Bonjour"}), ev({"text": ", ça va ? 🙂"}, usage=(8, 4)),
                  ev({"text": ""}, finish="STOP", usage=(8, 6)))
TOOL_STREAM = sse(
    ev({"text": "Let me check."}),
    ev({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="},
       {"functionCall": {"name": "ping", "args": {}}}, finish="STOP", usage=(20, 12)),
)

STREAM_CASES = [
    ("text", TEXT_STREAM, False,
     [chunk({"role": "assistant", "content": "Bonjour"}), chunk({"content": ", ça va ? 🙂"}), chunk({}, "stop")],
     (8, 6, "stop")),
    ("text with include_usage", TEXT_STREAM, True,
     [chunk({"role": "assistant", "content": "Bonjour"}), chunk({"content": ", ça va ? 🙂"}), chunk({}, "stop"),
      usage_chunk(8, 6)],
     (8, 6, "stop")),
    ("function calls arrive whole", TOOL_STREAM, True, [
        chunk({"role": "assistant", "content": "Let me check."}),
        chunk({"tool_calls": [
            {"index": 0, **call("call_0", "get_weather", '{"city":"Paris"}', extra_content=SIGNED)},
            {"index": 1, **call("call_1", "ping", "{}")}]}),
        chunk({}, "tool_calls"), usage_chunk(20, 12),
    ], (20, 12, "tool_calls")),
    ("tool call indexes continue across events", sse(
        ev({"functionCall": {"name": "a", "args": {}}}),
        ev({"functionCall": {"name": "b", "args": {}}}, finish="STOP")),
     False, [
        chunk({"role": "assistant", "tool_calls": [{"index": 0, **call("call_0", "a", "{}")}]}),
        chunk({"tool_calls": [{"index": 1, **call("call_1", "b", "{}")}]}),
        chunk({}, "tool_calls"),
    ], (8, 1, "tool_calls")),
    ("MAX_TOKENS", sse(ev({"text": "a"}, finish="MAX_TOKENS", usage=(8, 1))), False,
     [chunk({"role": "assistant", "content": "a"}), chunk({}, "length")], (8, 1, "length")),
    ("SAFETY mid-answer", sse(ev({"text": "a"}), {**ev(), "candidates": [{"finishReason": "SAFETY", "index": 0}]}),
     False, [chunk({"role": "assistant", "content": "a"}), chunk({}, "content_filter")], (8, 1, "content_filter")),
    ("blocked prompt", sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}), True,
     [chunk({"role": "assistant"}), chunk({}, "content_filter"), usage_chunk(8, 0)], (8, 0, "content_filter")),
    ("thoughts are dropped, thinking tokens counted", sse(
        ev({"text": "pondering", "thought": True}),
        {**ev({"text": "42"}, finish="STOP"), "usageMetadata": {
            "promptTokenCount": 8, "candidatesTokenCount": 1, "thoughtsTokenCount": 20, "totalTokenCount": 29}}),
     True, [chunk({"role": "assistant"}), chunk({"content": "42"}), chunk({}, "stop"),
            usage_chunk(8, 21) | {"usage": {"prompt_tokens": 8, "completion_tokens": 21, "total_tokens": 29,
                                            "completion_tokens_details": {"reasoning_tokens": 20}}}],
     (8, 21, "stop")),
    ("two candidates", sse(
        {**ev(), "candidates": [{"content": {"role": "model", "parts": [{"text": "A"}]}, "index": 0},
                                {"content": {"role": "model", "parts": [{"text": "B"}]}, "index": 1}]},
        {**ev(), "candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "STOP",
                                 "index": 0},
                                {"content": {"role": "model", "parts": [{"text": "?"}]}, "finishReason": "STOP",
                                 "index": 1}]}),
     False, [chunk({"role": "assistant", "content": "A"}), chunk({"role": "assistant", "content": "B"}, index=1),
             chunk({"content": "!"}), chunk({}, "stop"), chunk({"content": "?"}, index=1), chunk({}, "stop", index=1)],
     (8, 1, "stop")),
]

SPLITS = {
    "whole": lambda data: [data],
    "1-byte": lambda data: [data[i : i + 1] for i in range(len(data))],
    "7-byte": lambda data: [data[i : i + 7] for i in range(0, len(data), 7)],
    "between-cr-and-lf": lambda data: [piece for part in data.split(b"\r") for piece in (part, b"\r")][:-1],
    "lf-only": lambda data: [data.replace(b"\r\n", b"\n")],
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
    for block in data.split(b"\r\n\r\n")[:-1]:
        gt.GenerateContentResponse.model_validate(orjson.loads(block[6:]))
    body = {"messages": [user("x")], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    translator = ADAPTER.chat_stream(TARGET, body)
    assert parse(run(translator, SPLITS[split](data))) == expected
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == result
    assert res.error is None


def test_stream_id_comes_from_response_id():
    frames = run(ADAPTER.chat_stream(TARGET, {}), [TEXT_STREAM])
    ids = {orjson.loads(f[6:])["id"] for f in b"".join(frames).split(b"\n\n") if f and f != DONE_FRAME.strip()}
    assert ids == {"chatcmpl-s-1"}


@pytest.mark.parametrize("split", SPLITS)
def test_stream_error_event(split):
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    data = sse(ev({"text": "Hal"}), error, ev({"text": "ignored"}))
    translator = ADAPTER.chat_stream(TARGET, {"stream_options": {"include_usage": True}})
    assert parse(run(translator, SPLITS[split](data))) == [chunk({"role": "assistant", "content": "Hal"}), {"error": {
        "message": "upstream error 503: The model is overloaded.", "type": "upstream_error", "param": None,
        "code": "upstream_error"}}]
    assert isinstance(translator.result.error, UpstreamError)
    assert translator.close() == []


def test_stream_error_event_without_code_uses_status():
    translator = ADAPTER.chat_stream(TARGET, {})
    frames = run(translator, [sse({"error": {"message": "quota", "status": "RESOURCE_EXHAUSTED"}})])
    assert parse(frames)[-1]["error"]["type"] == "rate_limit_error"
    assert translator.result.error.status == 429


def test_stream_invalid_event_json_is_upstream_error():
    translator = ADAPTER.chat_stream(TARGET, {})
    frames = run(translator, [sse(ev({"text": "a"})), b"data: {oops\r\n\r\n"])
    assert parse(frames)[-1]["error"]["code"] == "upstream_error"


def test_stream_last_event_without_blank_line_is_flushed_on_close():
    translator = ADAPTER.chat_stream(TARGET, {})
    assert parse(run(translator, [TEXT_STREAM[:-4]]))[-1] == chunk({}, "stop")


def test_empty_stream_still_ends_with_done():
    translator = ADAPTER.chat_stream(TARGET, {"stream_options": {"include_usage": True}})
    assert parse(run(translator, [])) == [usage_chunk(0, 0)]


# --- embeddings ------------------------------------------------------------------------------

EMBED_REQUEST_CASES = [
    ("single string", {"model": LABEL, "input": "hello"}, ":embedContent",
     {"content": {"parts": [{"text": "hello"}]}}),
    ("single string with dimensions", {"input": "hello", "dimensions": 256}, ":embedContent",
     {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 256}),
    ("list of strings", {"input": ["a", "b"], "dimensions": 8}, ":batchEmbedContents",
     {"requests": [
         {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8},
         {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8}]}),
]


@pytest.mark.parametrize(("name", "openai_body", "suffix", "expected"), EMBED_REQUEST_CASES,
                         ids=[c[0] for c in EMBED_REQUEST_CASES])
def test_embeddings_request(name, openai_body, suffix, expected):
    req = ADAPTER.embeddings_request(TARGET, openai_body)
    assert (req.method, req.url) == ("POST", MODEL_URL + suffix)
    assert req.headers["x-goog-api-key"] == "AIza-test"
    assert orjson.loads(req.body) == expected
    for item in expected.get("requests", [expected]):
        gt.Content.model_validate(item["content"])


@pytest.mark.parametrize("inp", [[1, 2, 3], [[1, 2], [3]], [], ["a", 1], None, 42], ids=repr)
def test_embeddings_rejects_token_and_malformed_input(inp):
    with pytest.raises(BadRequest) as info:
        ADAPTER.embeddings_request(TARGET, {"input": inp})
    assert info.value.status == 400 and info.value.param == "input"


VECTORS = [[0.5, -0.25, 1.0], [0.125, 0.0, -2.0]]
EMBED_RESPONSE_CASES = [
    ("embedContent", {"embedding": {"values": VECTORS[0]}}, {}, [VECTORS[0]]),
    ("batchEmbedContents", {"embeddings": [{"values": v} for v in VECTORS]}, {}, VECTORS),
    ("float format asked explicitly", {"embedding": {"values": VECTORS[0]}}, {"encoding_format": "float"},
     [VECTORS[0]]),
    ("base64 format (the OpenAI SDKs' default)", {"embeddings": [{"values": v} for v in VECTORS]},
     {"encoding_format": "base64"}, [base64.b64encode(struct.pack("<3f", *v)).decode() for v in VECTORS]),
]


@pytest.mark.parametrize(("name", "provider", "body", "vectors"), EMBED_RESPONSE_CASES,
                         ids=[c[0] for c in EMBED_RESPONSE_CASES])
def test_embeddings_response(name, provider, body, vectors):
    for item in provider.get("embeddings", [provider.get("embedding")]):
        gt.ContentEmbedding.model_validate(item)
    out = ADAPTER.embeddings_response(TARGET, orjson.dumps(provider), {"input": "x", **body})
    assert out == {"object": "list", "model": LABEL, "usage": {"prompt_tokens": 0, "total_tokens": 0},
                   "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}
    base64_items = body.get("encoding_format") == "base64"
    openai_schema.validate(openai_schema.embeddings(openai_schema.EMBEDDING_BASE64 if base64_items
                                                    else openai_schema.EMBEDDING), out)
    if not base64_items:
        assert_known_fields(CreateEmbeddingResponse.model_validate(out))


def test_embeddings_response_unexpected_shape_is_upstream_error():
    with pytest.raises(UpstreamError):
        ADAPTER.embeddings_response(TARGET, b'{"embedding": {"vals": []}}', {"input": "x"})


# --- errors and models -----------------------------------------------------------------------


def gerr(code, message, status) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


ERROR_CASES = [
    ("429 keeps Retry-After", 429, gerr(429, "Resource has been exhausted", "RESOURCE_EXHAUSTED"),
     {"retry-after": "30"},
     (429, "rate_limit_error", "rate_limit_exceeded", "Resource has been exhausted", {"Retry-After": "30"})),
    ("400 is the client's request", 400, gerr(400, "Invalid JSON payload", "INVALID_ARGUMENT"), {},
     (400, "invalid_request_error", "upstream_rejected", "Invalid JSON payload", {})),
    ("403 is the stored key", 403, gerr(403, "API key not valid", "PERMISSION_DENIED"), {},
     (502, "upstream_error", "provider_auth_failed", "provider rejected the stored key: API key not valid", {})),
    ("500 becomes 502", 500, gerr(500, "Internal error encountered.", "INTERNAL"), {},
     (502, "upstream_error", "upstream_error", "upstream error 500: Internal error encountered.", {})),
    ("error wrapped in an array", 503, b"[" + gerr(503, "overloaded", "UNAVAILABLE") + b"]", {},
     (502, "upstream_error", "upstream_error", "upstream error 503: overloaded", {})),
    ("non-JSON body", 502, b"<html><title>502 Bad Gateway</title></html>", {},
     (502, "upstream_error", "upstream_error", "upstream error 502: no detail", {})),
]


@pytest.mark.parametrize(("name", "status", "data", "headers", "expected"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_error_mapping(name, status, data, headers, expected):
    err = ADAPTER.error(status, data, headers)
    assert isinstance(err, ForgeError)
    openai_schema.validate(openai_schema.ERROR, orjson.loads(err.body()))
    assert (err.status, err.type, err.code, err.message, err.headers) == expected


def test_models_request():
    req = ADAPTER.models_request("https://generativelanguage.googleapis.com/", "AIza-test")
    assert (req.method, req.body) == ("GET", None)
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1000"
    assert req.headers == {"x-goog-api-key": "AIza-test"}


def test_models_response():
    data = orjson.dumps({"models": [
        {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent", "countTokens"]},
        {"name": "models/gemini-embedding-001", "supportedGenerationMethods": ["embedContent"]},
        {"displayName": "nameless"},
    ], "nextPageToken": ""})
    assert ADAPTER.models_response(data) == ["gemini-2.5-flash", "gemini-embedding-001"]
    assert ADAPTER.models_response(b"{}") == []


def test_adapter_is_stateless():
    assert GeminiAdapter.kind == "gemini"
    ADAPTER.chat_request(TARGET, {"messages": [user("Hi")], "tools": [TOOL]})
    ADAPTER.chat_response(TARGET, orjson.dumps(response(candidate({"text": "x"}))))
    assert vars(ADAPTER) == {}
