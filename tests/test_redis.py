"""The Redis backend with a real Redis: shared layers, pub/sub invalidation across processes
and nodes within 50 ms, no secret in Redis, outage costs latency not availability.

Needs Redis (the ``redis_url`` fixture finds or starts one)."""

from __future__ import annotations

import asyncio
import shutil
import time

import httpx
import orjson
import pytest
import redis
from support import (
    ADMIN,
    FakeClock,
    GatewayThread,
    RedisServer,
    ServerProcess,
    Source,
    add_provider,
    create_user,
    delta,
    settings_for,
    settle_refreshes,
)

from forge_ref import redis_backend as rb
from forge_ref.auth import hash_key
from forge_ref.cache import MISSING
from forge_ref.invalidation import MODELS
from forge_ref.redis_backend import decode_user, encode_user
from forge_ref.refresh import RefreshAheadCache
from forge_ref.store import User
from forge_ref.tracing import Tracer

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


def test_a_scope_change_and_a_revoked_key_reach_the_other_node_within_50ms(two_nodes, redis_url, prefix):
    a, b, key = two_nodes
    h = {"Authorization": f"Bearer {key}"}
    r = httpx.post(a.url + "/v1/users/me/keys", json={"name": "ci", "providers": ["openai"]}, headers=h)
    scoped, key_id = r.json()["key"], r.json()["id"]
    for node in (a, b):
        assert chat(node, scoped).status_code == 200  # cached in both L1s, and in Redis with its scope
    entry = orjson.loads(redis.Redis.from_url(redis_url).get(f"{prefix}user:{hash_key(scoped)}"))
    assert entry["v"]["providers"] == ["openai"] and scoped not in str(entry)
    assert httpx.patch(a.url + f"/v1/users/me/keys/{key_id}", json={"providers": ["elsewhere"]},
                       headers=h).status_code == 200
    time.sleep(0.05)
    r = chat(b, scoped)
    assert r.status_code == 403 and r.json()["error"]["code"] == "provider_not_allowed"
    assert httpx.delete(a.url + f"/v1/users/me/keys/{key_id}", headers=h).status_code == 204
    time.sleep(0.05)
    assert chat(b, scoped).status_code == 401
    assert chat(b, key).status_code == 200


def test_the_user_entry_carries_the_scope_and_older_entries_read_as_unscoped():
    user = User(7, "alice", "h", "forge-abc", frozenset({"openai", "groq"}))
    assert encode_user(user)["providers"] == ["groq", "openai"]
    assert decode_user(orjson.loads(orjson.dumps(encode_user(user)))) == user
    assert decode_user({"id": 7, "name": "alice", "key_hash": "h", "key_prefix": "p"}).providers is None


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


@pytest.mark.parametrize("heard", [True, False], ids=["invalidation-heard", "invalidation-in-flight"])
def test_an_l1_refresh_overtaken_by_another_nodes_write_stores_nowhere(redis_url, prefix, heard):
    """The L1 refresh finds Redis empty and loads from the source; another node writes meanwhile.
    The generation guard keeps the stale row out of Redis and, even before the write's message
    reaches this process (``heard=False``), out of the L1."""

    async def main():
        clock, tracer = FakeClock(), Tracer()
        link = rb.RedisLink(redis_url, prefix=prefix, max_connections=4, timeout=1.0, tracer=tracer)
        l1 = RefreshAheadCache("models", maxsize=10, ttl=10, tracer=tracer, refresh_ahead=0.8, timer=clock)
        tiered = rb.TieredCache("models", l1, link, ttl=300, locate=rb.models_locator(prefix), encode=rb.identity,
                                decode=rb.identity, tracer=tracer)
        source, key, redis_key = Source(clock, ["m-1"]), "7:openai:cfg", f"{prefix}models:7"
        try:
            assert await tiered.load(key, source) == ["m-1"]
            assert await link.client.hexists(redis_key, "openai:cfg")
            await link.client.delete(redis_key)  # the Redis entry expired: the refresh must load
            source.hold()
            source.called.clear()
            clock.now += 8
            assert tiered.get(key) == ["m-1"]  # due: served, and the refresh starts
            await asyncio.wait_for(source.called.wait(), 5)  # it read the generation, now the source
            await rb.RedisBroadcast(link).send([(MODELS, "7")])  # another node's write
            if heard:
                tiered.invalidate(key)  # what this process's subscriber does with the message
            source.release(["m-stale"])
            await settle_refreshes(l1)
            assert not await link.client.exists(redis_key)
            assert tiered.get(key) is MISSING
            layer = tracer.snapshot({})["caches"]["models"]
            assert (layer["refreshes"], layer["refreshes_discarded"], layer["refreshes_stored"]) == (1, 1, 0)
        finally:
            await link.close()

    asyncio.run(main())


def test_an_l1_refresh_reads_redis_in_the_background(tmp_path, redis_url, prefix, mock):
    """Refresh-ahead on the L1: a request that finds its user entry due is served from the L1;
    the refresh reads Redis (which still holds the row) and costs the DB nothing."""
    clock = FakeClock()
    gw = GatewayThread(redis_settings(tmp_path, redis_url, prefix, user_refresh_ahead=0.8), timer=clock)
    try:
        key = create_user(gw.url)
        add_provider(gw.url, key, provider="openai", api_key="sk-x", base_url=mock.url + "/openai/v1")
        assert chat(gw, key).status_code == 200  # the user row is in the L1 (TTL 10 s) and in Redis
        clock.now += 9  # past 80% of the L1's TTL
        before = gw.counters()
        assert chat(gw, key).status_code == 200
        asyncio.run_coroutine_threadsafe(settle_refreshes(gw.gw.auth.cache.l1), gw.loop).result(10)
        d = delta(before, gw.counters())
        assert (d["cache.user.hits"], d["cache.user.refreshes_stored"], d["redis_hits"]) == (1, 1, 1)
        assert "cache.user.misses" not in d and "db_queries" not in d and "db_background_queries" not in d
        clock.now += 9  # 18 s: the first L1 entry would have expired at 10 s; the refreshed one lives
        before = gw.counters()
        assert chat(gw, key).status_code == 200
        assert "cache.user.misses" not in delta(before, gw.counters())
    finally:
        gw.stop()
