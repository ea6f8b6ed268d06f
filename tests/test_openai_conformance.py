"""Every response shape forge-ref builds in OpenAI's format meets OpenAI's published schema
(``openai_schema``: its required fields, types and enums), as strictly typed clients expect:

* every error body;
* a running gateway for every kind: chat (text, tool calls), streams with usage, embeddings, the model
  list, errors of every status (and inside a stream);
* the mock's answers that pass through unchanged (chat, legacy completions, images), so the
  pass-through kinds are tested against upstream shapes that are themselves right.

The adapters' own tests hold each of their golden cases to the same schema (chat completions and
chunks translated from Anthropic and Gemini, errors inside streams, Gemini's embeddings, mapped errors).
"""

from __future__ import annotations

import httpx
import jsonschema
import openai_schema as oas
import orjson
import pytest
from openai_schema import validate as check
from support import ServerProcess, add_provider, create_user

from forge_ref import errors
from forge_ref.adapters.base import DONE_FRAME, error_frame

pytestmark = pytest.mark.timeout(60)


def check_stream(raw: bytes) -> list[dict]:
    """Every frame of an OpenAI SSE stream: a chunk or an error, then one [DONE] last."""
    assert raw.endswith(DONE_FRAME) and raw.count(DONE_FRAME) == 1, raw[-200:]
    frames = [orjson.loads(block.removeprefix(b"data: ")) for block in raw[: -len(DONE_FRAME)].split(b"\n\n") if block]
    for frame in frames:
        check(oas.ERROR if "error" in frame else oas.CHAT_CHUNK, frame)
    return frames


def test_the_schema_fails_what_was_built_before():
    """Without ``refusal`` and ``logprobs`` (what the translations answered until now), a chat completion fails."""
    old = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    with pytest.raises(jsonschema.ValidationError, match="'logprobs' is a required property"):
        check(oas.CHAT_COMPLETION, old)
    old["choices"][0]["logprobs"] = None
    with pytest.raises(jsonschema.ValidationError, match="'refusal' is a required property"):
        check(oas.CHAT_COMPLETION, old)


# --- every error body ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [errors.ForgeError, errors.BadRequest, errors.Unauthorized, errors.Forbidden,
                                 errors.NotFound, errors.Conflict, errors.PayloadTooLarge, errors.UpstreamError,
                                 errors.UpstreamTimeout])
def test_error_bodies_of_every_error_type(cls):
    for err in (cls("what went wrong"), cls("with a param", param="model", code="x")):
        check(oas.ERROR, orjson.loads(err.body()))
        check(oas.ERROR, orjson.loads(error_frame(err).removeprefix(b"data: ")))  # inside a stream


# --- through a running gateway ------------------------------------------------------------------

MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-haiku-4-5",
          "gemini": "gemini/gemini-2.5-flash"}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def gateway(mock, tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("conformance"))
    key = create_user(server.url)
    for kind, path in (("openai", "/openai/v1"), ("anthropic", "/anthropic"), ("gemini", "/gemini")):
        assert add_provider(server.url, key, provider=kind, kind=kind, api_key="k-" + kind,
                            base_url=mock.url + path).status_code == 201
    with httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        yield client
    server.stop()


def chat(**body) -> dict:
    return {"messages": [{"role": "user", "content": "please use the tool" if body.get("tools") else "hello"}],
            **body}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("tools", [None, TOOLS], ids=["text", "tool call"])
def test_chat_through_the_gateway(gateway, kind, tools):
    extra = {"tools": tools} if tools else {}
    r = gateway.post("/chat/completions", json=chat(model=MODELS[kind], **extra))
    assert r.status_code == 200, r.text
    check(oas.CHAT_COMPLETION, r.json())
    assert (r.json()["choices"][0]["finish_reason"] == "tool_calls") == bool(tools)
    r = gateway.post("/chat/completions", json=chat(model=MODELS[kind], stream=True,
                                                    stream_options={"include_usage": True}, **extra))
    frames = check_stream(r.content)
    check(oas.USAGE, frames[-1]["usage"])


@pytest.mark.parametrize("kind", list(MODELS))
def test_an_error_inside_a_stream_through_the_gateway(gateway, kind):
    r = gateway.post("/chat/completions", json=chat(model=MODELS[kind].split("/")[0] + "/drop-mid-stream",
                                                    stream=True))
    assert "error" in check_stream(r.content)[-1]


@pytest.mark.parametrize("model", ["openai/text-embedding-3-small", "gemini/text-embedding-004"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_through_the_gateway(gateway, model, encoding):
    r = gateway.post("/embeddings", json={"model": model, "input": ["a", "b"], "encoding_format": encoding})
    check(oas.embeddings(oas.EMBEDDING_BASE64) if encoding == "base64" else oas.EMBEDDINGS, r.json())


def test_the_model_list(gateway):
    r = gateway.get("/models")
    check(oas.MODEL_LIST, r.json())
    assert {m["owned_by"] for m in r.json()["data"]} == set(MODELS)


@pytest.mark.parametrize(("method", "path", "kw", "status"), [
    ("POST", "/chat/completions", {"json": chat(model="openai/gpt-4o-mini"), "headers": {"Authorization": "x"}}, 401),
    ("POST", "/chat/completions", {"json": chat(model="ghost/x")}, 404),
    ("POST", "/chat/completions", {"content": b"{not json"}, 400),
    ("GET", "/chat/completions", {}, 405),
    ("POST", "/chat/completions", {"json": chat(model="openai/x", pad="x" * 5_000_000)}, 413),
    ("POST", "/chat/completions", {"json": chat(model="anthropic/fail-429")}, 429),
    ("POST", "/chat/completions", {"json": chat(model="gemini/fail-500")}, 502),
    ("POST", "/embeddings", {"json": {"model": "anthropic/claude-haiku-4-5", "input": "x"}}, 400),
    ("POST", "/completions", {"json": {"model": "gemini/gemini-2.5-flash", "prompt": "x"}}, 400),
    ("GET", "/nowhere", {}, 404),
])
def test_errors_through_the_gateway(gateway, method, path, kw, status):
    r = gateway.request(method, path, **kw)
    assert r.status_code == status, r.text
    check(oas.ERROR, r.json())


# --- the upstream answers passed through (the mock) ---------------------------------------------


def test_passed_through_answers_are_in_openais_shapes(gateway):
    check(oas.COMPLETION, gateway.post("/completions", json={"model": "openai/gpt-3.5-turbo-instruct",
                                                             "prompt": ["a", "b"]}).json())
    for body in ({"model": "openai/gpt-image-1", "prompt": "cat", "n": 2},
                 {"model": "openai/dall-e-2", "prompt": "cat"},
                 {"model": "openai/dall-e-3", "prompt": "cat", "response_format": "b64_json"}):
        r = gateway.post("/images/generations", json=body)
        check(oas.IMAGES, r.json())
