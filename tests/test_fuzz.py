"""Bad input, generated: every endpoint of ``/openapi.json`` gets malformed JSON, wrong types,
huge numbers, unicode, nested junk, odd auth headers, wrong methods and odd paths (hypothesis,
raw HTTP with httpx against the real gateway and the mock provider), and raw malformed HTTP
over a socket. Whatever comes in, forge-ref answers:

* never a 5xx for its own fault (502/504 only from a proxy endpoint whose request was valid
  enough to reach the upstream),
* an OpenAI-shaped JSON error for every 4xx (Anthropic-shaped on ``/v1/messages``), never a traceback,
* never a secret (Forge keys, provider keys, the admin token, the encryption key).

``FORGE_FUZZ_EXAMPLES`` sets the total number of generated HTTP cases (split over the
endpoints; default 2400, which keeps the default run short; CI sets 12000).

``tests/test_schemathesis.py`` holds the answers to the document (statuses, headers, schemas,
stateful sequences); this file keeps what a tool reading the document cannot: secrets in
bodies, junk no schema describes, every mock fault, raw malformed HTTP, and the document
against the app's routes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import string
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import tornado.web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ADMIN, GatewayThread, add_provider, create_user, free_port, settings_for

from forge_ref import openapi
from forge_ref.handlers import routes

TOTAL = int(os.environ.get("FORGE_FUZZ_EXAMPLES", "2400"))
PROVIDER_SECRETS = {"openai": "sk-fuzz-openai-7f3a9c1e5b2d4f60", "anth": "sk-fuzz-anth-0b8e2d4c6a1f3e57",
                    "gem": "AIzaFuzzGem-5c7e9a1b3d2f4e6a8c"}
IMAGE_PATHS = {"/v1/images/generations", "/v1/images/edits"}  # their streams end with a completed event
PROXY_PATHS = {"/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens",
               "/v1/completions", *IMAGE_PATHS}
ANTHROPIC_PATHS = {"/v1/messages", "/v1/messages/count_tokens"}  # Anthropic's shapes, errors and streams
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


class Fuzz:
    """The gateway under fuzz, its users, and every secret that must never come back."""

    def __init__(self, tmp: Path, mock_url: str) -> None:
        self.gw = GatewayThread(settings_for(tmp, read_timeout=1.0, connect_timeout=1.0, max_body_bytes=65536,
                                             models_timeout=1.0))
        self.url = self.gw.url
        self.key_a = create_user(self.url, "fuzz-a")
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: refused connection
        for provider, kind, path in (("openai", "openai", "/openai/v1"), ("anth", "anthropic", "/anthropic"),
                                     ("gem", "gemini", "/gemini")):
            r = add_provider(self.url, self.key_a, provider=provider, kind=kind, api_key=PROVIDER_SECRETS[provider],
                             base_url=mock_url + path, model_mapping={"fast": "gpt-4o-mini"} if kind == "openai" else {})
            assert r.status_code == 201, r.text
        assert add_provider(self.url, self.key_a, provider="dead", api_key="sk-fuzz-dead-9a8b7c6d5e4f",
                            base_url=dead).status_code == 201
        self.key_b = create_user(self.url, "fuzz-b")
        self.secrets = {ADMIN, self.key_a, self.key_b, *PROVIDER_SECRETS.values(), "sk-fuzz-dead-9a8b7c6d5e4f"}
        self.secrets.add((tmp / "forge.db.key").read_text().strip())
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        self.cases = 0
        self.seconds = 0.0
        self.statuses: dict[int, int] = {}

    def renew_b(self) -> None:
        self.key_b = create_user(self.url, "fuzz-b")
        self.secrets.add(self.key_b)

    def close(self) -> None:
        self.client.close()
        self.gw.stop()


@pytest.fixture(scope="module")
def fz(mock, tmp_path_factory):
    f = Fuzz(tmp_path_factory.mktemp("fuzz"), mock.url)
    yield f
    print(f"\nfuzz: {f.cases} generated cases, {f.seconds:.1f} s in HTTP; statuses {sorted(f.statuses.items())}")
    f.close()


# --- strategies ---------------------------------------------------------------------------------

def mostly(good: st.SearchStrategy, other: st.SearchStrategy, odds: int = 3) -> st.SearchStrategy:
    """``good`` ``odds`` times out of ``odds + 1`` (st.one_of weights flattened branches, not arguments)."""
    return st.integers(0, odds).flatmap(lambda i: other if i == 0 else good)


junk_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([10**30, -(10**30), 2**64, 1e308, -1e308, 0.0, -0.0, 1e-320]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\u2028", "\ud7ff\ue000", "🙂" * 10, "a" * 5000, "openai/", "/", "//",
                     "openai/fail-500", "openai/bad-json", "anth/fail-429", "gem/drop-mid-stream",
                     "dead/gpt-4o", "fast", "OPENAI/GPT-4O", "openai/gpt-4o-mini"]),
)
junk = st.recursive(junk_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

good_models = st.sampled_from(["openai/gpt-4o-mini", "anth/claude-haiku-4-5", "gem/gemini-2.5-flash", "fast"])
models = mostly(good_models, st.one_of(st.sampled_from(["openai/gpt-4o-mini", "anth/claude-haiku-4-5", "gem/gemini-2.5-flash",
                                    "fast", "dead/gpt-4o", "ghost/x", "openai/fail-500", "openai/fail-429",
                                    "openai/bad-json", "anth/bad-json", "gem/fail-500", "anth/drop-mid-stream",
                                    "gem/bad-json", "openai/drop-mid-stream"]), junk_scalars))
contents = st.one_of(st.text(max_size=50), st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_audio", "bogus"]), "text": junk}),
    junk), max_size=3), junk_scalars)
good_messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]),
                                                "content": st.text(max_size=30)}), min_size=1, max_size=3)
messages = mostly(good_messages, st.one_of(
    st.lists(st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "developer", "function"]),
                           junk_scalars)},
        optional={"content": contents, "name": junk_scalars, "tool_calls": junk, "tool_call_id": junk_scalars}),
        min_size=1, max_size=4),
    junk), odds=1)
cache_specs = mostly(st.fixed_dictionaries({}, optional={  # the response cache's opt-in, LiteLLM's spelling
    "ttl": st.one_of(st.integers(0, 600), junk_scalars), "s-maxage": st.one_of(st.floats(0, 600), junk_scalars),
    "no-cache": st.one_of(st.booleans(), junk_scalars), "no-store": st.one_of(st.booleans(), junk_scalars),
    "namespace": junk_scalars}), junk)
cache_controls = st.one_of(st.sampled_from(["max-age=600", "no-cache", "no-store", "max-age=0", "max-age=abc",
                                            "max-age=600, no-cache", "max-age=99999999999999999999", "public"]),
                           st.text(alphabet=string.ascii_letters + string.digits + '=,-" ', max_size=30).map(str.strip))
chat_bodies = st.fixed_dictionaries(
    {"model": models, "messages": messages},
    optional={"stream": mostly(st.booleans(), junk_scalars), "max_tokens": junk_scalars, "cache": cache_specs,
              "temperature": junk_scalars, "tools": junk, "tool_choice": junk, "stop": junk, "n": junk_scalars,
              "stream_options": junk, "response_format": junk, "top_p": junk_scalars, "extra": junk})
blocks = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document",
                                                    "bogus"])},
                          optional={"text": junk, "source": junk, "id": junk_scalars, "name": junk_scalars,
                                    "input": junk, "tool_use_id": junk_scalars, "content": junk}),
    junk), max_size=3)
good_turns = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                             "content": st.text(max_size=30)}), min_size=1, max_size=3)
turns = mostly(good_turns, st.one_of(
    st.lists(st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system"]), junk_scalars)},
                                   optional={"content": st.one_of(st.text(max_size=30), blocks, junk_scalars)}),
             min_size=1, max_size=4),
    junk), odds=1)
anthropic_tools = st.one_of(st.lists(st.fixed_dictionaries(
    {"name": junk_scalars}, optional={"input_schema": junk, "description": junk_scalars,
                                      "type": st.sampled_from(["custom", "web_search_20250305", "bash_20250124"])}),
    max_size=2), junk)
messages_bodies = st.fixed_dictionaries(
    {"model": models, "messages": turns},
    optional={"max_tokens": mostly(st.integers(1, 64), junk_scalars), "stream": mostly(st.booleans(), junk_scalars),
              "system": st.one_of(st.text(max_size=20), blocks, junk_scalars), "tools": anthropic_tools,
              "tool_choice": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "none", "tool",
                                                                                        "x"])},
                                                             optional={"name": junk_scalars,
                                                                       "disable_parallel_tool_use": junk_scalars}),
                                       junk),
              "stop_sequences": junk, "temperature": junk_scalars, "top_p": junk_scalars, "top_k": junk_scalars,
              "metadata": junk, "thinking": junk, "extra": junk, "cache": cache_specs})
embedding_bodies = st.fixed_dictionaries(
    {"model": st.one_of(st.sampled_from(["openai/text-embedding-3-small", "gem/text-embedding-004",
                                         "anth/claude", "openai/fail-500"]), models),
     "input": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3),
                        st.lists(st.integers(), max_size=3), st.lists(st.lists(st.integers(), max_size=3), max_size=2),
                        junk)},
    optional={"encoding_format": junk_scalars, "dimensions": junk_scalars})
completion_bodies = st.fixed_dictionaries(
    {"model": mostly(st.sampled_from(["openai/gpt-3.5-turbo-instruct", "anth/claude-haiku-4-5"]), models),
     "prompt": st.one_of(st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3),
                         st.lists(st.integers(), max_size=3), junk)},
    optional={"stream": mostly(st.booleans(), junk_scalars), "stream_options": junk, "max_tokens": junk_scalars,
              "echo": junk_scalars, "logprobs": junk_scalars, "suffix": junk_scalars, "n": junk_scalars})
image_models = mostly(st.sampled_from(["openai/gpt-image-1", "openai/dall-e-2", "openai/dall-e-3", "gem/imagen-4",
                                       "anth/claude-haiku-4-5", "openai/fail-429"]), models)
image_bodies = st.fixed_dictionaries(
    {"model": image_models, "prompt": mostly(st.text(min_size=1, max_size=30), junk)},
    optional={"stream": mostly(st.booleans(), junk_scalars), "n": junk_scalars, "partial_images": junk_scalars,
              "response_format": st.one_of(st.sampled_from(["url", "b64_json"]), junk_scalars),
              "quality": junk_scalars, "size": junk_scalars,
              "images": st.one_of(st.lists(st.fixed_dictionaries({"image_url": st.sampled_from([
                  "data:image/png;base64,iVBORw0KGgo=", "data:,", "https://x.invalid/a.png"])}), max_size=2), junk)})


def _part(name: bytes, value: bytes, filename: bytes | None = None) -> bytes:
    disposition = b'form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename else b"")
    return b"--x\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"


form_extra = {"stream": st.sampled_from(["true", "false", "TRUE", "1", ""]), "n": st.sampled_from(["1", "2", "x"]),
              "partial_images": st.sampled_from(["0", "2", "-1"]), "model ": st.text(max_size=5)}
form_fields = mostly(st.fixed_dictionaries({"model": image_models.map(str), "prompt": st.text(min_size=1, max_size=20)},
                                           optional=form_extra),
                     st.fixed_dictionaries({}, optional={"model": image_models.map(str), "prompt": st.text(max_size=20),
                                                         **form_extra}), odds=2)
form_files = st.lists(st.tuples(st.sampled_from([b"image", b"image", b"image[]", b"mask", b"model"]),
                                st.binary(max_size=64).map(lambda b: b + b"\r\n--y\r\n\r\n-x--")), max_size=2)
multipart_bodies = st.builds(
    lambda fields, files, extra, cut: (b"".join(_part(k.encode(), v.encode()) for k, v in fields.items())
                                       + b"".join(_part(name, data, b"i.png") for name, data in files)
                                       + extra + b"--x--\r\n")[:cut],
    form_fields, form_files,
    st.sampled_from([b"", b"", b"--x\r\nNo-Disposition: 1\r\n\r\nv\r\n", b"--x\r\n\r\n",
                     _part(b"model", b"openai/gpt-image-1"), b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n"]),
    st.one_of(st.none(), st.none(), st.none(), st.integers(0, 300)))
providers = st.one_of(st.sampled_from(["openai", "x", "my-groq", "anthropic", "gemini", "A", "a" * 65, "-x"]),
                      st.text(max_size=20), junk_scalars)
urls = st.one_of(st.sampled_from([
    "http://127.0.0.1:9/v1", "https://api.example.invalid/v1", "ftp://x", "http://", "http://[::1/",
    "http://x:99999/", "http://x:abc/", "http://u:p@x/", "http://x/?q=1", "http://x/#f", "http://exa\tmple/",
    "http://x\\@y/", "javascript:alert(1)", "http://" + "a" * 3000, "//x/v1", "http://0x7f000001/",
    "http://[fe80::1%25eth0]/", "http://xn--nxasmq6b/", "http://ünï.codé/"]), st.text(max_size=40), junk_scalars)
provider_bodies = st.fixed_dictionaries(
    {}, optional={"provider": providers, "api_key": st.one_of(st.text(max_size=30), junk_scalars),
                  "base_url": urls, "kind": st.one_of(st.sampled_from(["openai", "anthropic", "gemini", "cohere"]),
                                                       junk_scalars),
                  "model_mapping": st.one_of(st.dictionaries(st.text(max_size=5), junk_scalars, max_size=3), junk),
                  "cache_ttl": st.one_of(st.floats(-1, 1e9), junk_scalars), "unknown": junk})
name_bodies = st.fixed_dictionaries({}, optional={"name": st.one_of(st.text(max_size=140), junk_scalars),
                                                  "other": junk})
key_bodies = mostly(st.fixed_dictionaries({}, optional={
    "name": mostly(st.text(min_size=1, max_size=20), st.one_of(st.text(max_size=140), junk_scalars)),
    "providers": st.one_of(st.lists(providers, max_size=5), st.lists(st.sampled_from(["openai", "anth", "gem"])),
                           junk_scalars, junk)}), st.fixed_dictionaries({"other": junk}))
key_ids = st.one_of(st.integers(0, 30).map(str), st.sampled_from(["9" * 19, "9" * 40, "-1", "1.0", "0x1", quote("١")]))
instants = st.one_of(st.sampled_from(["2025-01-31", "2025-01-31T12:00:00Z", "2025-01-31T12:00:00+14:00", "1970-01-01",
                                      "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2025-13-01", "yesterday",
                                      "", "1738281600", "2025-01-31T25:00"]), st.text(max_size=30))
usage_params = st.lists(st.tuples(
    st.one_of(st.sampled_from(["since", "until", "group_by", "user"]), st.text(max_size=8)),
    st.one_of(instants, st.sampled_from(["provider", "model,day", "provider,model,day", "user,day", "day,,model",
                                         "bogus", "1", "99999999999999999999"]), st.text(max_size=20))), max_size=4)
usage_paths = usage_params.map(lambda pairs: "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                                                            for k, v in pairs) if pairs else "")


def _encode(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


raw_junk = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"{not json", b"[1,2]", b"null", b"1e999999", b'"x"', b"{}" * 3, b"\xff\xfe{}",
                     b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"model": NaN}',
                     b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "\\ud800"}]}',
                     b'{"model": 123456789012345678901234567890, "messages": []}',
                     b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": 1e400}',
                     b'{"name": "x", "name": 5}', b"\x00" * 100]),
    st.builds(lambda v: _encode(v)[:-1], junk),  # truncated JSON
)


def bodies_for(schema: st.SearchStrategy) -> st.SearchStrategy:
    return mostly(schema.map(_encode), st.one_of(junk.map(_encode), raw_junk))


edit_bodies = mostly(multipart_bodies, bodies_for(image_bodies), odds=2)

auth_kinds = st.sampled_from(["none", *["user"] * 12, "admin", "wrong", "basic", "empty-bearer",
                              "spaces", "x-api-key", "x-api-key-wrong", "long", "latin1", "both"])


def auth_headers(fz: Fuzz, kind: str, owner: str) -> dict[str, str]:
    key = fz.key_a if owner == "a" else fz.key_b
    return {
        "none": {}, "user": {"Authorization": f"Bearer {key}"}, "admin": {"Authorization": f"Bearer {ADMIN}"},
        "wrong": {"Authorization": "Bearer forge-wrong"}, "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty-bearer": {"Authorization": "Bearer"}, "spaces": {"Authorization": f"bearer   {key}"},
        "x-api-key": {"X-API-Key": key}, "x-api-key-wrong": {"X-API-Key": "nope"},
        "long": {"Authorization": "Bearer " + "x" * 20000},
        "latin1": {"Authorization": "Bearer forgé-ÿ".encode("latin-1")}, "both": {"Authorization": "Token abc", "X-API-Key": key},
    }[kind]


content_types = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin1", "*/*"])

# Endpoint groups: (path or path strategy, documented methods, body strategy, whose key).
ENDPOINTS = {
    "chat": ("/v1/chat/completions", ["POST"], bodies_for(chat_bodies), "a"),
    "embeddings": ("/v1/embeddings", ["POST"], bodies_for(embedding_bodies), "a"),
    "messages": ("/v1/messages", ["POST"], bodies_for(messages_bodies), "a"),
    "count-tokens": ("/v1/messages/count_tokens", ["POST"], bodies_for(messages_bodies), "a"),
    "completions": ("/v1/completions", ["POST"], bodies_for(completion_bodies), "a"),
    "images": ("/v1/images/generations", ["POST"], bodies_for(image_bodies), "a"),
    "image-edits": ("/v1/images/edits", ["POST"], edit_bodies, "a"),
    "models": ("/v1/models", ["GET"], raw_junk, "a"),
    "users": ("/v1/users", ["POST"], bodies_for(name_bodies), "a"),
    "me": ("/v1/users/me", ["GET", "PATCH", "DELETE"], bodies_for(name_bodies), "b"),
    "reset-key": ("/v1/users/me/reset-key", ["POST"], raw_junk, "b"),
    "provider-keys": ("/v1/provider-keys", ["GET", "POST"], bodies_for(provider_bodies), "b"),
    "provider-key": (None, ["PUT", "DELETE"], bodies_for(provider_bodies), "b"),
    "forge-keys": ("/v1/users/me/keys", ["GET", "POST"], bodies_for(key_bodies), "b"),
    "forge-key": (None, ["PATCH", "DELETE"], bodies_for(key_bodies), "b"),
    "usage": (usage_paths.map(lambda q: "/v1/usage" + q), ["GET"], raw_junk, "a"),
    "admin-usage": (usage_paths.map(lambda q: "/v1/admin/usage" + q), ["GET"], raw_junk, "a"),
    "admin": (st.sampled_from(["/_stats", "/metrics", "/health", "/openapi.json"]), ["GET", "DELETE"], raw_junk, "a"),
    "odd-paths": (None, METHODS, raw_junk, "a"),
}
PER_ENDPOINT = max(10, TOTAL // len(ENDPOINTS))

segments = st.one_of(
    st.text(max_size=20).map(lambda s: quote(s, safe="")),
    st.sampled_from(["openai", "OPENAI", "%ff", "%00", "%2F", "..", "%2e%2e", "a%2Fb", "%", "%zz", "~",
                     "openai%20", "x" * 300, "%C3%A9", "%F0%9F%99%82", "%ED%A0%80", "?", "%3F", ";x", "a.b"]))
odd_paths = st.one_of(
    st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(["/v1/chat/completions/", "//v1/models", "/v1/models/", "/v1/./models", "/v1/../v1/models",
                     "/V1/MODELS", "/v1/users/me/", "/v1/provider-keys/", "/v1/provider-keys/a/b", "/_stats/x",
                     "/v1/chat%2Fcompletions", "/%00", "/v1/models%00", "/health;x=1"])).map(
    lambda p: p if p.startswith("/") else "/" + p)


# --- checks -------------------------------------------------------------------------------------


def check(fz: Fuzz, group: str, method: str, path: str, r: httpx.Response, valid_auth: bool) -> None:
    where = f"{method} {path} -> {r.status_code}: {r.content[:300]!r}"
    body = r.content
    for secret in fz.secrets:
        assert secret.encode() not in body, f"secret echoed: {where}"
    assert b"Traceback" not in body and b'File "' not in body, where
    upstream_fault = r.status_code in (502, 504) and path in PROXY_PATHS and valid_auth
    assert r.status_code < 500 or upstream_fault, where
    if r.status_code == 401:
        assert r.headers.get("www-authenticate") == "Bearer", where
    if r.status_code == 405:
        assert re.fullmatch(r"[A-Z]+(, [A-Z]+)*", r.headers.get("allow", "")), where
    if method == "HEAD" or r.status_code == 204:
        return
    ctype = r.headers.get("content-type", "")
    if r.status_code >= 400 and path in ANTHROPIC_PATHS:
        assert ctype.startswith("application/json"), where
        body = r.json()
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, where
        assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str), where
    elif r.status_code >= 400:
        assert ctype.startswith("application/json"), where
        err = r.json()["error"]
        assert isinstance(err["message"], str) and isinstance(err["type"], str), where
        assert err["code"] is None or isinstance(err["code"], str), where
        assert "param" in err, where
    elif ctype.startswith("text/event-stream") and path in ANTHROPIC_PATHS:
        events = [block.split("\n") for block in r.text.split("\n\n") if block]
        assert events and all(head.startswith("event: ") and data.startswith("data: ") for head, data in events), where
        if "not valid json" not in r.text:  # an anthropic-kind provider's broken stream passes on as it came
            assert events[-1][0] in ("event: message_stop", "event: error"), where
            for head, data in events:
                assert json.loads(data[6:])["type"] == head[7:], where
    elif ctype.startswith("text/event-stream"):
        frames = [line for line in r.text.split("\n") if line.startswith("data: ")]
        if path in IMAGE_PATHS and frames and frames[-1] != "data: [DONE]":
            assert json.loads(frames[-1][6:])["type"].endswith(".completed"), where
            frames.append("data: [DONE]")
        assert frames and frames[-1] == "data: [DONE]", where
        for frame in frames[:-1]:
            json.loads(frame[6:])
    elif path == "/metrics":
        assert ctype.startswith("text/plain"), where
    else:
        assert ctype.startswith("application/json"), where
        json.loads(body)


def send(fz: Fuzz, group: str, method: str, path: str, headers: dict, body: bytes | None, auth: str) -> None:
    started = time.perf_counter()
    url = httpx.URL(fz.url, raw_path=path.encode("ascii"))  # sent as is, odd paths included
    r = fz.client.request(method, url, headers=headers, content=body)
    fz.seconds += time.perf_counter() - started
    fz.cases += 1
    fz.statuses[r.status_code] = fz.statuses.get(r.status_code, 0) + 1
    valid_auth = auth in ("user", "spaces", "x-api-key", "both")
    check(fz, group, method, path, r, valid_auth)
    # Keep user B usable: follow its key through resets and recreate it after a delete.
    if r.status_code == 200 and path == "/v1/users/me/reset-key":
        fz.key_b = r.json()["api_key"]
        fz.secrets.add(fz.key_b)
    elif r.status_code == 204 and path == "/v1/users/me" and method == "DELETE":
        fz.renew_b()
    elif r.status_code == 201 and path == "/v1/users/me/keys":
        fz.secrets.add(r.json()["key"])
    elif r.status_code in (200, 204) and path.startswith("/v1/users/me/keys/"):
        fz.renew_b()  # B's own key may be the one revoked or scoped now
    elif r.status_code == 201 and path == "/v1/provider-keys":
        sent = json.loads(body)
        if isinstance(sent.get("api_key"), str) and len(sent["api_key"].strip()) >= 12:
            fz.secrets.add(sent["api_key"].strip())


@pytest.mark.parametrize("group", list(ENDPOINTS))
def test_generated_requests(fz, group):
    path_spec, documented, body_strategy, owner = ENDPOINTS[group]

    @settings(max_examples=PER_ENDPOINT, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        if group == "provider-key":
            path = "/v1/provider-keys/" + data.draw(segments, "provider")
        elif group == "forge-key":
            path = "/v1/users/me/keys/" + data.draw(st.one_of(key_ids, segments), "key id")
        elif group == "odd-paths":
            path = data.draw(odd_paths, "path")
        elif isinstance(path_spec, str):
            path = path_spec
        else:
            path = data.draw(path_spec, "path")
        method = data.draw(st.one_of(st.sampled_from(documented), st.sampled_from(METHODS))
                           if data.draw(st.integers(0, 9)) == 0 else st.sampled_from(documented), "method")
        auth = data.draw(auth_kinds, "auth")
        if group in ("users", "admin-usage") and data.draw(st.booleans()):
            auth = "admin"
        headers = auth_headers(fz, auth, owner)
        ctype = data.draw(content_types, "content-type")
        if group == "image-edits" and data.draw(st.integers(0, 3)):
            ctype = "multipart/form-data; boundary=x"  # mostly what its multipart bodies are
        if ctype:
            headers["Content-Type"] = ctype
        if group in ("chat", "messages") and data.draw(st.booleans(), "opt in"):
            headers["Cache-Control"] = data.draw(cache_controls, "cache-control")
        body = data.draw(body_strategy, "body") if method in ("POST", "PUT", "PATCH", "DELETE") else None
        send(fz, group, method, path, headers, body, auth)

    run()


def test_every_documented_operation_answers_its_shape(fz):
    """Each route of the app is in /openapi.json with exactly the methods its handler implements."""
    doc = httpx.get(fz.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    for pattern, handler, _ in routes(fz.gw.gw):
        path = documented_path(pattern)
        implemented = {m.lower() for m in ("get", "post", "put", "patch", "delete")
                       if getattr(handler, m) is not getattr(__import__("tornado.web").web.RequestHandler, m)}
        assert documented.get(path) == implemented, path
        shape = openapi.ANTHROPIC_ERROR if path in ANTHROPIC_PATHS else openapi.ERROR
        for op in doc["paths"][path].values():
            errors = [s for s in op["responses"] if s.startswith(("4", "5"))]
            # 401 and 405 declare their headers (WWW-Authenticate, Allow) beside the shape
            assert "405" in errors and all(op["responses"][s] == openapi._error(int(s), shape) for s in errors)
            assert op["responses"]["405"]["$ref"].endswith("MethodNotAllowed")
    assert set(documented) == {documented_path(p) for p, _, _ in routes(fz.gw.gw)}


def documented_path(pattern: str) -> str:
    """A route's pattern as OpenAPI writes it: ``(?P<key_id>...)`` is ``{key_id}``; the provider's group has no name."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("([^/]+)", "{provider}")


def test_wrong_methods_are_405_in_the_apis_shape(fz):
    """Every route of the app, every method its handler does not implement: 405 in the API's shape,
    with ``Allow`` naming exactly the methods the handler implements (RFC 9110), in the order
    Tornado lists them."""
    checked = 0
    for pattern, handler, _ in routes(fz.gw.gw):
        implemented = [m for m in handler.SUPPORTED_METHODS
                       if getattr(handler, m.lower()) is not getattr(tornado.web.RequestHandler, m.lower())]
        assert implemented and "HEAD" not in implemented, (pattern, implemented)
        path = documented_path(pattern).replace("{provider}", "openai").replace("{key_id}", "1")
        for method in set(METHODS) - set(implemented):
            r = fz.client.request(method, path, headers={"Authorization": f"Bearer {fz.key_a}"})
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"] == ", ".join(implemented), (method, path)
            checked += 1
            if method == "HEAD":
                continue
            if path in ANTHROPIC_PATHS:
                assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                               "message": "Method Not Allowed"}}
            else:
                assert r.json()["error"]["code"] == "method_not_allowed" and r.json()["error"]["type"]
    r = fz.client.request("BREW", "/v1/models")  # not even an HTTP method Tornado knows
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "GET"
    assert checked == sum(len(METHODS) - len(ops) for ops in openapi.PATHS.values())


# --- malformed HTTP on the wire ----------------------------------------------------------------


def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def check_raw(fz: Fuzz, data: bytes, out: bytes) -> None:
    if not out:
        return  # the server closed without answering (e.g. EOF inside a declared body)
    head, _, body = out.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    status = int(status_line.split()[1])
    assert status < 500, (data[:200], out[:300])
    for secret in fz.secrets:
        assert secret.encode() not in out
    if body and status != 204:
        # Tornado's own parser answers unparseable HTTP with a bare 400 and no body; everything
        # that reaches forge-ref is JSON.
        if status >= 400:
            assert json.loads(body)["error"]["message"], (data[:200], out[:300])


header_values = st.one_of(st.sampled_from(["abc", "-1", "²", "١٢", "1,2", "5, 5", "99999999999999999999", "",
                                           " 12", "0x10", "1e3", "+5"]),
                          st.integers(0, 10**12).map(str), st.text(max_size=10))


@settings(max_examples=max(20, TOTAL // 40), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["POST", "GET", "PUT", "BREW", "", "G\x00T", "post"]),
       path=st.one_of(st.sampled_from(["/v1/chat/completions", "/v1/provider-keys/x", "/health", "*", "",
                                       "/v1/models?x=%zz&&", "/\x7f", "http://evil/v1/models"]), odd_paths),
       version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "", "HTTP/9"]),
       length=st.one_of(st.none(), header_values), te=st.sampled_from([None, "chunked", "gzip", "chunked, chunked"]),
       extra=st.lists(st.sampled_from([b"X-Bad header: 1", b"NoColon", b"X: \x01", b" folded: x", b"Host: a",
                                       b"Host: b", b"Authorization: Bearer \x7fforge-abc",
                                       b"Content-Type: application/json"]), max_size=3),
       body=st.binary(max_size=80), auth=st.booleans())
def test_malformed_http(fz, method, path, version, length, te, extra, body, auth):
    lines = [f"{method} {path} {version}".encode("latin-1", "replace"), b"Host: 127.0.0.1", b"Connection: close"]
    if auth:
        lines.append(b"Authorization: Bearer " + fz.key_a.encode())
    if length is not None:
        lines.append(b"Content-Length: " + length.encode("utf-8"))
    if te is not None:
        lines.append(b"Transfer-Encoding: " + te.encode())
    lines += extra
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    fz.cases += 1
    check_raw(fz, data, raw_exchange(fz.gw.port, data))


def test_still_serving_after_fuzz(fz):
    r = fz.client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {fz.key_a}"},
                       json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "alive?"}]})
    assert r.status_code == 200 and "alive?" in r.text
    assert fz.cases >= TOTAL * 0.95
