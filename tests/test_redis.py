"""The Redis backend with a real Redis: shared layers, pub/sub invalidation across processes
and nodes within 50 ms, no secret in Redis, outage costs latency not availability.

Needs Redis (the ``redis_url`` fixture finds or starts one)."""

from __future__ import annotations

import shutil
import time

import httpx
import orjson
import pytest
import redis
from support import ADMIN, GatewayThread, RedisServer, ServerProcess, add_provider, create_user, delta, settings_for

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def redis_settings(tmp_path, url, prefix, **kw):
    return settings_for(tmp_path, cache_backend="redis", redis_url=url, redis_prefix=prefix, **kw)


@pytest.fixture
def two_nodes(tmp_path, redis_url, prefix, mock):
    """Two gateways (as two nodes would be) on one SQLite file and one Redis."""
    a = GatewayThread(redis_settings(tmp_path, redis_url, prefix))
    b = GatewayThread(redis_settings(tmp_path, redis_url, prefix))
    key = create_user(a.url)
    assert add_provider(a.url, key, provider="openai", api_key="sk-redis-provider-secret",
                        base_url=mock.url + "/openai/v1").status_code == 201
    yield a, b, key
    a.stop()
    b.stop()


def chat(node, key):
    return httpx.post(node.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})


def test_user_and_models_are_shared_through_redis(two_nodes, mock):
    a, b, key = two_nodes
    assert chat(a, key).status_code == 200
    before = b.counters()
    assert chat(b, key).status_code == 200
    d = delta(before, b.counters())
    assert d.get("redis_hits") == 1  # b's L1 missed, Redis had a's user row
    assert d["db_queries"] == 1  # only b's own (in-process) service build
    # model lists: fetched once by a, served to b from Redis
    h = {"Authorization": f"Bearer {key}"}
    mock.reset()
    assert httpx.get(a.url + "/v1/models", headers=h).status_code == 200
    before = b.counters()
    assert httpx.get(b.url + "/v1/models", headers=h).status_code == 200
    assert delta(before, b.counters()).get("upstream_model_list_requests", 0) == 0
    assert mock.stats()["openai.models"] == 1


def test_reset_key_refused_by_other_node_within_50ms(two_nodes):
    a, b, key = two_nodes
    for node in (a, b):
        assert chat(node, key).status_code == 200  # cached in both L1s
    new = httpx.post(a.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"}).json()["api_key"]
    time.sleep(0.05)
    assert chat(b, key).status_code == 401
    assert chat(a, key).status_code == 401
    assert chat(b, new).status_code == 200


def test_provider_key_change_reaches_other_node(two_nodes, mock):
    a, b, key = two_nodes
    h = {"Authorization": f"Bearer {key}"}
    assert chat(b, key).status_code == 200
    r = httpx.put(a.url + "/v1/provider-keys/openai", json={"api_key": "sk-invalid-now"}, headers=h)
    assert r.status_code == 200
    time.sleep(0.05)
    r = chat(b, key)
    assert r.status_code == 502 and r.json()["error"]["code"] == "provider_auth_failed"


def test_no_secret_and_no_pickle_in_redis(two_nodes, redis_url, prefix):
    a, b, key = two_nodes
    h = {"Authorization": f"Bearer {key}"}
    for node in (a, b):
        chat(node, key)
        httpx.get(node.url + "/v1/models", headers=h)
    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(prefix + "*"))
    assert any(b":user:" in k for k in keys) and any(b":models:" in k for k in keys)
    enc_key = (a.settings.db + ".key")
    secrets = [key.encode(), b"sk-redis-provider-secret", open(enc_key, "rb").read().strip()]
    for k in keys:
        assert not any(s in k for s in secrets)
        if r.type(k) == b"hash":
            values = list(r.hgetall(k).values())
        elif r.type(k) == b"string":
            values = [r.get(k)]
        else:
            values = []
        for v in values:
            assert not any(s in v for s in secrets)
            assert not v.startswith(b"\x80")  # pickle protocol marker
            orjson.loads(v)  # JSON, always


def test_redis_round_trips_counted_and_reported(two_nodes):
    a, _, key = two_nodes
    admin = {"Authorization": f"Bearer {ADMIN}"}
    httpx.delete(a.url + "/_stats", headers=admin)
    a.gw.auth.cache.clear()
    assert chat(a, key).status_code == 200
    stats = httpx.get(a.url + "/_stats", headers=admin).json()
    assert stats["cache_backend"] == "redis"
    assert stats["counters"]["redis_round_trips"] == 1  # one GET, a hit
    assert stats["counters"]["redis_hits"] == 1
    assert chat(a, key).status_code == 200  # now an L1 hit: no round trip
    assert httpx.get(a.url + "/_stats", headers=admin).json()["counters"]["redis_round_trips"] == 1


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server to stop and restart")
def test_outage_costs_latency_not_availability(tmp_path, mock, caplog):
    server = RedisServer()
    gw = GatewayThread(redis_settings(tmp_path, server.url, "forge-outage:"))
    try:
        key = create_user(gw.url)
        add_provider(gw.url, key, provider="openai", api_key="sk-x", base_url=mock.url + "/openai/v1")
        assert chat(gw, key).status_code == 200
        server.stop()
        time.sleep(0.3)
        before = gw.counters()
        for _ in range(5):
            assert chat(gw, key).status_code == 200  # served from the DB
        d = delta(before, gw.counters())
        assert d["db_queries"] == 10  # user + service per request: caches bypassed, counted
        outage_logs = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
        assert len(outage_logs) == 1  # logged once
        server.start()
        deadline = time.monotonic() + 5
        while not gw.gw.redis.up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.gw.redis.up
        assert chat(gw, key).status_code == 200
        before = gw.counters()
        assert chat(gw, key).status_code == 200
        assert delta(before, gw.counters()).get("db_queries", 0) == 0  # caching resumed
    finally:
        gw.stop()
        server.stop()


def test_two_processes_share_redis(tmp_path, redis_url, prefix, mock):
    server = ServerProcess(tmp_path, "--processes", "2", "--cache-backend", "redis",
                           env={"REDIS_URL": redis_url, "FORGE_REDIS_PREFIX": prefix})
    try:
        key = create_user(server.url)
        add_provider(server.url, key, provider="openai", api_key="sk-x", base_url=mock.url + "/openai/v1")
        for _ in range(20):
            with httpx.Client() as c:  # new connections: both processes serve and cache
                assert c.post(server.url + "/v1/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {key}"}).status_code == 200
        httpx.post(server.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"})
        time.sleep(0.05)
        statuses = []
        for _ in range(20):
            with httpx.Client() as c:
                statuses.append(c.post(server.url + "/v1/chat/completions", json=CHAT,
                                       headers={"Authorization": f"Bearer {key}"}).status_code)
        assert statuses == [401] * 20
        stats = server.stats()
        assert stats["processes"] == 2 and stats["counters"]["db_background_queries"] == 0  # no SQLite polling
    finally:
        server.stop()
