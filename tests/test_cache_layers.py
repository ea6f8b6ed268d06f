"""The six layers against their costs: exact counter deltas for all 64 toggle combinations,
exact invalidation per write path, coalescing, TTL expiry. Real gateway on loopback, real mock."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from support import ADMIN, GatewayThread, MockProcess, add_provider, create_user, delta, settings_for, settle_refreshes

from forge_ref.auth import hash_key
from forge_ref.cache import MISSING
from forge_ref.settings import LAYERS, layers_label

COMBOS = [dict(zip(LAYERS, bits)) for bits in itertools.product([False, True], repeat=len(LAYERS))]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = dict(CHAT, max_tokens=16)  # POST /v1/messages (Anthropic's API) costs what chat costs
OPTED_IN = {"Cache-Control": "max-age=600"}
K = 2  # provider keys per user in these tests


def setup_user(gw_url: str, mock_url: str, name: str = "alice") -> str:
    key = create_user(gw_url, name)
    for provider in ("openai", "groq"):
        r = add_provider(gw_url, key, provider=provider, api_key=f"sk-{provider}-test",
                         base_url=mock_url + "/openai/v1")
        assert r.status_code == 201, r.text
    return key


def expected_chat(layers: dict[str, bool]) -> dict[str, int]:
    """Cost of one warm chat request (the README's table says the same)."""
    return {
        "requests": 1,
        "db_queries": (0 if layers["user"] else 1) + (0 if layers["service"] else 1),
        "decryptions": 0 if layers["service"] else (1 if layers["keys"] else K),
        "upstream_requests": 1,
        "adapters_built": 0 if layers["adapters"] else 1,
        "services_built": 0 if layers["service"] else 1,
    }


def expected_opted_in(layers: dict[str, bool]) -> dict[str, int]:
    """Cost of one warm chat request that opted in to the response cache (``Cache-Control: max-age``):
    with the ``responses`` layer on, a hit: no upstream call and no adapter; off, a plain request."""
    cost = expected_chat(layers)
    if layers["responses"]:
        cost.update(upstream_requests=0, adapters_built=0)
    return cost


def expected_models(layers: dict[str, bool], listed: int = K) -> dict[str, int]:
    """Cost of one warm GET /v1/models (K providers, ``listed`` of them the key may use)."""
    if layers["service"]:
        decryptions = 0
    elif not layers["keys"]:
        decryptions = K  # eager: every key at every build
    else:
        decryptions = 0 if layers["models"] else listed  # lazy: only keys whose list must be fetched
    fetches = 0 if layers["models"] else listed
    return {
        "requests": 1,
        "db_queries": (0 if layers["user"] else 1) + (0 if layers["service"] else 1),
        "decryptions": decryptions,
        "upstream_model_list_requests": fetches,
        "adapters_built": 0 if layers["adapters"] else fetches,
        "services_built": 0 if layers["service"] else 1,
    }


COSTS = ("requests", "db_queries", "db_writes", "decryptions", "upstream_requests", "upstream_model_list_requests",
         "adapters_built", "services_built")


def costs(before, after):
    return {k: v for k, v in delta(before, after).items() if k in COSTS}


def scoped_key(gw_url: str, key: str, providers: list[str]) -> str:
    r = httpx.post(gw_url + "/v1/users/me/keys", json={"name": "scoped", "providers": providers},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.mark.parametrize("layers", COMBOS, ids=[layers_label(c) for c in COMBOS])
def test_exact_costs_for_every_combination(layers, mock, tmp_path):
    """The user's first key, then a key scoped to one of the K providers: the same formulas (the
    scope comes with the user look-up), except that /v1/models lists only what the key may use.
    A request that does not opt in to the response cache costs the same whatever the layer; one that
    does is a hit with the layer on."""
    gw = GatewayThread(settings_for(tmp_path, caches=layers_label(layers)))
    try:
        owner = setup_user(gw.url, mock.url)
        for key, listed, expected_ids in ((owner, K, {"openai/gpt-4o-mini", "groq/gpt-4o-mini"}),
                                          (scoped_key(gw.url, owner, ["openai"]), 1, {"openai/gpt-4o-mini"})):
            with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as client:
                assert client.post("/v1/chat/completions", json=CHAT).status_code == 200  # warm-up
                for _ in range(3):
                    for path, body in (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)):
                        before = gw.counters()
                        r = client.post(path, json=body)
                        assert r.status_code == 200, r.text
                        assert r.headers["X-Forge-Cache"] == "bypass"  # never cached without an opt-in
                        assert costs(before, gw.counters()) == {k: v for k, v in expected_chat(layers).items() if v}
                for path, body in (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)):
                    assert client.post(path, json=body, headers=OPTED_IN).status_code == 200  # warm-up
                    for _ in range(2):
                        before = gw.counters()
                        r = client.post(path, json=body, headers=OPTED_IN)
                        assert r.status_code == 200, r.text
                        assert r.headers["X-Forge-Cache"] == ("hit" if layers["responses"] else "bypass")
                        assert costs(before, gw.counters()) == {k: v for k, v in expected_opted_in(layers).items()
                                                                if v}
                assert client.get("/v1/models").status_code == 200  # warm-up
                for _ in range(3):
                    before = gw.counters()
                    r = client.get("/v1/models")
                    assert r.status_code == 200
                    ids = {m["id"] for m in r.json()["data"]}
                    assert ids >= expected_ids
                    assert {i.split("/")[0] for i in ids} == {i.split("/")[0] for i in expected_ids}
                    assert costs(before, gw.counters()) == {k: v for k, v in expected_models(layers, listed).items()
                                                            if v}
    finally:
        gw.stop()


@pytest.mark.parametrize("scope", [None, ["openai"]], ids=["first-key", "scoped-key"])
@pytest.mark.parametrize("spec, queries, decryptions", [("all", 0, 0), ("none", 2, K)])
def test_all_on_warm_is_free_and_all_off_costs(spec, queries, decryptions, scope, mock, tmp_path):
    """The design's headline, observed (not derived from the helpers above): warm with every
    layer on, 0 DB reads and 0 decryptions; with every layer off, 2 reads and one decryption per key.
    A scoped key costs the same: its scope comes with the user look-up."""
    gw = GatewayThread(settings_for(tmp_path, caches=spec))
    try:
        key = setup_user(gw.url, mock.url)
        if scope is not None:
            key = scoped_key(gw.url, key, scope)
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            before = gw.counters()
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            d = delta(before, gw.counters())
        assert (d.get("db_queries", 0), d.get("decryptions", 0), d["upstream_requests"]) == (queries, decryptions, 1)
    finally:
        gw.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("spec, queries, decryptions", [("all", 0, 0), ("none", 2, 3)])
def test_messages_to_every_kind_cost_what_chat_costs(spec, queries, decryptions, stream, mock, tmp_path):
    """/v1/messages, passed through to an anthropic kind or translated for the others: warm with every
    layer on, 0 DB reads and 0 decryptions; off, 2 reads and one decryption per key (3 here)."""
    gw = GatewayThread(settings_for(tmp_path, caches=spec))
    try:
        key = create_user(gw.url)
        for kind, path in (("anthropic", "/anthropic"), ("openai", "/openai/v1"), ("gemini", "/gemini")):
            assert add_provider(gw.url, key, provider=kind, kind=kind, api_key=f"sk-{kind}-test",
                                base_url=mock.url + path).status_code == 201
        with httpx.Client(base_url=gw.url, headers={"x-api-key": key}) as client:
            for model in ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", "gemini/gemini-2.5-flash"):
                body = dict(MESSAGES, model=model, stream=stream)
                assert client.post("/v1/messages", json=body).status_code == 200  # warm-up
                before = gw.counters()
                r = client.post("/v1/messages", json=body)
                assert r.status_code == 200
                assert (b"event: message_stop" if stream else b"Mock reply to: hi") in r.content
                d = delta(before, gw.counters())
                assert (d["requests"], d.get("db_queries", 0), d.get("decryptions", 0), d["upstream_requests"]) == (
                    1, queries, decryptions, 1), model
    finally:
        gw.stop()


# --- exact invalidation: one test per write path -------------------------------------------------


@pytest.fixture
def two_users(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, caches="all"))
    alice = setup_user(gw.url, mock.url, "alice")
    bob = setup_user(gw.url, mock.url, "bob")
    for key in (alice, bob):  # warm every layer for both
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 200
        assert httpx.get(gw.url + "/v1/models", headers=h).status_code == 200
    yield gw, alice, bob
    gw.stop()


def assert_still_warm(gw, key):
    """Another user's entries survived the write: a chat and a model list cost nothing."""
    h = {"Authorization": f"Bearer {key}"}
    before = gw.counters()
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 200
    assert httpx.get(gw.url + "/v1/models", headers=h).status_code == 200
    d = delta(before, gw.counters())
    assert d.get("db_queries", 0) == 0 and d.get("decryptions", 0) == 0
    assert d.get("upstream_model_list_requests", 0) == 0


def test_user_update_seen_next_request(two_users):
    gw, alice, bob = two_users
    h = {"Authorization": f"Bearer {alice}"}
    assert httpx.get(gw.url + "/v1/users/me", headers=h).json()["name"] == "alice"
    assert httpx.patch(gw.url + "/v1/users/me", json={"name": "alice-2"}, headers=h).status_code == 200
    before = gw.counters()
    assert httpx.get(gw.url + "/v1/users/me", headers=h).json()["name"] == "alice-2"
    assert delta(before, gw.counters())["db_queries"] == 1  # exactly the user entry was dropped
    assert_still_warm(gw, bob)


def test_key_reset_refuses_old_key_at_once(two_users):
    gw, alice, bob = two_users
    r = httpx.post(gw.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {alice}"})
    new = r.json()["api_key"]
    assert new != alice
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    before = gw.counters()
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {new}"})
    assert r.status_code == 200
    assert costs(before, gw.counters())["db_queries"] == 1  # new key's user entry; service stayed warm
    assert_still_warm(gw, bob)


def test_a_scope_change_drops_exactly_that_keys_entry(two_users):
    gw, alice, bob = two_users
    first = scoped_key(gw.url, alice, ["openai"])
    other = scoped_key(gw.url, alice, ["openai", "groq"])
    ids = {}
    for key in (first, other):
        r = httpx.get(gw.url + "/v1/users/me/keys", headers={"Authorization": f"Bearer {alice}"})
        ids[key] = next(k["id"] for k in r.json()["data"] if k["key_prefix"] == key[:12])
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {key}"}).status_code == 200  # cached
    keys = (alice, bob, first, other)
    cache = gw.gw.auth.cache

    def cached():
        return {k for k in keys if cache.get(hash_key(k)) is not MISSING}

    assert cached() == set(keys)
    h = {"Authorization": f"Bearer {alice}"}
    before = gw.counters()
    renamed = httpx.patch(gw.url + f"/v1/users/me/keys/{ids[first]}", json={"name": "renamed"}, headers=h)
    assert renamed.status_code == 200
    assert cached() == set(keys) and "invalidations" not in delta(before, gw.counters())  # no entry holds a name
    assert httpx.patch(gw.url + f"/v1/users/me/keys/{ids[first]}", json={"providers": ["groq"]},
                       headers=h).status_code == 200
    assert cached() == {alice, bob, other}
    assert delta(before, gw.counters())["invalidations"] == 1
    before = gw.counters()
    r = httpx.post(gw.url + "/v1/chat/completions", json=dict(CHAT, model="groq/gpt-4o-mini"),
                   headers={"Authorization": f"Bearer {first}"})
    assert r.status_code == 200
    assert costs(before, gw.counters())["db_queries"] == 1  # its user entry alone; the service stayed warm
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT,
                      headers={"Authorization": f"Bearer {first}"}).status_code == 403
    assert httpx.delete(gw.url + f"/v1/users/me/keys/{ids[other]}", headers=h).status_code == 204
    assert cached() == {alice, bob, first}
    for key in (alice, bob):
        assert_still_warm(gw, key)


def test_user_delete(two_users):
    gw, alice, bob = two_users
    h = {"Authorization": f"Bearer {alice}"}
    assert httpx.delete(gw.url + "/v1/users/me", headers=h).status_code == 204
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 401
    assert len(gw.gw.services.cache) == 1  # only bob's service remains
    assert_still_warm(gw, bob)


def test_provider_key_add_update_delete(two_users, mock):
    gw, alice, bob = two_users
    h = {"Authorization": f"Bearer {alice}"}
    chat = dict(CHAT, model="extra/gpt-4o")
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=h).status_code == 404
    r = add_provider(gw.url, alice, provider="extra", api_key="sk-extra-1", base_url=mock.url + "/openai/v1")
    assert r.status_code == 201
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=h).status_code == 200
    ids = {m["id"] for m in httpx.get(gw.url + "/v1/models", headers=h).json()["data"]}
    assert "extra/gpt-4o" in ids
    assert_still_warm(gw, bob)

    # update: the mock refuses this key, so a stale (cached) old key would still answer 200
    r = httpx.put(gw.url + "/v1/provider-keys/extra", json={"api_key": "sk-invalid-now"}, headers=h)
    assert r.status_code == 200 and r.json()["base_url"] == mock.url + "/openai/v1"  # other fields kept
    r = httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=h)
    assert r.status_code == 502 and r.json()["error"]["code"] == "provider_auth_failed"
    assert_still_warm(gw, bob)

    assert httpx.delete(gw.url + "/v1/provider-keys/extra", headers=h).status_code == 204
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=h).status_code == 404
    ids = {m["id"] for m in httpx.get(gw.url + "/v1/models", headers=h).json()["data"]}
    assert not any(i.startswith("extra/") for i in ids)
    assert_still_warm(gw, bob)


def test_models_invalidation_is_per_user(two_users):
    gw, alice, bob = two_users
    sizes = len(gw.gw.models.cache)
    assert sizes == 2 * K
    add_provider(gw.url, alice, provider="more", api_key="sk-more", base_url="http://127.0.0.1:9/openai/v1")
    assert len(gw.gw.models.cache) == K  # alice's K entries dropped, bob's K kept


# --- coalescing and TTL ---------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [True, False])
def test_cold_burst_coalescing(tmp_path, coalesce):
    slow = MockProcess("--latency-ms", "200")
    gw = GatewayThread(settings_for(tmp_path, caches="all", coalesce=coalesce))
    try:
        key = setup_user(gw.url, slow.url)
        gw.gw.auth.cache.clear()
        gw.gw.services.cache.clear()
        gw.gw.tracer.reset()
        slow.reset()

        async def burst():
            async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {key}"},
                                         limits=httpx.Limits(max_connections=200), timeout=30) as c:
                return await asyncio.gather(*(c.get("/v1/models") for _ in range(200)))

        results = asyncio.run(burst())
        assert all(r.status_code == 200 for r in results)
        d = gw.counters()
        assert d["db_queries"] == 2  # 1 user query + 1 service query: SQLite loads cannot interleave
        assert d["decryptions"] == K
        if coalesce:
            assert d["upstream_model_list_requests"] == K
            assert slow.stats()["openai.models"] == K
            # every lookup either waited on the one load in flight or came after it and hit
            assert d["cache.models.hits"] + d["cache.models.misses"] == 200 * K
            assert d["cache.models.misses"] == K + d["coalesced_waits"]
            assert d["coalesced_waits"] > 0
        else:
            assert d["upstream_model_list_requests"] > K
    finally:
        gw.stop()
        slow.stop()


class Clock:
    now = 5000.0

    def __call__(self):
        return self.now


def test_ttl_expiry_with_fake_clock(mock, tmp_path):
    clock = Clock()
    gw = GatewayThread(settings_for(tmp_path, caches="all"), timer=clock)
    try:
        key = setup_user(gw.url, mock.url)
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 200

        def chat_cost():
            before = gw.counters()
            assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 200
            return delta(before, gw.counters()).get("db_queries", 0)

        clock.now += 299
        assert chat_cost() == 0
        clock.now += 2  # past the user TTL (300 s), within the service TTL (600 s)
        assert chat_cost() == 1
        clock.now += 299.5  # now 600.5 s after the service was built, 299.5 s after the user reload
        assert chat_cost() == 1  # only the service reloads
        t = gw.counters()
        assert t["cache.user.expirations"] >= 1 and t["cache.service.expirations"] >= 1
    finally:
        gw.stop()


def test_refresh_ahead_keeps_hot_entries_warm_off_the_requests_bill(mock, tmp_path):
    """With refresh-ahead, a request that reads an entry late in its life is served from cache
    (no miss, no DB read); the reload runs in the background and counts as background work."""
    clock = Clock()
    gw = GatewayThread(settings_for(tmp_path, caches="all", user_refresh_ahead=0.8, service_refresh_ahead=0.8,
                                    models_refresh_ahead=0.8), timer=clock)
    caches = (gw.gw.auth.cache, gw.gw.services.cache, gw.gw.models.cache)
    try:
        key = setup_user(gw.url, mock.url)
        h = {"Authorization": f"Bearer {key}"}

        def call(method: str, path: str, **kw) -> dict:
            """The counter deltas of one request and the refreshes it started, once they finished."""
            before = gw.counters()
            assert httpx.request(method, gw.url + path, headers=h, **kw).status_code == 200
            asyncio.run_coroutine_threadsafe(settle_refreshes(*caches), gw.loop).result(10)
            return delta(before, gw.counters())

        assert call("POST", "/v1/chat/completions", json=CHAT)["db_queries"] == 1  # the service (user: warm)
        assert call("GET", "/v1/models")["upstream_model_list_requests"] == K
        mock.reset()
        clock.now += 250  # past 80% of the user TTL (240 s)
        d = call("POST", "/v1/chat/completions", json=CHAT)
        assert (d["cache.user.hits"], d["cache.user.refreshes"], d["cache.user.refreshes_stored"]) == (1, 1, 1)
        assert d["db_background_queries"] == 1 and "db_queries" not in d and "cache.user.misses" not in d
        clock.now += 250  # 500 s: past the first user entry's TTL (300 s), past 80% of the service's (480 s)
        d = call("POST", "/v1/chat/completions", json=CHAT)
        assert "cache.user.misses" not in d and "cache.service.misses" not in d  # no synchronous reload
        assert d["cache.user.refreshes_stored"] == d["cache.service.refreshes_stored"] == 1
        assert (d["db_background_queries"], d["services_built"]) == (2, 1) and "db_queries" not in d
        t = gw.counters()
        assert t["cache.user.expirations"] == t["cache.service.expirations"] == 0
        assert t["cache.user.refreshes"] == t["cache.user.refreshes_stored"] == 2
        clock.now += 2500  # 3000 s: past 80% of the models TTL (2880 s)
        d = call("GET", "/v1/models")
        # Nobody read the user and service entries for 2500 s: they expired and reload, as without
        # refresh-ahead; the model lists, read late in their life, are refreshed instead.
        assert (d["cache.user.misses"], d["cache.service.misses"], d["db_queries"]) == (1, 1, 2)
        assert "cache.models.misses" not in d and "cache.models.expirations" not in d
        assert d["upstream_model_list_requests"] == d["cache.models.refreshes_stored"] == K
        assert mock.stats()["openai.models"] == K
        admin = {"Authorization": f"Bearer {ADMIN}"}
        snap = httpx.get(gw.url + "/_stats", headers=admin).json()["caches"]
        assert {layer: (snap[layer]["refreshes"], snap[layer]["refreshes_stored"], snap[layer]["refresh_failures"])
                for layer in ("user", "service", "models")} == {"user": (2, 2, 0), "service": (1, 1, 0),
                                                                 "models": (K, K, 0)}
        assert f'forge_cache_refreshes_stored_total{{layer="models"}} {float(K)}' in \
            httpx.get(gw.url + "/metrics", headers=admin).text
    finally:
        gw.stop()


def test_stats_and_metrics_report_caches(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, caches="user,service"))
    try:
        key = setup_user(gw.url, mock.url)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        httpx.delete(gw.url + "/_stats", headers=admin)
        gw.gw.auth.cache.clear()
        for _ in range(3):
            httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
        snap = httpx.get(gw.url + "/_stats", headers=admin).json()
        assert snap["caches_enabled"] == {"user": True, "service": True, "keys": False, "models": False,
                                          "adapters": False, "responses": False}
        assert snap["caches"]["user"]["hits"] == 2 and snap["caches"]["user"]["misses"] == 1
        assert snap["caches"]["user"]["hit_ratio"] == round(2 / 3, 4)
        metrics = httpx.get(gw.url + "/metrics", headers=admin).text
        assert 'forge_cache_hits_total{layer="user"} 2.0' in metrics
        assert "forge_requests_total" in metrics
        assert httpx.delete(gw.url + "/_stats", headers=admin).json()["counters"]["requests"] == 0
        assert httpx.get(gw.url + "/_stats").status_code == 403
    finally:
        gw.stop()


# --- the same costs on PostgreSQL ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["all", "none", "user,keys", "service,models"])
def test_exact_costs_on_postgres(spec, mock, tmp_path, pg_db):
    from forge_ref.settings import parse_layers

    layers = parse_layers(spec)
    gw = GatewayThread(settings_for(tmp_path, db=pg_db, caches=spec,
                                    encryption_key="8vJ8L6b3zC7n2D0p4Qm1Xk9sT5yW3aR6uE0hF2gI4jM="))
    try:
        key = setup_user(gw.url, mock.url)
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}) as client:
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert client.get("/v1/models").status_code == 200
            for _ in range(2):
                before = gw.counters()
                assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
                assert costs(before, gw.counters()) == {k: v for k, v in expected_chat(layers).items() if v}
                before = gw.counters()
                assert client.get("/v1/models").status_code == 200
                assert costs(before, gw.counters()) == {k: v for k, v in expected_models(layers).items() if v}
    finally:
        gw.stop()


def test_cold_burst_on_postgres_needs_coalescing(tmp_path, pg_db, mock):
    """On PostgreSQL a load awaits the network, so concurrent first requests would each query;
    single-flight makes 200 of them cost one user query and one service query."""
    gw = GatewayThread(settings_for(tmp_path, db=pg_db, caches="all",
                                    encryption_key="8vJ8L6b3zC7n2D0p4Qm1Xk9sT5yW3aR6uE0hF2gI4jM="))
    try:
        key = setup_user(gw.url, mock.url)
        gw.gw.auth.cache.clear()
        gw.gw.services.cache.clear()
        gw.gw.tracer.reset()

        async def burst():
            async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {key}"},
                                         limits=httpx.Limits(max_connections=200), timeout=30) as c:
                return await asyncio.gather(*(c.post("/v1/chat/completions", json=CHAT) for _ in range(200)))

        assert all(r.status_code == 200 for r in asyncio.run(burst()))
        d = gw.counters()
        assert (d["db_queries"], d["decryptions"], d["services_built"]) == (2, 1, 1)
    finally:
        gw.stop()
