"""The mock provider, driven through the official OpenAI, Anthropic and Gemini SDKs.

The mock runs as a real process (``python -m forge_ref.mock_provider --port 0``)
so the SDKs' own request building and response parsing keep it honest.
Token counts are whitespace word counts: "hello mock world" is 3 prompt
tokens and "Mock reply to: hello mock world" is 6 completion tokens.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anthropic
import httpx
import httpx2  # google-genai's HTTP stack (a fork of httpx)
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "hello mock world"
REPLY = "Mock reply to: hello mock world"
TOOL_PROMPT = "please use the tool for cats"
TOOL_ARGS = {"query": TOOL_PROMPT}


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

def _start_mock(*extra: str) -> tuple[subprocess.Popen, str]:
    """Start the mock on a free port (--port 0); return (process, http://host:port).

    stderr goes to a temp file (a pipe nobody reads could fill up and stall
    the server); _stop() returns what was logged there.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge_ref.mock_provider", "--port", "0", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    proc.err_file = err  # type: ignore[attr-defined]
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(10)
    if not line or "listening on http://" not in line[0]:
        proc.kill()
        err.seek(0)
        raise RuntimeError(f"mock did not start: {line!r} {err.read()}")
    return proc, line[0].strip().rsplit(" ", 1)[-1]


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.err_file.seek(0)  # type: ignore[attr-defined]
    return proc.err_file.read()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def base():
    proc, url = _start_mock()
    yield url
    # Faults (drops, hangs, client timeouts) must not make the server log errors.
    assert "Traceback" not in _stop(proc)


def oai(base: str, key: str = "sk-test", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/openai/v1", api_key=key, max_retries=0, **kw)


def ant(base: str, key: str = "sk-ant-test", **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0, **kw)


def gem(base: str, key: str = "g-test", timeout_ms: int | None = None) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=f"{base}/gemini", api_version="v1beta", timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1)))


OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Look up",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]
ANTHROPIC_TOOLS = [
    {"name": "lookup", "description": "Look up",
     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "other", "input_schema": {"type": "object"}},
]
GEMINI_TOOLS = [types.Tool(function_declarations=[
    types.FunctionDeclaration(name="lookup", description="Look up", parameters=types.Schema(
        type="OBJECT", properties={"query": types.Schema(type="STRING")})),
    types.FunctionDeclaration(name="other", description="Other"),
])]


def _cut_mid_body(exc: BaseException | None) -> bool:
    """The error chain holds the HTTP stack's 'incomplete body' error.

    Matched by name: the SDKs vendor different httpx flavours (httpx, httpx2).
    """
    while exc is not None:
        if type(exc).__name__ == "RemoteProtocolError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_unit(vec: list[float]) -> bool:
    return math.isclose(math.sqrt(sum(v * v for v in vec)), 1.0, rel_tol=1e-4)


# --------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------

def test_openai_chat_plain(base):
    r = oai(base).chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": PROMPT}])
    assert r.object == "chat.completion" and r.model == "gpt-4o"
    assert r.choices[0].message.content == REPLY
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 6, 11)


def test_openai_chat_content_parts(base):
    r = oai(base).chat.completions.create(model="gpt-4o", messages=[
        {"role": "user", "content": "first turn"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "part one"},
                                     {"type": "text", "text": "part two"}]}])
    assert r.choices[0].message.content == "Mock reply to: part one part two"


def test_openai_chat_stream_with_usage(base):
    chunks = list(oai(base).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}],
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(texts) == 4 and "".join(texts) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == 3


def test_openai_stream_without_usage(base):
    chunks = list(oai(base).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_openai_tool_call(base):
    r = oai(base).chat.completions.create(
        model="gpt-4o", tools=OPENAI_TOOLS, messages=[{"role": "user", "content": TOOL_PROMPT}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_mock_") and call.type == "function"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == TOOL_ARGS


def test_openai_tool_not_called_without_keyword_or_after_result(base):
    c = oai(base)
    r = c.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS,
                                  messages=[{"role": "user", "content": PROMPT}])
    assert r.choices[0].message.content == REPLY and not r.choices[0].message.tool_calls
    # After the tool result comes back the mock answers with text (no loop).
    r = c.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS, messages=[
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"}])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "Mock reply to: " + TOOL_PROMPT


def test_openai_stream_tool_call(base):
    chunks = list(oai(base).chat.completions.create(
        model="gpt-4o", tools=OPENAI_TOOLS, stream=True,
        messages=[{"role": "user", "content": TOOL_PROMPT}]))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_mock_") and deltas[0].function.name == "lookup"
    pieces = [d.function.arguments for d in deltas[1:]]
    assert len(pieces) == 2 and json.loads("".join(pieces)) == TOOL_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_embeddings(base):
    c = oai(base)
    r = c.embeddings.create(model="text-embedding-3-small", input="alpha")  # SDK asks base64
    assert r.object == "list" and r.model == "text-embedding-3-small"
    vec = r.data[0].embedding
    assert len(vec) == 8 and _is_unit(vec)
    r2 = c.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"],
                             encoding_format="float", dimensions=16)
    assert [d.index for d in r2.data] == [0, 1] and len(r2.data[1].embedding) == 16
    assert r2.usage.prompt_tokens == 3 and r2.usage.total_tokens == 3
    again = c.embeddings.create(model="text-embedding-3-small", input="alpha",
                                encoding_format="float").data[0].embedding
    assert again == pytest.approx(vec, abs=1e-6)   # deterministic; base64 == float32 of float
    assert r2.data[0].embedding != r2.data[1].embedding


def test_openai_models(base):
    ids = [m.id for m in oai(base).models.list()]
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} <= set(ids)


# --------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------

def test_anthropic_message_plain(base):
    m = ant(base).messages.create(model="claude-sonnet-4-5", max_tokens=64, system="be brief",
                                  messages=[{"role": "user", "content": PROMPT}])
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-sonnet-4-5"
    assert m.content[0].type == "text" and m.content[0].text == REPLY
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 6)


def test_anthropic_content_blocks(base):
    m = ant(base).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[
        {"role": "user", "content": [{"type": "text", "text": "block a"},
                                     {"type": "text", "text": "block b"}]}])
    assert m.content[0].text == "Mock reply to: block a block b"


def test_anthropic_stream(base):
    with ant(base).messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                   messages=[{"role": "user", "content": PROMPT}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) == 4 and "".join(pieces) == REPLY
    assert final.content[0].text == REPLY and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 6)


def test_anthropic_tool_use(base):
    m = ant(base).messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                  messages=[{"role": "user", "content": TOOL_PROMPT}])
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_mock_")
    assert block.name == "lookup" and block.input == TOOL_ARGS
    # Feeding the tool result back gets a text answer.
    m2 = ant(base).messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                   messages=[
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": "42"}]}])
    assert m2.stop_reason == "end_turn" and m2.content[0].text == "Mock reply to: " + TOOL_PROMPT


def test_anthropic_stream_tool_use(base):
    with ant(base).messages.stream(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                   messages=[{"role": "user", "content": TOOL_PROMPT}]) as s:
        events = list(s)
        final = s.get_final_message()
    partials = [e.delta.partial_json for e in events
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(partials) == 2
    assert final.stop_reason == "tool_use"
    assert final.content[0].name == "lookup" and final.content[0].input == TOOL_ARGS


def test_anthropic_models(base):
    page = ant(base).models.list()
    ids = [m.id for m in page]
    assert {"claude-sonnet-4-5", "claude-haiku-4-5"} <= set(ids)
    assert page.data[0].type == "model" and page.data[0].display_name


# --------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------

def test_gemini_generate(base):
    c = gem(base)  # keep a reference: a dropped genai.Client closes its HTTP client
    r = c.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT,
        config=types.GenerateContentConfig(system_instruction="be brief"))
    assert r.text == REPLY
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (5, 6, 11)


def test_gemini_stream(base):
    c = gem(base)
    chunks = list(c.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT))
    assert len(chunks) == 4 and "".join(c.text for c in chunks) == REPLY
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 6


def test_gemini_function_call(base):
    c = gem(base)
    r = c.models.generate_content(
        model="gemini-2.5-flash", contents=TOOL_PROMPT,
        config=types.GenerateContentConfig(
            tools=GEMINI_TOOLS,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    call = r.function_calls[0]
    assert call.name == "lookup" and call.args == TOOL_ARGS


def test_gemini_embed(base):
    c = gem(base)
    r = c.models.embed_content(model="text-embedding-004", contents=["alpha", "beta"])
    assert len(r.embeddings) == 2 and all(len(e.values) == 8 for e in r.embeddings)
    assert _is_unit(r.embeddings[0].values)
    r2 = c.models.embed_content(model="text-embedding-004", contents="alpha",
                                config=types.EmbedContentConfig(output_dimensionality=16))
    assert len(r2.embeddings[0].values) == 16
    # The SDK always uses batchEmbedContents; check embedContent raw.
    raw = httpx.post(f"{base}/gemini/v1beta/models/text-embedding-004:embedContent?key=g-test",
                     json={"content": {"parts": [{"text": "alpha"}]}})
    assert raw.status_code == 200
    assert raw.json()["embedding"]["values"] == pytest.approx(r.embeddings[0].values)


def test_gemini_models(base):
    c = gem(base)
    names = [m.name for m in c.models.list()]
    assert {"models/gemini-2.5-flash", "models/gemini-2.5-pro", "models/text-embedding-004"} <= set(names)


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------

def test_openai_faults(base):
    msgs = [{"role": "user", "content": PROMPT}]
    with pytest.raises(openai.InternalServerError) as e:
        oai(base).chat.completions.create(model="fail-500", messages=msgs)
    assert e.value.status_code == 500 and e.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError) as e:
        oai(base).chat.completions.create(model="fail-429", messages=msgs)
    assert e.value.response.headers["retry-after"] == "7"
    assert e.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.APITimeoutError):
        oai(base, timeout=0.5).chat.completions.create(model="hang", messages=msgs)
    with pytest.raises(openai.APIConnectionError):   # non-streaming drop: no response at all
        oai(base).chat.completions.create(model="drop-mid-stream", messages=msgs)
    got = []
    with pytest.raises(openai.APIConnectionError) as e:   # the SDK wraps the httpx error
        for c in oai(base).chat.completions.create(model="drop-mid-stream", messages=msgs,
                                                   stream=True):
            got.append(c)
    assert len(got) == 3   # role chunk + 2 content chunks, then the cut
    assert _cut_mid_body(e.value)
    with pytest.raises(json.JSONDecodeError):   # the SDK lets the decode error through
        oai(base).chat.completions.create(model="bad-json", messages=msgs)
    with pytest.raises(json.JSONDecodeError):
        list(oai(base).chat.completions.create(model="bad-json", messages=msgs, stream=True))
    with pytest.raises(openai.InternalServerError):
        oai(base).embeddings.create(model="fail-500", input="x")


def test_fault_by_api_key_takes_whole_provider_down(base):
    with pytest.raises(openai.InternalServerError):
        oai(base, key="fail-500-openai").models.list()
    with pytest.raises(anthropic.RateLimitError) as e:
        ant(base, key="fail-429").models.list()
    assert e.value.response.headers["retry-after"] == "7"
    g = gem(base, key="fail-500")
    with pytest.raises(genai_errors.ServerError) as ge:
        g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert ge.value.code == 500 and ge.value.status == "INTERNAL"
    with pytest.raises(anthropic.APITimeoutError):
        ant(base, key="hang", timeout=0.5).models.list()
    with pytest.raises(json.JSONDecodeError):
        oai(base, key="bad-json").models.list()
    # A key's drop-mid-stream still cuts a streaming call mid-way, not before it starts.
    got = []
    with pytest.raises(openai.APIConnectionError) as e:
        for c in oai(base, key="drop-mid-stream").chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True):
            got.append(c)
    assert len(got) == 3 and _cut_mid_body(e.value)


def test_anthropic_faults(base):
    kw = dict(max_tokens=16, messages=[{"role": "user", "content": PROMPT}])
    with pytest.raises(anthropic.InternalServerError) as e:
        ant(base).messages.create(model="fail-500", **kw)
    assert e.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.RateLimitError) as e:
        ant(base).messages.create(model="fail-429", **kw)
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APITimeoutError):
        ant(base, timeout=0.5).messages.create(model="hang", **kw)
    pieces = []
    with pytest.raises(Exception) as e:
        with ant(base).messages.stream(model="drop-mid-stream", **kw) as s:
            for t in s.text_stream:
                pieces.append(t)
    assert len(pieces) == 2 and _cut_mid_body(e.value)


def test_gemini_faults(base):
    c = gem(base)
    with pytest.raises(genai_errors.ClientError) as e:
        c.models.generate_content(model="fail-429", contents=PROMPT)
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError):
        c.models.embed_content(model="fail-500", contents="x")
    slow = gem(base, timeout_ms=500)
    with pytest.raises(httpx2.TimeoutException):
        slow.models.generate_content(model="hang", contents=PROMPT)
    got = []
    with pytest.raises(Exception) as e:
        for chunk in c.models.generate_content_stream(model="drop-mid-stream", contents=PROMPT):
            got.append(chunk.text)
    assert len(got) == 2 and _cut_mid_body(e.value)


# --------------------------------------------------------------------------
# Auth and validation, checked raw so the exact error shapes are visible
# --------------------------------------------------------------------------

def test_auth_errors_in_each_shape(base):
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{base}/openai/v1/chat/completions", json=chat)
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{base}/openai/v1/chat/completions", json=chat,
                   headers={"Authorization": "Bearer sk-invalid-123"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    msg = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{base}/anthropic/v1/messages", json=msg, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {"type": "authentication_error",
                                                    "message": "x-api-key header is required"}}
    r = httpx.post(f"{base}/anthropic/v1/messages", json=msg, headers={"x-api-key": "k"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"

    r = httpx.get(f"{base}/gemini/v1beta/models")
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = httpx.get(f"{base}/gemini/v1beta/models?key=invalid")
    assert r.status_code == 401 and r.json()["error"]["code"] == 401
    assert httpx.get(f"{base}/gemini/v1beta/models?key=ok").status_code == 200

    with pytest.raises(openai.AuthenticationError):
        oai(base, key="invalid").models.list()
    with pytest.raises(anthropic.AuthenticationError):
        ant(base, key="sk-invalid").models.list()


def test_required_fields(base):
    hdr = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    r = httpx.post(f"{base}/anthropic/v1/messages", headers=hdr,
                   json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "max_tokens: Field required"}}
    r = httpx.post(f"{base}/openai/v1/chat/completions", headers={"Authorization": "Bearer k"},
                   json={"model": "gpt-4o"})
    assert r.status_code == 400
    assert r.json()["error"] == {"message": "Missing required parameter: 'messages'.",
                                 "type": "invalid_request_error", "param": "messages",
                                 "code": "missing_required_parameter"}
    r = httpx.post(f"{base}/openai/v1/chat/completions", headers={"Authorization": "Bearer k"},
                   content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{base}/gemini/v1beta/models/gemini-2.5-flash:generateContent",
                   headers={"x-goog-api-key": "k"}, json={})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(anthropic.BadRequestError):
        ant(base).messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[])
    r = httpx.get(f"{base}/openai/v1/nope", headers={"Authorization": "Bearer k"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    # Parseable JSON with wrong field types: 400 in the API's shape, not an HTML 500.
    r = httpx.post(f"{base}/anthropic/v1/messages", headers=hdr, json={
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a tool"}],
        "tools": ["not-an-object"]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(f"{base}/gemini/v1beta/models/m:batchEmbedContents?key=k", json={
        "requests": [{"content": {"parts": [{"text": "a"}]}, "outputDimensionality": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_stream_without_alt_sse_is_a_json_array(base):
    r = httpx.post(f"{base}/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                   headers={"x-goog-api-key": "k"}, json={"contents": [{"parts": [{"text": PROMPT}]}]})
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) == 4
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == REPLY
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 9


# --------------------------------------------------------------------------
# Stats and server options
# --------------------------------------------------------------------------

def test_stats_count_every_call(base):
    assert httpx.delete(f"{base}/_mock/stats").json()["total"] == 0
    o, a, g = oai(base), ant(base), gem(base)
    msgs = [{"role": "user", "content": "hi"}]
    o.chat.completions.create(model="gpt-4o", messages=msgs)
    list(o.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    with pytest.raises(openai.InternalServerError):          # failures count too
        o.chat.completions.create(model="fail-500", messages=msgs)
    o.embeddings.create(model="text-embedding-3-small", input="x")
    o.models.list()
    a.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.AuthenticationError):
        ant(base, key="invalid").models.list()
    g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    list(g.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    g.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    httpx.post(f"{base}/gemini/v1beta/models/text-embedding-004:embedContent?key=k",
               json={"content": {"parts": [{"text": "a"}]}})
    list(g.models.list())
    stats = httpx.get(f"{base}/_mock/stats").json()
    assert stats == {"calls": {
        "openai.chat": 3, "openai.embeddings": 1, "openai.models": 1,
        "anthropic.messages": 1, "anthropic.models": 1,
        "gemini.generateContent": 1, "gemini.streamGenerateContent": 1,
        "gemini.embedContent": 1, "gemini.batchEmbedContents": 1, "gemini.models": 1,
    }, "total": 12}
    httpx.delete(f"{base}/_mock/stats")
    assert set(httpx.get(f"{base}/_mock/stats").json()["calls"].values()) == {0}


def test_latency_and_chunk_options():
    proc, url = _start_mock("--latency-ms", "150", "--chunks", "2", "--chunk-delay-ms", "100")
    try:
        c = oai(url)
        t0 = time.perf_counter()
        c.models.list()
        assert time.perf_counter() - t0 >= 0.15
        t0 = time.perf_counter()
        chunks = list(c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True))
        elapsed = time.perf_counter() - t0
        texts = [ch.choices[0].delta.content for ch in chunks[1:] if ch.choices[0].delta.content]
        assert len(texts) == 2 and "".join(texts) == REPLY
        assert elapsed >= 0.15 + 3 * 0.1   # latency + delays between the 4 frames before [DONE]
    finally:
        assert "Traceback" not in _stop(proc)
