"""End to end: ``forge-ref serve`` and ``forge-ref mock-provider`` as real processes, driven by
the official ``openai`` SDK and raw HTTP for what the SDK would not send."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from support import ADMIN, MockProcess, ServerProcess, add_provider, create_user


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def env(tmp_path_factory, request):
    """The server on each event loop (``FORGE_EVENT_LOOP``): Tornado, pycurl and SQLite on both."""
    tmp = tmp_path_factory.mktemp("e2e")
    mock = MockProcess()
    server = ServerProcess(tmp, env={"FORGE_EVENT_LOOP": request.param})
    key = create_user(server.url)
    r = add_provider(server.url, key, provider="openai", api_key="sk-test-openai-123",
                     base_url=mock.url + "/openai/v1", model_mapping={"fast": "gpt-4o-mini"})
    assert r.status_code == 201, r.text
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=10)
    yield server, mock, key, client
    server.stop()
    mock.stop()


def test_chat(env):
    server, mock, key, client = env
    r = client.chat.completions.create(model="openai/gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hello gateway"}])
    assert "hello gateway" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0


def test_alias(env):
    _, _, _, client = env
    r = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "via alias"}])
    assert "via alias" in r.choices[0].message.content


def test_streaming(env):
    _, _, _, client = env
    stream = client.chat.completions.create(model="openai/gpt-4o-mini", stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "stream this please"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream this please" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_embeddings(env):
    _, _, _, client = env
    r = client.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0


def test_models(env):
    _, _, _, client = env
    ids = {m.id for m in client.models.list()}
    assert {"openai/gpt-4o-mini", "openai/gpt-4o", "fast"} <= ids


@pytest.mark.parametrize("model,exc,status", [
    ("nope/gpt-4o", openai.NotFoundError, 404),
    ("not-an-alias", openai.NotFoundError, 404),
    ("openai/fail-500", openai.InternalServerError, 502),
    ("openai/fail-429", openai.RateLimitError, 429),
    ("openai/hang", openai.InternalServerError, 504),
    ("openai/bad-json", openai.InternalServerError, 502),
])
def test_errors_surface_as_sdk_errors(env, model, exc, status):
    _, _, _, client = env
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    body = info.value.response.json()
    assert set(body["error"]) >= {"message", "type", "code"}
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


def test_drop_mid_stream_becomes_error_event_then_done(env):
    server, _, key, _ = env
    with httpx.stream("POST", server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "openai/drop-mid-stream", "stream": True,
                            "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status_code == 200
        frames = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    err = json.loads(frames[-2][6:])
    assert err["error"]["type"] == "upstream_error"
    # the SDK raises on the error event instead of returning a truncated answer
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="openai/drop-mid-stream", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))


def raw(server, method, path, key=None, **kw):
    headers = kw.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.request(method, server.url + path, headers=headers, **kw)


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1,2]", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "missing_model"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', 400, "missing_model"),
    (b'{"model": "openai/gpt-4o", "messages": "hi"}', 400, "invalid_messages"),
    (b'{"model": "openai/gpt-4o", "messages": [{"role": "user"}], "stream": "yes"}', 400, "invalid_type"),
    (b'{"model": "ghost/gpt-4o", "messages": [{"role": "user", "content": "x"}]}', 404, "provider_not_found"),
])
def test_bad_chat_input(env, body, status, code):
    server, _, key, _ = env
    r = raw(server, "POST", "/v1/chat/completions", key, content=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_oversized_body_is_413(env):
    server, _, key, _ = env
    big = b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "' + b"x" * 70000 + b'"}]}'
    r = raw(server, "POST", "/v1/chat/completions", key, content=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    # chunked, without Content-Length
    r = raw(server, "POST", "/v1/chat/completions", key, content=iter([big[:40000], big[40000:]]))
    assert r.status_code == 413


@pytest.mark.parametrize("headers,status", [
    ({}, 401),
    ({"Authorization": "Bearer forge-not-a-real-key"}, 401),
    ({"Authorization": "Basic abc"}, 401),
    ({"X-API-Key": "forge-wrong"}, 401),
])
def test_missing_or_invalid_key(env, headers, status):
    server, _, _, _ = env
    r = raw(server, "POST", "/v1/chat/completions", headers=headers,
            json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == status
    assert r.json()["error"]["type"] == "authentication_error"


def test_x_api_key_header_works(env):
    server, _, key, _ = env
    r = raw(server, "GET", "/v1/users/me", headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json()["name"] == "alice"


def test_admin_endpoints(env):
    server, _, key, _ = env
    r = raw(server, "POST", "/v1/users", json={"name": "x"})
    assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
    assert raw(server, "POST", "/v1/users", key, json={"name": "x"}).status_code == 403
    assert raw(server, "POST", "/v1/users", ADMIN, json={"name": ""}).status_code == 400
    assert raw(server, "POST", "/v1/users", ADMIN, json={"name": 7}).status_code == 400
    assert raw(server, "GET", "/_stats", key).status_code == 403


@pytest.mark.parametrize("body,code", [
    ({"provider": "Bad Name!", "api_key": "k", "base_url": "http://x/v1"}, "invalid_value"),
    ({"provider": "x", "api_key": "k"}, "missing_field"),
    ({"provider": "x", "api_key": 5, "base_url": "http://x/v1"}, "invalid_type"),
    ({"provider": "x", "api_key": "k", "base_url": "ftp://x"}, "invalid_url"),
    ({"provider": "x", "api_key": "k", "base_url": "http://x", "kind": "cohere"}, "invalid_value"),
    ({"provider": "x", "api_key": "k", "base_url": "http://x", "model_mapping": {"a": 1}}, "invalid_value"),
])
def test_provider_key_validation(env, body, code):
    server, _, key, _ = env
    r = raw(server, "POST", "/v1/provider-keys", key, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


def test_provider_keys_listing_is_masked(env):
    server, _, key, _ = env
    r = raw(server, "GET", "/v1/provider-keys", key)
    text = r.text
    assert r.status_code == 200 and "sk-test-openai-123" not in text
    assert r.json()["data"][0]["api_key"] == "sk-...-123"
    assert raw(server, "POST", "/v1/provider-keys", key, json={
        "provider": "openai", "api_key": "k", "base_url": "http://x/v1"}).status_code == 409


def test_unknown_route_is_openai_shaped_404(env):
    server, _, _, _ = env
    r = raw(server, "GET", "/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_route"


def test_counters_exact_and_documented(env):
    """README: with every layer on, a warm chat costs 0 DB reads and 0 decryptions."""
    server, mock, key, client = env
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "w"}])
    httpx.delete(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
    mock.reset()
    for _ in range(5):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "w"}])
    c = server.stats()["counters"]
    assert (c["requests"], c["db_queries"], c["decryptions"], c["upstream_requests"]) == (5, 0, 0, 5)
    assert mock.stats()["openai.chat"] == 5


def test_no_cache_costs_documented(tmp_path):
    """README: with every layer off, one chat request costs 2 DB reads and 1 decryption per provider key."""
    mock = MockProcess()
    server = ServerProcess(tmp_path, "--caches", "none")
    try:
        key = create_user(server.url)
        for p in ("openai", "second"):
            add_provider(server.url, key, provider=p, api_key="sk-" + p, base_url=mock.url + "/openai/v1")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        httpx.delete(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
        for _ in range(4):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "w"}])
        c = server.stats()["counters"]
        assert (c["db_queries"], c["decryptions"], c["adapters_built"]) == (8, 8, 4)
    finally:
        server.stop()
        mock.stop()


def test_usage_rows_are_batched(tmp_path):
    mock = MockProcess()
    server = ServerProcess(tmp_path, env={"FORGE_USAGE_FLUSH_INTERVAL": "0.3"})
    try:
        key = create_user(server.url)
        add_provider(server.url, key, provider="openai", api_key="sk-x", base_url=mock.url + "/openai/v1")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        httpx.delete(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
        for _ in range(10):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "w"}])
        time.sleep(0.8)
        c = server.stats()["counters"]
        assert 1 <= c["db_writes"] <= 3  # 10 usage rows in one or a few batched statements, not 10
        import sqlite3
        rows = sqlite3.connect(tmp_path / "e2e.db").execute(
            "SELECT provider, model, status, prompt_tokens FROM usage").fetchall()
        assert len(rows) == 10 and rows[0][:3] == ("openai", "gpt-4o-mini", 200) and rows[0][3] > 0
    finally:
        server.stop()
        mock.stop()


def test_client_disconnect_stops_the_upstream_read(tmp_path):
    """A client that leaves mid-stream: the gateway stops reading the (slow) upstream at once."""
    import socket
    import sqlite3

    slow = MockProcess("--chunks", "30", "--chunk-delay-ms", "100")  # 3 s of generation
    server = ServerProcess(tmp_path, env={"FORGE_USAGE_FLUSH_INTERVAL": "0.2"})
    try:
        key = create_user(server.url)
        add_provider(server.url, key, provider="openai", api_key="sk-x", base_url=slow.url + "/openai/v1")
        body = json.dumps({"model": "openai/gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": "long story"}]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                      + b"\r\n\r\n" + body)
            assert b"200 OK" in s.recv(4096)
        time.sleep(1.0)
        rows = sqlite3.connect(tmp_path / "e2e.db").execute("SELECT status, latency_ms FROM usage").fetchall()
        assert len(rows) == 1
        status, latency_ms = rows[0]
        assert status == 499 and latency_ms < 1000  # not the full 3 s
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()
        slow.stop()

