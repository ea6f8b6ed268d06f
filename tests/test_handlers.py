"""The HTTP layer itself, on the real gateway (``GatewayThread``) against the real mock provider:
one OpenAI-shaped error for every status, refusals before the body is read, where the Forge key
is read from, which requests count, what each endpoint answers, and what each proxied request
records as usage.

Elsewhere: what requests cost per cache layer (``test_cache_layers.py``), ``Server-Timing``
(``test_server_timing.py``), every upstream fault per provider kind (``test_reliability.py``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from dataclasses import dataclass

import httpx
import pytest
from support import ADMIN, GatewayThread, add_provider, create_user, settings_for

LIMIT = 4096
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello handlers"}]}


@dataclass
class Env:
    g: GatewayThread
    key: str

    def call(self, method: str, path: str, auth: str | None = "user", **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if auth is not None:
            headers["Authorization"] = "Bearer " + (ADMIN if auth == "admin" else self.key)
        return httpx.request(method, self.g.url + path, headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module")
def env(mock, tmp_path_factory):
    g = GatewayThread(settings_for(tmp_path_factory.mktemp("handlers"), max_body_bytes=LIMIT, read_timeout=0.5))
    key = create_user(g.url, "alice")
    for provider, kind, path, api_key in (("openai", "openai", "/openai/v1", "sk-openai-0123456789"),
                                          ("claude", "anthropic", "/anthropic", "sk-ant-0123456789"),
                                          ("revoked", "openai", "/openai/v1", "sk-invalid-0123456789")):
        r = add_provider(g.url, key, provider=provider, kind=kind, api_key=api_key, base_url=mock.url + path,
                         model_mapping={"fast": "gpt-4o-mini"} if provider == "openai" else {})
        assert r.status_code == 201, r.text
    yield Env(g, key)
    g.stop()


# --- one error shape for every status -------------------------------------------------------------

REQUEST_ERROR = "invalid_request_error"
ERRORS = [
    ("400 not JSON", "POST", "/v1/chat/completions", "user", {"content": b"{not json"},
     400, REQUEST_ERROR, "invalid_json", None, "request body is not valid JSON"),
    ("400 empty body", "POST", "/v1/chat/completions", "user", {"content": b""},
     400, REQUEST_ERROR, "invalid_json", None, "request body is empty; send a JSON object"),
    ("400 not an object", "POST", "/v1/embeddings", "user", {"content": b"[1, 2]"},
     400, REQUEST_ERROR, "invalid_json", None, "request body must be a JSON object"),
    ("400 names the field", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, messages=[])},
     400, REQUEST_ERROR, "invalid_messages", "messages", "'messages' must be a non-empty array"),
    ("400 model missing", "POST", "/v1/embeddings", "user", {"json": {"input": "x", "model": ["openai/x"]}},
     400, REQUEST_ERROR, "missing_model", "model", "'model' is required: a string such as 'openai/gpt-4o-mini'"),
    ("400 wrong shape for the provider", "POST", "/v1/chat/completions", "user",
     {"json": dict(CHAT, model="claude/claude-haiku-4-5", tools=5)}, 400, REQUEST_ERROR, "invalid_request_body",
     None, "the request has a field of the wrong type or shape for this provider (TypeError)"),
    ("400 kind of the wrong type, once a 500", "POST", "/v1/provider-keys", "user",
     {"json": {"provider": "x", "api_key": "sk-x-0123456789", "base_url": "http://127.0.0.1:1/v1", "kind": {}}},
     400, REQUEST_ERROR, "invalid_value", "kind", "'kind' must be one of openai, anthropic, gemini"),
    ("401 no key", "GET", "/v1/models", None, {},
     401, "authentication_error", "missing_api_key", None, "missing API key: send 'Authorization: Bearer forge-...'"),
    ("401 unknown key", "GET", "/v1/models", None, {"headers": {"Authorization": "Bearer forge-guess"}},
     401, "authentication_error", "invalid_api_key", None, "invalid API key"),
    ("403 admin only", "GET", "/_stats", "user", {},
     403, "permission_error", "admin_required", None, "admin token required"),
    ("401 admin endpoint, no credential", "GET", "/_stats", None, {},
     401, "authentication_error", "missing_admin_token", None,
     "admin token required: send 'Authorization: Bearer <FORGE_ADMIN_TOKEN>'"),
    ("404 no route", "GET", "/v2/models", None, {},
     404, "not_found_error", "unknown_route", None, "no route for GET /v2/models"),
    ("404 no such provider", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, model="ghost/gpt-4o")},
     404, "not_found_error", "provider_not_found", "model",
     "no provider key named 'ghost' for this user; add one with POST /v1/provider-keys"),
    ("404 no such alias", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, model="slow")},
     404, "not_found_error", "model_not_found", "model", "model 'slow' is not an alias; use the form provider/model"),
    ("404 no such provider key", "DELETE", "/v1/provider-keys/ghost", "user", {},
     404, "not_found_error", "provider_not_found", None, "no provider key named 'ghost'"),
    ("405 wrong method", "DELETE", "/v1/models", "user", {},
     405, REQUEST_ERROR, "method_not_allowed", None, "Method Not Allowed"),
    ("409 duplicate provider", "POST", "/v1/provider-keys", "user",
     {"json": {"provider": "openai", "api_key": "sk-again-0123456789", "base_url": "http://127.0.0.1:1/v1"}},
     409, REQUEST_ERROR, "conflict", None, "provider 'openai' already exists; use PUT to update it"),
    ("413 too large", "POST", "/v1/chat/completions", "user", {"content": b"x" * (LIMIT + 1)},
     413, REQUEST_ERROR, "request_too_large", None, f"request body is {LIMIT + 1} bytes; the limit is {LIMIT}"),
    ("429 from the upstream", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, model="openai/fail-429")},
     429, "rate_limit_error", "rate_limit_exceeded", None, "Rate limit reached for requests. Please try again in 7s."),
    ("502 upstream failure", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, model="openai/fail-500")},
     502, "upstream_error", "upstream_error", None,
     "upstream error 500: The server had an error while processing your request. Sorry about that!"),
    ("502 the stored key is refused", "POST", "/v1/chat/completions", "user",
     {"json": dict(CHAT, model="revoked/gpt-4o-mini")}, 502, "upstream_error", "provider_auth_failed", None,
     "provider rejected the stored key: Incorrect API key provided."),
    ("504 upstream timeout", "POST", "/v1/chat/completions", "user", {"json": dict(CHAT, model="openai/hang")},
     504, "upstream_error", "upstream_timeout", None, "upstream timed out"),
]


@pytest.mark.parametrize(("name", "method", "path", "auth", "kw", "status", "type_", "code", "param", "message"),
                         ERRORS, ids=[e[0] for e in ERRORS])
def test_every_error_has_the_openai_shape(env, name, method, path, auth, kw, status, type_, code, param, message):
    r = env.call(method, path, auth, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers.get("www-authenticate") == ("Bearer" if status == 401 else None)  # RFC 9110: 401s challenge
    assert r.json() == {"error": {"message": message, "type": type_, "param": param, "code": code}}
    assert ("retry-after" in r.headers) == (status == 429)
    if status == 429:
        assert r.headers["retry-after"] == "7"  # the upstream's, passed on


def test_an_unexpected_exception_is_a_bare_500_and_logged(env, monkeypatch, caplog):
    async def broken(*_):
        raise RuntimeError("bug holding sk-openai-0123456789")

    monkeypatch.setattr(env.g.gw.models, "list", broken)
    r = env.call("GET", "/v1/models")
    assert r.status_code == 500
    assert r.json() == {"error": {"message": "internal error", "type": "server_error", "param": None,
                                  "code": "internal_error"}}
    assert "sk-openai" not in r.text and "Traceback" not in r.text
    assert [rec.exc_info[0] for rec in caplog.records if rec.exc_info] == [RuntimeError]


def test_admin_endpoints_need_the_token_and_answer_403_while_it_is_unset(env, tmp_path):
    """No credential: 401 and a Bearer challenge (RFC 9110); a wrong one, or the admin API off: 403."""
    assert env.call("GET", "/_stats", "admin").status_code == 200
    r = env.call("GET", "/metrics", None, headers={"Authorization": f"Bearer {ADMIN}x"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "admin_required")
    assert "www-authenticate" not in r.headers
    for method, path in (("POST", "/v1/users"), ("GET", "/_stats"), ("DELETE", "/_stats"), ("GET", "/metrics"),
                         ("GET", "/v1/admin/usage")):
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
            r = env.call(method, path, None, headers=headers, json={"name": "x"})
            assert (r.status_code, r.headers.get("www-authenticate")) == (401, "Bearer"), (method, path, headers)
            assert r.json()["error"]["code"] == "missing_admin_token"
    off = GatewayThread(settings_for(tmp_path, admin_token=""))
    try:
        for method, path in (("POST", "/v1/users"), ("GET", "/_stats"), ("DELETE", "/_stats"), ("GET", "/metrics")):
            r = httpx.request(method, off.url + path, json={"name": "x"}, headers={"Authorization": "Bearer"})
            assert r.status_code == 403
            assert r.json()["error"] == {"message": "admin endpoints are disabled: set FORGE_ADMIN_TOKEN",
                                         "type": "permission_error", "param": None, "code": "admin_disabled"}
    finally:
        off.stop()


# --- refusals before the body is read -------------------------------------------------------------


def exchange(port: int, data: bytes) -> bytes:
    """Send, then read until the server closes the connection (fails after 5 s: it did not)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


@pytest.mark.parametrize(("request_line", "length", "status", "code"), [
    ("POST /v1/chat/completions", 10**9, 413, "request_too_large"),
    ("POST /v2/chat/completions", 100, 404, "unknown_route"),
    ("BREW /v1/models", 100, 405, "method_not_allowed"),
])
def test_a_refusal_before_the_body_is_read_says_connection_close(env, request_line, length, status, code):
    head = (f"{request_line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()
    [(got, headers, body)] = responses(exchange(env.g.port, head))  # the body is never sent
    assert (got, headers["connection"]) == (status, "close")
    assert json.loads(body)["error"]["code"] == code


def test_a_refusal_after_the_body_was_read_keeps_the_connection(env):
    bad = b"{not json"
    pipelined = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key}\r\n"
                 f"Content-Length: {len(bad)}\r\n\r\n").encode() + bad + \
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    (s1, h1, b1), (s2, _, b2) = responses(exchange(env.g.port, pipelined))
    assert (s1, "connection" in h1, json.loads(b1)["error"]["code"]) == (400, False, "invalid_json")
    assert (s2, json.loads(b2)) == (200, {"status": "ok"})


# --- the Forge key --------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Authorization": "Bearer {key}"}, 200, None),
    ({"Authorization": "bearer {key}"}, 200, None),
    ({"Authorization": "BEARER   {key}"}, 200, None),
    ({"X-API-Key": "{key}"}, 200, None),
    ({"Authorization": "Basic YWxpY2U6cHc=", "X-API-Key": "{key}"}, 200, None),
    ({"Authorization": "Token {key}"}, 401, "missing_api_key"),
    ({"Authorization": "Bearer"}, 401, "missing_api_key"),
    ({"Authorization": "Bearer {key}x"}, 401, "invalid_api_key"),
    ({"X-API-Key": ""}, 401, "missing_api_key"),
], ids=["Bearer", "lower-case scheme", "spaces", "X-API-Key", "Basic then X-API-Key", "other scheme", "no token",
        "wrong key", "empty X-API-Key"])
def test_the_forge_key_is_read_from_bearer_or_x_api_key(env, headers, status, code):
    r = env.call("GET", "/v1/users/me", None, headers={k: v.format(key=env.key) for k, v in headers.items()})
    assert r.status_code == status
    assert (r.json()["name"] if status == 200 else r.json()["error"]["code"]) == (code or "alice")


# --- what is counted ------------------------------------------------------------------------------


def test_only_api_requests_are_counted(env):
    assert env.call("DELETE", "/_stats", "admin").json()["counters"]["requests"] == 0
    for method, path, auth in [("GET", "/health", None), ("GET", "/health", None), ("GET", "/_stats", "admin"),
                               ("GET", "/metrics", "admin"), ("GET", "/openapi.json", None), ("GET", "/nowhere", None)]:
        assert env.call(method, path, auth).status_code in (200, 404)
    assert env.g.counters()["requests"] == 0
    assert env.call("GET", "/v1/users/me").status_code == 200
    assert env.call("GET", "/v1/models", None).status_code == 401  # refused requests count too
    assert env.call("POST", "/v1/chat/completions", content=b"{").status_code == 400
    assert env.call("GET", "/_stats", "admin").json()["counters"]["requests"] == 3


# --- what each endpoint answers -------------------------------------------------------------------


def test_user_endpoints(env):
    r = env.call("POST", "/v1/users", "admin", json={"name": " bob "})
    assert r.status_code == 201
    bob = r.json()
    assert set(bob) == {"id", "name", "key_prefix", "api_key"} and bob["name"] == "bob"
    assert bob["api_key"].startswith("forge-") and bob["key_prefix"] == bob["api_key"][:12]
    h = {"Authorization": f"Bearer {bob['api_key']}"}
    me = {"id": bob["id"], "name": "bob", "key_prefix": bob["key_prefix"]}
    assert env.call("GET", "/v1/users/me", None, headers=h).json() == me
    assert env.call("PATCH", "/v1/users/me", None, headers=h, json={"name": "Bob B"}).json() == dict(me, name="Bob B")
    reset = env.call("POST", "/v1/users/me/reset-key", None, headers=h).json()
    assert set(reset) == set(bob) and reset["api_key"] != bob["api_key"] and reset["id"] == bob["id"]
    assert env.call("GET", "/v1/users/me", None, headers=h).status_code == 401
    h = {"Authorization": f"Bearer {reset['api_key']}"}
    r = env.call("DELETE", "/v1/users/me", None, headers=h)
    assert (r.status_code, r.content) == (204, b"")
    assert env.call("GET", "/v1/users/me", None, headers=h).status_code == 401


def test_provider_key_endpoints(env, mock):
    carol = create_user(env.g.url, "carol")
    h = {"Authorization": f"Bearer {carol}"}
    r = env.call("POST", "/v1/provider-keys", None, headers=h, json={
        "provider": "My-Groq", "api_key": "gsk-carol-0123456789", "base_url": mock.url + "/openai/v1/",
        "model_mapping": {"fast": "llama"}})
    row = {"provider": "my-groq", "kind": "openai", "base_url": mock.url + "/openai/v1", "api_key": "gsk...6789",
           "model_mapping": {"fast": "llama"}}
    assert (r.status_code, r.json()) == (201, row)
    assert env.call("GET", "/v1/provider-keys", None, headers=h).json() == {"object": "list", "data": [row]}
    r = env.call("PUT", "/v1/provider-keys/MY-GROQ", None, headers=h, json={"api_key": "gsk-carol-new-9876"})
    assert r.json() == dict(row, api_key="gsk...9876")  # the other fields kept
    r = env.call("PUT", "/v1/provider-keys/my-groq", None, headers=h, json={"model_mapping": {}})
    assert r.json() == dict(row, api_key="gsk...9876", model_mapping={})  # masked from the stored key
    r = env.call("DELETE", "/v1/provider-keys/my-groq", None, headers=h)
    assert (r.status_code, r.content) == (204, b"")
    assert env.call("GET", "/v1/provider-keys", None, headers=h).json() == {"object": "list", "data": []}
    r = env.call("PUT", "/v1/provider-keys/my-groq", None, headers=h, json={"api_key": "k-0123456789"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "provider_not_found")


def test_a_stream_is_server_sent_events(env):
    with httpx.stream("POST", env.g.url + "/v1/chat/completions", json=dict(CHAT, stream=True),
                      headers={"Authorization": f"Bearer {env.key}"}) as r:
        body = b"".join(r.iter_bytes())
    assert r.status_code == 200
    assert (r.headers["content-type"], r.headers["cache-control"], r.headers["x-accel-buffering"]) == (
        "text/event-stream", "no-cache", "no")
    assert body.endswith(b"data: [DONE]\n\n")
    deltas = [json.loads(f[6:])["choices"] for f in body.split(b"\n\n") if f.startswith(b"data: {")]
    assert "hello handlers" in "".join(c[0]["delta"].get("content") or "" for c in deltas if c)


# --- usage rows -----------------------------------------------------------------------------------


def usage_rows(env, after: int) -> list[tuple]:
    asyncio.run_coroutine_threadsafe(env.g.gw.usage.flush(), env.g.loop).result(5)
    with sqlite3.connect(env.g.settings.db) as db:
        return db.execute("SELECT id, provider, model, status, prompt_tokens, completion_tokens FROM usage"
                          " WHERE id > ? ORDER BY id", (after,)).fetchall()


def sse_usage(body: bytes) -> dict:
    events = [json.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: {")]
    return events[-1]["usage"]


def test_each_proxied_request_records_one_usage_row(env):
    start = max([0] + [row[0] for row in usage_rows(env, 0)])
    chat = env.call("POST", "/v1/chat/completions", json=dict(CHAT, model="fast")).json()["usage"]
    emb = env.call("POST", "/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "a b"})
    assert env.call("POST", "/v1/chat/completions", json=dict(CHAT, model="openai/fail-429")).status_code == 429
    assert env.call("POST", "/v1/chat/completions", json=dict(CHAT, model="ghost/x")).status_code == 404
    assert env.call("POST", "/v1/chat/completions", json=dict(CHAT, messages="x")).status_code == 400
    with httpx.stream("POST", env.g.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {env.key}"},
                      json=dict(CHAT, model="claude/claude-haiku-4-5", stream=True,
                                stream_options={"include_usage": True})) as r:
        streamed = sse_usage(b"".join(r.iter_bytes()))
    rows = [row[1:] for row in usage_rows(env, start)]
    assert rows == [
        ("openai", "gpt-4o-mini", 200, chat["prompt_tokens"], chat["completion_tokens"]),
        ("openai", "text-embedding-3-small", 200, emb.json()["usage"]["prompt_tokens"], None),
        ("openai", "fail-429", 429, None, None),
        ("claude", "claude-haiku-4-5", 200, streamed["prompt_tokens"], streamed["completion_tokens"]),
    ]  # nothing for requests refused before any upstream call


def test_an_upstream_call_that_raises_still_records_a_row_with_the_status_the_client_got(env):
    """Timeouts (504), refused connections (502), streams that never open and unusable answers (502)
    reached the upstream: each is one usage row, as a failure status from the upstream is."""
    from support import free_port

    assert add_provider(env.g.url, env.key, provider="dead", api_key="sk-dead-0123456789",
                        base_url=f"http://127.0.0.1:{free_port()}/v1").status_code == 201
    start = max([0] + [row[0] for row in usage_rows(env, 0)])
    calls = [
        ("/v1/chat/completions", dict(CHAT, model="openai/hang"), 504),
        ("/v1/chat/completions", dict(CHAT, model="openai/hang", stream=True), 504),
        ("/v1/embeddings", {"model": "openai/hang", "input": "x"}, 504),
        ("/v1/chat/completions", dict(CHAT, model="dead/gpt-4o"), 502),
        ("/v1/chat/completions", dict(CHAT, model="dead/gpt-4o", stream=True), 502),
        ("/v1/embeddings", {"model": "dead/emb", "input": "x"}, 502),
        ("/v1/chat/completions", dict(CHAT, model="openai/bad-json"), 502),
        ("/v1/embeddings", {"model": "openai/bad-json", "input": "x"}, 502),
    ]
    for path, body, status in calls:
        r = env.call("POST", path, json=body)
        assert r.status_code == status, (body, r.text)
    rows = [row[1:] for row in usage_rows(env, start)]
    assert rows == [(body["model"].split("/")[0], body["model"].split("/")[1], status, None, None)
                    for _, body, status in calls]
    assert env.call("DELETE", "/v1/provider-keys/dead").status_code == 204
