"""``forge_ref.messages``: the anthropic pass-through (request, stream, answer untouched), Anthropic's
error shape for every status of these endpoints only, and one usage row per request. The real
gateway (``GatewayThread``) against the real mock; the SDK-level flows are in
``test_e2e_messages.py``, the exact costs per cache layer in ``test_cache_layers.py``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass

import httpx
import orjson
import pytest
from mock_sdk import ANTHROPIC_TOOLS, TOOL_PROMPT
from support import GatewayThread, add_provider, create_user, settings_for
from tornado.httputil import HTTPHeaders

from forge_ref.adapters.anthropic import AnthropicAdapter
from forge_ref.adapters.base import Target
from forge_ref.messages import Native, NativeStream, Translated

LIMIT = 4096
MESSAGE = {"model": "claude/claude-haiku-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}
TARGET = Target(base_url="https://api.anthropic.com/", api_key="sk-ant-stored", model="claude-haiku-4-5",
                label="claude/haiku")


@dataclass
class Env:
    g: GatewayThread
    key: str
    mock_url: str

    def post(self, path: str, **kw) -> httpx.Response:
        headers = {"x-api-key": self.key, "anthropic-version": "2023-06-01", **kw.pop("headers", {})}
        return httpx.post(self.g.url + path, headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module")
def env(mock, tmp_path_factory):
    g = GatewayThread(settings_for(tmp_path_factory.mktemp("messages"), max_body_bytes=LIMIT, read_timeout=0.5))
    key = create_user(g.url)
    for provider, kind, path in (("claude", "anthropic", "/anthropic"), ("openai", "openai", "/openai/v1"),
                                 ("gemini", "gemini", "/gemini")):
        r = add_provider(g.url, key, provider=provider, kind=kind, api_key=f"sk-{provider}-0123456789",
                         base_url=mock.url + path)
        assert r.status_code == 201, r.text
    yield Env(g, key, mock.url)
    g.stop()


# --- the pass-through -----------------------------------------------------------------------------


def test_native_request_is_the_body_as_sent_with_the_upstream_model():
    body = {"model": "claude/haiku", "max_tokens": 9, "top_k": 3, "thinking": {"type": "enabled", "budget_tokens": 2},
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "u"}}]}]}
    client = HTTPHeaders({"Anthropic-Version": "2024-01-01", "anthropic-beta": "context-1m-2025-08-07",
                          "x-api-key": "forge-client-key", "x-stainless-os": "Linux"})
    req = Native(AnthropicAdapter(), client).chat_request(TARGET, body)
    assert (req.method, req.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert req.body == orjson.dumps(dict(body, model="claude-haiku-4-5"))
    assert req.headers == {"x-api-key": "sk-ant-stored", "anthropic-version": "2024-01-01",
                           "anthropic-beta": "context-1m-2025-08-07", "content-type": "application/json"}
    default = Native(AnthropicAdapter(), HTTPHeaders()).count_request(TARGET, body)
    assert default.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert default.headers["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in default.headers


def events(*evs: dict) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in evs)


STREAM = events(
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                          "content": [], "stop_reason": None, "stop_sequence": None,
                                          "usage": {"input_tokens": 7, "cache_read_input_tokens": 100,
                                                    "cache_creation_input_tokens": 20, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé 🙂"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 12}},
    {"type": "message_stop"},
) + b"event: message_delta\ndata: {not json\n\n"  # not ours to judge: passed on as it came


@pytest.mark.parametrize("size", [1, 7, 100, len(STREAM)])
def test_native_stream_passes_every_byte_and_reads_usage(size):
    stream = NativeStream()
    out = []
    for i in range(0, len(STREAM), size):
        frames = stream.feed(STREAM[i : i + size])
        assert all(f.endswith(b"\n\n") for f in frames)  # whole events only
        out += frames
    out += stream.close()
    assert b"".join(out) == STREAM
    assert (stream.result.prompt_tokens, stream.result.completion_tokens) == (127, 12)


def test_native_stream_passes_an_unterminated_last_event_and_adds_nothing():
    stream = NativeStream()
    assert stream.feed(b"event: message_stop\ndata: {}") == []
    assert stream.close() == [b"event: message_stop\ndata: {}\n\n"]


def normalized(data: bytes) -> bytes:
    return re.sub(rb"(msg|toolu)_mock_\d+", rb"\1_mock_N", data)


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_native_answers_are_the_providers_byte_for_byte(env, stream):
    body = dict(MESSAGE, stream=stream, tools=ANTHROPIC_TOOLS, messages=[{"role": "user", "content": TOOL_PROMPT}])
    via = env.post("/v1/messages", json=body)
    direct = httpx.post(env.mock_url + "/anthropic/v1/messages", json=dict(body, model="claude-haiku-4-5"),
                        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert via.status_code == direct.status_code == 200
    assert normalized(via.content) == normalized(direct.content)
    assert via.headers["content-type"] == direct.headers["content-type"]


def test_upstream_overloaded_stays_529_for_anthropic_clients():
    for ingress in (Native(AnthropicAdapter(), HTTPHeaders()), Translated(AnthropicAdapter())):
        err = ingress.error(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', {})
        assert (err.status, err.message) == (529, "upstream error 529: Overloaded")
        assert ingress.error(500, b"{}", {}).status == 502


# --- errors: Anthropic's shape on these endpoints --------------------------------------------------

ERRORS = [
    ("400 not JSON", {"content": b"{not json"}, 400, "invalid_request_error", "request body is not valid JSON"),
    ("400 messages missing", {"json": {"model": "claude/x", "max_tokens": 5}}, 400, "invalid_request_error",
     "'messages' must be a non-empty array"),
    ("400 a system role in messages", {"json": dict(MESSAGE, messages=[{"role": "system", "content": "x"}])}, 400,
     "invalid_request_error", "messages[0] must be an object with role 'user' or 'assistant' (the system prompt is "
     "the top-level 'system')"),
    ("400 max_tokens missing", {"json": {k: v for k, v in MESSAGE.items() if k != "max_tokens"}}, 400,
     "invalid_request_error", "'max_tokens' is required: a positive integer"),
    ("400 stream not a boolean", {"json": dict(MESSAGE, stream="yes")}, 400, "invalid_request_error",
     "'stream' must be a boolean"),
    ("400 model missing", {"json": dict(MESSAGE, model=None)}, 400, "invalid_request_error",
     "'model' is required: a string such as 'openai/gpt-4o-mini'"),
    ("400 a field of the wrong shape", {"json": dict(MESSAGE, model="openai/gpt-4o", tools=[5])}, 400,
     "invalid_request_error", "the request has a field of the wrong type or shape for this provider (AttributeError)"),
    ("400 no OpenAI place for a document", {"json": dict(MESSAGE, model="gemini/g", messages=[
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])}, 400,
     "invalid_request_error", "a 'document' block cannot be translated to OpenAI chat; only anthropic-kind providers "
     "take it"),
    ("400 from the provider keeps its message", {"json": MESSAGE, "headers": {"anthropic-beta": "nope"}}, 400,
     "invalid_request_error", "Unexpected value(s) `nope` for the `anthropic-beta` header. Please consult our "
     "documentation at docs.anthropic.com or try again without the header."),
    ("401 no key", {"json": MESSAGE, "headers": {"x-api-key": ""}}, 401, "authentication_error",
     "missing API key: send 'Authorization: Bearer forge-...'"),
    ("401 unknown key", {"json": MESSAGE, "headers": {"x-api-key": "forge-guess"}}, 401, "authentication_error",
     "invalid API key"),
    ("404 no such provider", {"json": dict(MESSAGE, model="ghost/x")}, 404, "not_found_error",
     "no provider key named 'ghost' for this user; add one with POST /v1/provider-keys"),
    ("413 too large", {"content": b"x" * (LIMIT + 1)}, 413, "request_too_large",
     f"request body is {LIMIT + 1} bytes; the limit is {LIMIT}"),
    ("429 from the upstream", {"json": dict(MESSAGE, model="claude/fail-429")}, 429, "rate_limit_error",
     "Number of requests has exceeded your rate limit. Please try again later."),
    ("502 upstream failure", {"json": dict(MESSAGE, model="openai/fail-500")}, 502, "api_error",
     "upstream error 500: The server had an error while processing your request. Sorry about that!"),
    ("502 unusable upstream answer", {"json": dict(MESSAGE, model="gemini/bad-json")}, 502, "api_error",
     "upstream returned invalid JSON for chat completion"),
    ("504 upstream timeout", {"json": dict(MESSAGE, model="claude/hang")}, 504, "api_error", "upstream timed out"),
]


@pytest.mark.parametrize(("name", "kw", "status", "kind", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_every_error_has_anthropics_shape(env, name, kw, status, kind, message):
    r = env.post("/v1/messages", **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"type": "error", "error": {"type": kind, "message": message}}
    assert ("retry-after" in r.headers) == (status == 429)


def test_count_tokens_errors_too(env):
    r = env.post("/v1/messages/count_tokens", json={"model": "openai/gpt-4o", "messages": MESSAGE["messages"]})
    assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")
    r = env.post("/v1/messages/count_tokens", json={"model": "claude/x"})
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "'messages' must be a non-empty array"}}


def test_wrong_method_is_anthropic_shaped_and_chat_stays_openai_shaped(env):
    r = httpx.get(env.g.url + "/v1/messages", headers={"x-api-key": env.key})
    assert r.status_code == 405
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "Method Not Allowed"}}
    r = httpx.post(env.g.url + "/v1/chat/completions", headers={"x-api-key": env.key},
                   json={"model": "ghost/x", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "provider_not_found"


# --- one usage row per request ----------------------------------------------------------------------


def usage_rows(env, after: int) -> list[tuple]:
    asyncio.run_coroutine_threadsafe(env.g.gw.usage.flush(), env.g.loop).result(5)
    with sqlite3.connect(env.g.settings.db) as db:
        return db.execute("SELECT id, provider, model, status, prompt_tokens, completion_tokens FROM usage"
                          " WHERE id > ? ORDER BY id", (after,)).fetchall()


def test_each_request_records_one_usage_row(env):
    start = max([0] + [row[0] for row in usage_rows(env, 0)])
    answers = {}
    for model in ("claude/claude-haiku-4-5", "openai/gpt-4o-mini", "gemini/gemini-2.5-flash"):
        for stream in (False, True):
            r = env.post("/v1/messages", json=dict(MESSAGE, model=model, stream=stream))
            assert r.status_code == 200
            answers[model, stream] = r
    streamed = orjson.loads(answers["openai/gpt-4o-mini", True].content.split(b"event: message_delta\ndata: ")[1]
                            .split(b"\n")[0])["usage"]
    assert streamed == answers["openai/gpt-4o-mini", False].json()["usage"] == {"input_tokens": 1, "output_tokens": 4}
    count = {"model": MESSAGE["model"], "messages": MESSAGE["messages"]}
    assert env.post("/v1/messages/count_tokens", json=count).json() == {"input_tokens": 1}
    assert env.post("/v1/messages", json=dict(MESSAGE, model="claude/fail-429")).status_code == 429
    assert env.post("/v1/messages", json=dict(MESSAGE, model="ghost/x")).status_code == 404
    assert env.post("/v1/messages", json=dict(MESSAGE, max_tokens=0)).status_code == 400
    rows = [row[1:] for row in usage_rows(env, start)]
    assert rows == [
        ("claude", "claude-haiku-4-5", 200, 1, 4), ("claude", "claude-haiku-4-5", 200, 1, 4),
        ("openai", "gpt-4o-mini", 200, 1, 4), ("openai", "gpt-4o-mini", 200, 1, 4),
        ("gemini", "gemini-2.5-flash", 200, 1, 4), ("gemini", "gemini-2.5-flash", 200, 1, 4),
        ("claude", "claude-haiku-4-5", 200, None, None),  # count_tokens
        ("claude", "fail-429", 429, None, None),
    ]  # nothing for requests refused before any upstream call


def test_a_timeout_records_its_row_and_a_scope_holds_on_both_endpoints(env):
    start = max([0] + [row[0] for row in usage_rows(env, 0)])
    hung = dict(MESSAGE, model="claude/hang")
    assert env.post("/v1/messages", json=hung).status_code == 504
    assert env.post("/v1/messages/count_tokens", json={"model": hung["model"], "messages": hung["messages"]}
                    ).status_code == 504
    assert [row[1:] for row in usage_rows(env, start)] == [("claude", "hang", 504, None, None)] * 2
    r = httpx.post(env.g.url + "/v1/users/me/keys", json={"name": "claude only", "providers": ["claude"]},
                   headers={"Authorization": f"Bearer {env.key}"})
    scoped = Env(env.g, r.json()["key"], env.mock_url)
    assert scoped.post("/v1/messages", json=MESSAGE).status_code == 200
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = scoped.post(path, json=dict(MESSAGE, model="openai/gpt-4o-mini"))
        assert r.status_code == 403
        assert r.json() == {"type": "error", "error": {"type": "permission_error",
                                                       "message": "this key may not use provider 'openai'"}}
