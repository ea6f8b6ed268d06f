"""Two forge-ref nodes (separate server processes, separate ports) on one PostgreSQL and one
Redis: writes through one node are honoured by the other within 50 ms; a restart loses nothing.

Needs PostgreSQL and Redis (fixtures ``pg_db`` and ``redis_url``)."""

from __future__ import annotations

import time
import uuid

import httpx
import redis

from support import ServerProcess, add_provider, create_user

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
KEY = "8vJ8L6b3zC7n2D0p4Qm1Xk9sT5yW3aR6uE0hF2gI4jM="


def node(tmp_path, pg_db, redis_url, prefix, processes=1):
    return ServerProcess(tmp_path, "--db", pg_db, "--cache-backend", "redis", "--processes", str(processes),
                         env={"REDIS_URL": redis_url, "FORGE_REDIS_PREFIX": prefix, "FORGE_ENCRYPTION_KEY": KEY})


def post(n, key, body=CHAT):
    with httpx.Client() as c:  # a new connection: with --processes 2 either process may answer
        return c.post(n.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def test_two_nodes_on_postgres_and_redis(tmp_path, pg_db, redis_url, mock):
    prefix = f"forge-nodes:{uuid.uuid4().hex[:8]}:"
    a = node(tmp_path, pg_db, redis_url, prefix, processes=2)
    b = node(tmp_path, pg_db, redis_url, prefix, processes=2)
    try:
        key = create_user(a.url)
        assert add_provider(b.url, key, provider="openai", api_key="sk-a",
                            base_url=mock.url + "/openai/v1").status_code == 201
        for _ in range(10):  # both nodes (and both processes of each) serve and cache the user
            assert post(a, key).status_code == 200 and post(b, key).status_code == 200

        # a key reset through a: refused by every process of b within 50 ms
        new = httpx.post(a.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"}).json()["api_key"]
        time.sleep(0.05)
        assert [post(b, key).status_code for _ in range(10)] == [401] * 10
        assert post(b, new).status_code == 200

        # a provider-key change through b: honoured by a within 50 ms
        r = httpx.put(b.url + "/v1/provider-keys/openai", json={"api_key": "sk-invalid-x"},
                      headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 200
        time.sleep(0.05)
        assert {post(a, new).status_code for _ in range(10)} == {502}

        # a node restart loses nothing
        b.stop()
        b2 = node(tmp_path, pg_db, redis_url, prefix)
        try:
            httpx.put(b2.url + "/v1/provider-keys/openai", json={"api_key": "sk-good-again"},
                      headers={"Authorization": f"Bearer {new}"}).raise_for_status()
            assert post(b2, new).status_code == 200
            me = httpx.get(b2.url + "/v1/users/me", headers={"Authorization": f"Bearer {new}"}).json()
            assert me["name"] == "alice"
        finally:
            b2.stop()
    finally:
        a.stop()
        b.stop()
        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(prefix + "*"):
            r.delete(k)
