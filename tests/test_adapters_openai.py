"""The OpenAI adapter: almost a pass-through, so the goldens say what must *not* change.

Requests go out with only ``model`` replaced; responses come back untouched; a stream is passed
on in whole SSE frames, whatever the upstream's chunk split, so an error frame the gateway adds
after a dropped connection never lands inside a half-sent one. Fixtures are checked against the
official ``openai`` SDK models, so they are shapes the real API sends.
"""

from __future__ import annotations

import orjson
import pytest
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from forge_ref.adapters.base import DONE_FRAME, Target, error_frame
from forge_ref.adapters.openai import OpenAIAdapter
from forge_ref.errors import ForgeError, UpstreamError

ADAPTER = OpenAIAdapter()
TARGET = Target(base_url="https://api.groq.com/openai/v1", api_key="sk-groq-test", model="llama-3.1-8b",
                label="groq/fast")
HEADERS = {"Authorization": "Bearer sk-groq-test", "Content-Type": "application/json"}


# --- requests -------------------------------------------------------------------------------------


def test_chat_request_replaces_the_model_and_nothing_else():
    body = {"model": "groq/fast", "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0, "max_tokens": None,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "a_vendor_extension": {"kept": ["as", "is"]}, "text": "ünïcode ✓"}
    original = orjson.dumps(body)
    req = ADAPTER.chat_request(TARGET, body)
    assert (req.method, req.url, req.headers, req.purpose) == (
        "POST", "https://api.groq.com/openai/v1/chat/completions", HEADERS, "proxy")
    assert orjson.loads(req.body) == dict(body, model="llama-3.1-8b")
    assert orjson.dumps(body) == original  # the client's body is not modified


def test_embeddings_request_replaces_the_model_and_nothing_else():
    body = {"model": "groq/emb", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64"}
    req = ADAPTER.embeddings_request(TARGET, body)
    assert (req.method, req.url, req.headers, req.purpose) == (
        "POST", "https://api.groq.com/openai/v1/embeddings", HEADERS, "proxy")
    assert orjson.loads(req.body) == dict(body, model="llama-3.1-8b")
    assert body["model"] == "groq/emb"


def test_models_request():
    req = ADAPTER.models_request("https://api.groq.com/openai/v1", "sk-groq-test")
    assert (req.method, req.url, req.headers, req.body, req.purpose) == (
        "GET", "https://api.groq.com/openai/v1/models", {"Authorization": "Bearer sk-groq-test"}, None, "models")


# --- responses ------------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
    "model": "llama-3.1-8b", "system_fingerprint": "fp_0165350fbb", "service_tier": "default",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": None,
                                         "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
}
EMBEDDINGS = {"object": "list", "model": "text-embedding-3-small",
              "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093]}],
              "usage": {"prompt_tokens": 2, "total_tokens": 2}}


def test_responses_come_back_untouched():
    ChatCompletion.model_validate(COMPLETION)
    CreateEmbeddingResponse.model_validate(EMBEDDINGS)
    assert ADAPTER.chat_response(TARGET, orjson.dumps(COMPLETION)) == COMPLETION
    assert ADAPTER.embeddings_response(TARGET, orjson.dumps(EMBEDDINGS), {"input": "x"}) == EMBEDDINGS


@pytest.mark.parametrize(("data", "message"), [
    (b"<html>Bad Gateway</html>", "upstream returned invalid JSON for chat completion"),
    (b"", "upstream returned invalid JSON for chat completion"),
    (b'["not", "an", "object"]', "upstream returned an unexpected chat completion body"),
])
def test_an_unusable_chat_response_is_the_upstreams_fault(data, message):
    with pytest.raises(UpstreamError) as info:
        ADAPTER.chat_response(TARGET, data)
    assert (info.value.status, info.value.message) == (502, message)


def test_models_response():
    data = {"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
    ]}
    for m in data["data"]:
        Model.model_validate(m)
    assert ADAPTER.models_response(orjson.dumps(data)) == ["gpt-4o", "text-embedding-3-small"]
    # Some compatible servers list oddities: only string ids are models.
    odd = {"data": [{"id": 5}, "gpt-x", {"name": "no-id"}, {"id": "ok"}]}
    assert ADAPTER.models_response(orjson.dumps(odd)) == ["ok"]
    assert ADAPTER.models_response(b'{"data": {"id": "gpt-4o"}}') == []
    assert ADAPTER.models_response(b'{"object": "list"}') == []


# --- errors ---------------------------------------------------------------------------------------

OPENAI_ERROR = (b'{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null,'
                b' "code": "rate_limit_exceeded"}}')

ERROR_CASES = [
    ("429 keeps Retry-After", 429, OPENAI_ERROR, {"retry-after": "20"},
     (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached for gpt-4o", {"Retry-After": "20"})),
    ("429 without Retry-After", 429, OPENAI_ERROR, {},
     (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached for gpt-4o", {})),
    ("400 is the client's request", 400,
     b'{"error": {"message": "Invalid value for \'temperature\'", "type": "invalid_request_error"}}', {},
     (400, "invalid_request_error", "upstream_rejected", "Invalid value for 'temperature'", {})),
    ("404 unknown model keeps its status", 404, b'{"error": {"message": "The model `x` does not exist"}}', {},
     (404, "invalid_request_error", "upstream_rejected", "The model `x` does not exist", {})),
    ("422 keeps its status", 422, b'{"error": "Unprocessable"}', {},
     (422, "invalid_request_error", "upstream_rejected", "Unprocessable", {})),
    ("401 is the stored key, not the Forge key", 401, b'{"error": {"message": "Incorrect API key provided"}}', {},
     (502, "upstream_error", "provider_auth_failed", "provider rejected the stored key: Incorrect API key provided",
      {})),
    ("403 too", 403, b'{"error": {"message": "Project not allowed"}}', {},
     (502, "upstream_error", "provider_auth_failed", "provider rejected the stored key: Project not allowed", {})),
    ("500 becomes 502", 500, b'{"error": {"message": "The server had an error"}}', {},
     (502, "upstream_error", "upstream_error", "upstream error 500: The server had an error", {})),
    ("a string error", 503, b'{"error": "overloaded"}', {},
     (502, "upstream_error", "upstream_error", "upstream error 503: overloaded", {})),
    ("non-JSON body", 502, b"<html>Bad Gateway</html>", {},
     (502, "upstream_error", "upstream_error", "upstream error 502: no detail", {})),
    ("JSON that is not an object", 500, b"[1, 2]", {},
     (502, "upstream_error", "upstream_error", "upstream error 500: no detail", {})),
    ("a message of the wrong type", 500, b'{"error": {"message": 42}}', {},
     (502, "upstream_error", "upstream_error", "upstream error 500: no detail", {})),
    ("a long message is cut at 500 characters", 500, orjson.dumps({"error": {"message": "x" * 2000}}), {},
     (502, "upstream_error", "upstream_error", "upstream error 500: " + "x" * 500, {})),
]


@pytest.mark.parametrize(("name", "status", "data", "headers", "expected"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_error_mapping(name, status, data, headers, expected):
    err = ADAPTER.error(status, data, headers)
    assert isinstance(err, ForgeError)
    assert (err.status, err.type, err.code, err.message, err.headers) == expected


# --- streams --------------------------------------------------------------------------------------


def sse(*events: dict | str) -> bytes:
    return b"".join(b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events)


def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-AxbCd", "object": "chat.completion.chunk", "created": 1741570283, "model": "llama-3.1-8b",
            "system_fingerprint": "fp_0165350fbb",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": usage}


USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
         "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
CHUNKS = [chunk({"role": "assistant", "content": "", "refusal": None}), chunk({"content": "Bon"}),
          chunk({"content": "jour ✓"}), chunk({}, "stop"), dict(chunk({}), choices=[], usage=USAGE)]
BODY = sse(*CHUNKS)
STREAM = BODY + DONE_FRAME
UPSTREAM_ERROR = {"error": {"message": "The server had an error while processing your request.",
                            "type": "server_error", "param": None, "code": None}}

SPLITS = {
    "whole": lambda data: [data],
    "1-byte": lambda data: [data[i : i + 1] for i in range(len(data))],
    "7-byte": lambda data: [data[i : i + 7] for i in range(0, len(data), 7)],
    "at-newlines": lambda data: [piece for line in data.split(b"\n") for piece in (line, b"\n")][:-1],
    "frame and a half": lambda data: [data[:300], data[300:301], data[301:]],
}


def test_the_fixture_is_what_the_api_sends():
    for c in CHUNKS:
        ChatCompletionChunk.model_validate(c)
    assert len(BODY) > 301  # "frame and a half" cuts inside the stream


def whole_frames(out: bytes) -> list[bytes]:
    """Split emitted bytes into frames; fails unless every frame is complete."""
    assert out.endswith(b"\n\n")
    frames = out[:-2].split(b"\n\n")
    for frame in frames:
        assert frame.startswith(b"data: ") and b"\n" not in frame
        if frame != DONE_FRAME.strip():
            orjson.loads(frame[6:])
    return frames


@pytest.mark.parametrize("split", SPLITS)
def test_a_stream_is_passed_on_byte_for_byte_in_whole_frames_as_soon_as_they_are_complete(split):
    translator = ADAPTER.chat_stream(TARGET, {"stream": True})
    fed = b""
    out = b""
    for piece in SPLITS[split](STREAM):
        fed += piece
        for frames in translator.feed(piece):
            whole_frames(frames)
            out += frames
        # Everything complete so far is out; the rest waits for its blank line.
        assert out == (fed[: fed.rfind(b"\n\n") + 2] if b"\n\n" in fed else b"")
    assert translator.close() == []  # the upstream's [DONE] went through: none is added
    assert out == STREAM


@pytest.mark.parametrize("split", SPLITS)
def test_usage_is_read_from_the_final_chunk(split):
    translator = ADAPTER.chat_stream(TARGET, {"stream": True, "stream_options": {"include_usage": True}})
    for piece in SPLITS[split](STREAM):
        translator.feed(piece)
    translator.close()
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == (9, 2, "stop")


def test_only_the_frame_that_carries_usage_is_parsed(monkeypatch):
    """The hot path: a bytes search decides; ``"usage": null`` (on every chunk once include_usage is
    asked) and the word in a reply's text are not a reason to parse."""
    parsed = []
    real = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda data: parsed.append(data) or real(data))
    talk = chunk({"content": 'he said "usage": {"prompt_tokens": 1}'})
    data = sse(*(dict(c, usage=None) for c in CHUNKS[:-1]), talk, CHUNKS[-1]) + DONE_FRAME
    translator = ADAPTER.chat_stream(TARGET, {})
    assert b"".join(translator.feed(data)) == data
    assert len(parsed) == 1 and b'"prompt_tokens":9' in parsed[0]
    assert (translator.result.prompt_tokens, translator.result.completion_tokens) == (9, 2)


def test_a_stream_without_usage_records_none_but_its_finish_reason():
    translator = ADAPTER.chat_stream(TARGET, {})
    translator.feed(sse(*CHUNKS[:-1]) + DONE_FRAME)
    translator.close()
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == (None, None, "stop")


def test_usage_of_the_wrong_shape_is_ignored():
    translator = ADAPTER.chat_stream(TARGET, {})
    translator.feed(sse(dict(chunk({}), usage={"prompt_tokens": "9", "completion_tokens": None})) + DONE_FRAME)
    assert (translator.result.prompt_tokens, translator.result.completion_tokens) == (None, None)


CRLF_STREAM = STREAM.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("split", SPLITS)
def test_crlf_frames_are_passed_on_as_soon_as_they_are_complete(split):
    """An OpenAI-compatible server may end its lines with CRLF: frames must not wait for the stream's end."""
    translator = ADAPTER.chat_stream(TARGET, {"stream": True})
    fed = out = b""
    for piece in SPLITS[split](CRLF_STREAM):
        fed += piece
        out += b"".join(translator.feed(piece))
        assert out == (fed[: fed.rfind(b"\r\n\r\n") + 4] if b"\r\n\r\n" in fed else b"")
    assert translator.close() == []  # its [DONE] was seen: none is added
    assert out == CRLF_STREAM
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == (9, 2, "stop")


def test_a_stream_that_ends_without_done_gets_one():
    translator = ADAPTER.chat_stream(TARGET, {})
    assert b"".join(translator.feed(BODY)) == BODY
    assert translator.close() == [DONE_FRAME]
    assert translator.result.error is None


def test_a_last_frame_without_its_blank_line_is_completed_on_close():
    translator = ADAPTER.chat_stream(TARGET, {})
    assert translator.feed(BODY[:-2]) == [BODY[: BODY[:-2].rfind(b"\n\n") + 2]]
    assert b"".join(translator.close()) == BODY[BODY[:-2].rfind(b"\n\n") + 2 :] + DONE_FRAME


def test_a_done_without_its_blank_line_is_not_doubled():
    translator = ADAPTER.chat_stream(TARGET, {})
    translator.feed(BODY + b"data: [DONE]")
    assert translator.close() == [DONE_FRAME]


@pytest.mark.parametrize("split", SPLITS)
def test_an_error_event_mid_stream_passes_through_then_done(split):
    data = sse(CHUNKS[0], CHUNKS[1], UPSTREAM_ERROR)  # the upstream gives up and closes, without [DONE]
    translator = ADAPTER.chat_stream(TARGET, {})
    out = b"".join(f for piece in SPLITS[split](data) for f in translator.feed(piece))
    out += b"".join(translator.close())
    assert out == data + DONE_FRAME
    assert orjson.loads(whole_frames(out)[2][6:]) == UPSTREAM_ERROR


@pytest.mark.parametrize("cut", [1, 40, len(sse(CHUNKS[0])) - 1, len(sse(CHUNKS[0])), len(sse(CHUNKS[0])) + 1])
def test_a_dropped_connection_leaves_room_for_a_whole_error_frame(cut):
    """What the handler writes when the upstream breaks: the frames so far, then its error and [DONE]."""
    translator = ADAPTER.chat_stream(TARGET, {})
    sent = b"".join(translator.feed(STREAM[:cut]))
    written = sent + error_frame(UpstreamError("upstream connection failed: reset")) + DONE_FRAME
    frames = whole_frames(written)
    assert frames[-1] == DONE_FRAME.strip()
    assert orjson.loads(frames[-2][6:])["error"]["message"] == "upstream connection failed: reset"
    assert len(frames) == (3 if cut >= len(sse(CHUNKS[0])) else 2)


def test_stream_translators_share_no_state():
    first, second = ADAPTER.chat_stream(TARGET, {}), ADAPTER.chat_stream(TARGET, {})
    first.feed(STREAM[:50])
    assert b"".join(second.feed(STREAM)) == STREAM
    assert second.close() == [] and first.close() != []


def test_adapter_is_stateless():
    assert OpenAIAdapter.kind == "openai"
    ADAPTER.chat_request(TARGET, {"messages": []})
    ADAPTER.chat_response(TARGET, orjson.dumps(COMPLETION))
    assert vars(ADAPTER) == {}


@pytest.mark.parametrize("ending", [b"data: [DONE]", b"", b"\n\n"])
def test_usage_is_read_when_the_stream_ends_without_a_whole_done(ending):
    translator = ADAPTER.chat_stream(TARGET, {})
    translator.feed(BODY[:-2])  # the usage frame waits for its blank line
    translator.feed(b"\n\n" + ending if ending else b"")
    translator.close()
    res = translator.result
    assert (res.prompt_tokens, res.completion_tokens, res.finish_reason) == (9, 2, "stop")
