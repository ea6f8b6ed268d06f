"""Security promises (README "Security"): SSRF refusals, no redirects followed, revocation under
load within the documented bound, and no secret in any log line.

No traffic leaves 127.0.0.1: private addresses are refused before any connection, and host
names are either ``localhost`` or resolved by a patched resolver.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import sqlite3
import threading
import time

import httpx
import pytest
from support import ADMIN, GatewayThread, ServerProcess, add_provider, create_user, settings_for

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# --- SSRF ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A gateway with the guard on (FORGE_ALLOW_PRIVATE_UPSTREAMS unset)."""
    g = GatewayThread(settings_for(tmp_path_factory.mktemp("ssrf"), allow_private_upstreams=False))
    g.key = create_user(g.url)
    yield g
    g.stop()


PRIVATE_URLS = [
    "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/v1", "http://10.255.255.254/v1",
    "http://192.168.1.1/v1", "http://172.16.0.1/v1", "http://127.0.0.1:9/v1", "http://127.1.2.3/v1",
    "http://[::1]:9/v1", "http://[fd00::1]/v1", "http://[fe80::1]/v1", "http://[::ffff:127.0.0.1]/v1",
    "http://[::ffff:169.254.169.254]/v1", "http://100.64.0.1/v1", "http://0.0.0.0/v1", "http://0/v1",
    "http://0x7f000001/v1", "http://2130706433/v1", "http://017700000001/v1", "http://localhost:9/v1",
    "http://LOCALHOST./v1", "http://[64:ff9b::a00:1]/v1", "http://[2002:a00:1::]/v1", "http://224.0.0.1/v1",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_base_url_refused_on_add_and_update(strict, url):
    h = {"Authorization": f"Bearer {strict.key}"}
    r = httpx.post(strict.url + "/v1/provider-keys", headers=h,
                   json={"provider": "evil", "api_key": "sk-ssrf-0123456789", "base_url": url})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("private_upstream", "invalid_url")
    r = httpx.put(strict.url + "/v1/provider-keys/openai", headers=h, json={"base_url": url})
    assert r.status_code in (400, 404)  # validated before the provider is looked up
    if r.status_code == 400:
        assert r.json()["error"]["code"] in ("private_upstream", "invalid_url")


def test_hostname_resolving_to_private_is_refused(strict, monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *args, **kw):
        if host == "internal.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
        if host == "dual.example.test":  # one public, one private address: refused
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 443, 0, 0))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    h = {"Authorization": f"Bearer {strict.key}"}
    for host in ("internal.example.test", "dual.example.test"):
        r = httpx.post(strict.url + "/v1/provider-keys", headers=h,
                       json={"provider": "evil", "api_key": "sk-ssrf-0123456789", "base_url": f"https://{host}/v1"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "private_upstream", r.text


@pytest.mark.parametrize("client", ["curl", "httpx", "aiohttp"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_request_time_guard_blocks_a_stored_private_upstream(tmp_path, mock, client, host):
    """A provider whose host now resolves to a private address (DNS rebinding; simulated by writing
    the row directly) is refused when the connection is opened: 502, and the upstream sees nothing."""
    g = GatewayThread(settings_for(tmp_path, allow_private_upstreams=False, upstream_client=client))
    try:
        key = create_user(g.url)
        uid = httpx.get(g.url + "/v1/users/me", headers={"Authorization": f"Bearer {key}"}).json()["id"]
        port = mock.url.rsplit(":", 1)[1]
        db = sqlite3.connect(g.settings.db)
        db.execute("INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                   " created_at, updated_at) VALUES (?, 'openai', 'openai', ?, ?, '{}', 0, 0)",
                   (uid, g.gw.crypto.encrypt("sk-rebind-0123456789"), f"http://{host}:{port}/openai/v1"))
        db.commit()
        mock.reset()
        h = {"Authorization": f"Bearer {key}"}
        for stream in (False, True):
            r = httpx.post(g.url + "/v1/chat/completions", headers=h,
                           json={"model": "openai/gpt-4o-mini", "stream": stream, **CHAT})
            assert r.status_code == 502, r.text
        assert httpx.post(g.url + "/v1/embeddings", headers=h,
                          json={"model": "openai/x", "input": "x"}).status_code == 502
        assert httpx.get(g.url + "/v1/models", headers=h).json()["data"] == []
        assert sum(mock.stats().values()) == 0
    finally:
        g.stop()


def test_request_time_guard_cost_is_per_connection_only():
    """The guard runs in libcurl's OPENSOCKETFUNCTION (new connections only); its check is cached."""
    from forge_ref.ssrf import blocked

    blocked.cache_clear()
    started = time.perf_counter()
    for _ in range(10000):
        blocked("93.184.216.34")
    per_call_us = (time.perf_counter() - started) / 10000 * 1e6
    assert per_call_us < 5


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""

    def _redirect(self):
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        body = b'{"id": "x", "object": "chat.completion", "choices": [], "data": [{"id": "m"}]}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _redirect

    def log_message(self, *args):
        pass


def test_redirects_are_not_followed(tmp_path, mock):
    mock.reset()
    _Redirector.target = mock.url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    g = GatewayThread(settings_for(tmp_path))  # private allowed: everything here is on loopback
    try:
        key = create_user(g.url)
        h = {"Authorization": f"Bearer {key}"}
        assert add_provider(g.url, key, provider="openai", api_key="sk-redirect-0123456789",
                            base_url=f"http://127.0.0.1:{server.server_address[1]}/openai/v1").status_code == 201
        for stream in (False, True):
            r = httpx.post(g.url + "/v1/chat/completions", headers=h,
                           json={"model": "openai/gpt-4o-mini", "stream": stream, **CHAT})
            assert r.status_code == 502 and "302" in r.json()["error"]["message"], r.text
        r = httpx.post(g.url + "/v1/embeddings", headers=h, json={"model": "openai/x", "input": "x"})
        assert r.status_code == 502
        assert httpx.get(g.url + "/v1/models", headers=h).json()["data"] == []
        assert sum(mock.stats().values()) == 0  # the redirect target was never called
    finally:
        g.stop()
        server.shutdown()


# --- revocation under load ----------------------------------------------------------------------

# (serve arguments, extra environment, documented propagation bound in seconds). "redis" in the
# environment stands for the Redis that the ``redis_url`` fixture finds or starts.
SERVER_MODES = [
    pytest.param(("--processes", "2"), {}, 1.0, id="memory-sqlite-log"),
    pytest.param(("--processes", "2", "--cache-backend", "redis"), {"REDIS_URL": "redis"}, 0.05, id="redis-pubsub"),
]


async def _load(url: str, key: str, model: str, *, write, bound: float, tasks: int = 50, enough: int = 120,
                patience: float = 120.0):
    """``tasks`` clients hammer one key/model. ``write`` runs once ``enough`` requests have succeeded; the
    load goes on until ``enough`` requests have started more than ``bound`` s after the write's answer.
    Counts, not seconds, decide both, so a slow machine makes the test longer, not weaker.
    Returns (results, t_ack)."""
    results: list[tuple[float, int]] = []
    t_ack: list[float] = []
    stop = asyncio.Event()

    async def client(c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = await c.post("/v1/chat/completions", json={"model": model, **CHAT})
                results.append((started, r.status_code))
            except httpx.HTTPError:
                results.append((started, 0))

    async def until(condition) -> None:
        deadline = time.monotonic() + patience
        while not condition():
            assert time.monotonic() < deadline, "the load did not get going"
            await asyncio.sleep(0.01)

    async def writer() -> None:
        await until(lambda: sum(1 for _, status in results if status == 200) >= enough)
        await write()
        t_ack.append(time.monotonic())
        await until(lambda: sum(1 for t, _ in results if t > t_ack[0] + bound) >= enough)
        stop.set()

    limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=10) as c:
        await asyncio.gather(writer(), *(client(c) for _ in range(tasks)))
    return results, t_ack[0]


@pytest.mark.parametrize("args,env,bound", SERVER_MODES)
def test_revocation_under_load(tmp_path, mock, args, env, bound, request):
    import uuid

    if env.get("REDIS_URL") == "redis":
        env = dict(env, REDIS_URL=request.getfixturevalue("redis_url"),
                   FORGE_REDIS_PREFIX=f"forge-revoke:{uuid.uuid4().hex[:8]}:")
    server = ServerProcess(tmp_path, *args, env=env)
    try:
        key = create_user(server.url)
        for provider in ("openai", "second"):
            assert add_provider(server.url, key, provider=provider, api_key=f"sk-{provider}-0123456789",
                                base_url=mock.url + "/openai/v1").status_code == 201
        new_key: list[str] = []

        async def reset() -> None:
            async with httpx.AsyncClient(base_url=server.url) as c:
                r = await c.post("/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200
                new_key.append(r.json()["api_key"])

        results, t_ack = asyncio.run(_load(server.url, key, "openai/gpt-4o-mini", write=reset, bound=bound))
        before = [s for t, s in results if t < t_ack]
        late = [s for t, s in results if t > t_ack + bound]
        assert before.count(200) > 100, "the old key must have been serving under load"
        assert len(late) > 100, "the load must go on past the bound"
        assert late.count(200) == 0, f"{late.count(200)} requests with the reset key succeeded after the bound"
        assert set(late) == {401}

        async def delete() -> None:
            async with httpx.AsyncClient(base_url=server.url) as c:
                r = await c.delete("/v1/provider-keys/second", headers={"Authorization": f"Bearer {new_key[0]}"})
                assert r.status_code == 204

        results, t_ack = asyncio.run(_load(server.url, new_key[0], "second/gpt-4o-mini", write=delete, bound=bound))
        before = [s for t, s in results if t < t_ack]
        late = [s for t, s in results if t > t_ack + bound]
        assert before.count(200) > 100 and len(late) > 100
        assert late.count(200) == 0, f"{late.count(200)} requests reached a deleted provider key after the bound"
        assert set(late) == {404}
        r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {new_key[0]}"},
                       json={"model": "openai/gpt-4o-mini", **CHAT})
        assert r.status_code == 200  # the other provider key is untouched

        r = httpx.post(server.url + "/v1/users/me/keys", headers={"Authorization": f"Bearer {new_key[0]}"},
                       json={"name": "ci", "providers": ["openai"]})
        scoped, scoped_id = r.json()["key"], r.json()["id"]

        async def revoke() -> None:
            async with httpx.AsyncClient(base_url=server.url) as c:
                r = await c.delete(f"/v1/users/me/keys/{scoped_id}", headers={"Authorization": f"Bearer {new_key[0]}"})
                assert r.status_code == 204

        results, t_ack = asyncio.run(_load(server.url, scoped, "openai/gpt-4o-mini", write=revoke, bound=bound))
        before = [s for t, s in results if t < t_ack]
        late = [s for t, s in results if t > t_ack + bound]
        assert before.count(200) > 100 and len(late) > 100
        assert late.count(200) == 0, f"{late.count(200)} requests with a revoked scoped key succeeded after the bound"
        assert set(late) == {401}
    finally:
        stop_with_workers(server)


def stop_with_workers(server) -> None:
    """SIGTERM reaches only the master of ``--processes N``; its forked workers would outlive it."""
    import psutil

    workers = psutil.Process(server.proc.pid).children()
    server.stop()
    for w in workers:
        try:
            w.terminate()
            w.wait(5)
        except psutil.Error:
            pass


# --- secrets in logs ----------------------------------------------------------------------------


def test_no_secret_in_any_log_line(tmp_path, mock):
    server = ServerProcess(tmp_path, env={"FORGE_LOG_LEVEL": "debug", "FORGE_ACCESS_LOG": "1",
                                          "FORGE_READ_TIMEOUT": "1"})
    secrets = {ADMIN}
    try:
        enc_key = (tmp_path / "e2e.db.key").read_text().strip()
        secrets.add(enc_key)
        key = create_user(server.url, "logged")
        secrets.add(key)
        h = {"Authorization": f"Bearer {key}"}
        for provider, kind, path in (("openai", "openai", "/openai/v1"), ("anthropic", "anthropic", "/anthropic"),
                                     ("gemini", "gemini", "/gemini")):
            secret = f"sk-log-{provider}-5f1e2d3c4b5a6978"
            secrets.add(secret)
            assert add_provider(server.url, key, provider=provider, kind=kind, api_key=secret,
                                base_url=mock.url + path).status_code == 201
        secrets.add("sk-log-openai-updated-0a1b2c3d4e")
        assert httpx.put(server.url + "/v1/provider-keys/openai", headers=h,
                         json={"api_key": "sk-log-openai-updated-0a1b2c3d4e"}).status_code == 200
        with httpx.Client(base_url=server.url, headers=h, timeout=10) as c:
            for model in ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash",
                          "openai/fail-500", "anthropic/fail-429", "gemini/bad-json", "openai/hang", "ghost/x"):
                c.post("/v1/chat/completions", json={"model": model, **CHAT})
                c.post("/v1/chat/completions", json={"model": model, "stream": True, **CHAT})
            c.post("/v1/chat/completions", json={"model": "anthropic/drop-mid-stream", "stream": True, **CHAT})
            c.post("/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "x"})
            c.get("/v1/models")
            c.get("/v1/provider-keys")
            c.post("/v1/chat/completions", content=b"{broken")
            c.get("/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
            c.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
            c.get("/_stats", headers={"Authorization": "Bearer not-the-admin-token"})
        httpx.get(server.url + "/v1/users/me", headers={"Authorization": "Bearer forge-guessed-0123456789abcdef"})
        # a malformed header carrying the key: Tornado's parser quotes the bad value in its log line
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"GET /v1/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                      + b"\x01\r\n\r\n")
            s.recv(1024)
        r = httpx.post(server.url + "/v1/users/me/keys", headers=h, json={"name": "ci", "providers": ["openai"]})
        scoped = r.json()["key"]
        secrets.add(scoped)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {scoped}"}, timeout=10) as c:
            c.post("/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "stream": True, **CHAT})
            c.post("/v1/chat/completions", json={"model": "anthropic/claude-haiku-4-5", **CHAT})  # 403
            c.post("/v1/users/me/keys", json={"name": "wider"})  # 403: a scoped key
            secrets.add(c.post("/v1/users/me/reset-key").json()["api_key"])  # its scope kept
        httpx.get(server.url + "/v1/users/me/keys", headers=h)
        httpx.get(server.url + "/v1/usage?group_by=provider,model,day", headers=h)
        r = httpx.post(server.url + "/v1/users/me/reset-key", headers=h)
        secrets.add(r.json()["api_key"])
        httpx.get(server.url + "/v1/users/me", headers=h)  # the old key, refused
        time.sleep(0.3)
    finally:
        server.stop()
    text = server.log.read_text()
    assert "DEBUG" in text and "forge_ref.access" in text  # the session was logged, at debug level
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) is in the log"
    lines = [json.loads(line.split("forge_ref.access ", 1)[1]) for line in text.splitlines()
             if " forge_ref.access " in line]
    chats = [x for x in lines if x["path"] == "/v1/chat/completions" and x["status"] == 200 and "provider" in x]
    assert chats and all({"rid", "user", "provider", "model", "status", "ms", "cache", "stream"} <= set(x)
                         for x in chats)
    assert any(x["cache"] == {"user": "hit", "service": "hit", "key": "hit", "adapter": "hit"} for x in chats)
    assert len({x["rid"] for x in lines}) == len(lines)
