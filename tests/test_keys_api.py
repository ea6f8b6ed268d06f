"""Scoped Forge keys (``keys_api``) on the real gateway against the real mock: a key is shown once,
a scope holds on every proxy endpoint before any upstream call, /v1/models lists only what a key
may use, and a new scope, a revoked key, a reset key take effect at once.

Elsewhere: their exact costs per cache layer and the exact invalidation of a scope change
(``test_cache_layers.py``), revocation under load in every process (``test_security.py``), the
Redis entry (``test_redis.py``), the store (``test_store.py``).
"""

from __future__ import annotations

import httpx
import pytest
from support import GatewayThread, add_provider, create_user, delta, settings_for

CHAT = {"messages": [{"role": "user", "content": "hello keys"}]}


class Client:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def call(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {self.key}"}, timeout=10,
                             **kw)

    def chat(self, model: str, **kw) -> httpx.Response:
        return self.call("POST", "/v1/chat/completions", json=dict(CHAT, model=model, **kw))


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    g = GatewayThread(settings_for(tmp_path_factory.mktemp("keys")))
    yield g
    g.stop()


@pytest.fixture
def alice(gw, mock):
    """A fresh user with three providers (openai with an alias), and its unscoped first key."""
    key = create_user(gw.url, "alice")
    for provider, kind, path, mapping in (("openai", "openai", "/openai/v1", {"fast": "gpt-4o-mini"}),
                                          ("groq", "openai", "/openai/v1", {"quick": "llama"}),
                                          ("claude", "anthropic", "/anthropic", {})):
        assert add_provider(gw.url, key, provider=provider, kind=kind, api_key=f"sk-{provider}-0123456789",
                            base_url=mock.url + path, model_mapping=mapping).status_code == 201
    return Client(gw.url, key)


def scoped(owner: Client, providers, name: str = "scoped") -> tuple[Client, dict]:
    r = owner.call("POST", "/v1/users/me/keys", json={"name": name, "providers": providers})
    assert r.status_code == 201, r.text
    return Client(owner.url, r.json()["key"]), r.json()


def test_a_key_is_shown_once_and_listed_by_its_prefix_only(alice):
    key, made = scoped(alice, ["openai", "OpenAI", "groq"], name="ci")
    assert set(made) == {"id", "name", "key", "key_prefix", "providers", "created_at"}
    assert (made["name"], made["providers"], made["key_prefix"]) == ("ci", ["groq", "openai"], key.key[:12])
    assert key.key.startswith("forge-") and key.key != alice.key
    listing = alice.call("GET", "/v1/users/me/keys")
    assert listing.status_code == 200 and key.key not in listing.text and alice.key not in listing.text
    assert [(k["name"], k["providers"], k["key_prefix"]) for k in listing.json()["data"]] == [
        ("default", None, alice.key[:12]), ("ci", ["groq", "openai"], key.key[:12])]
    assert all("key" not in k for k in listing.json()["data"])
    me = key.call("GET", "/v1/users/me").json()  # the same user, seen through this key
    assert me == {"id": alice.call("GET", "/v1/users/me").json()["id"], "name": "alice", "key_prefix": key.key[:12]}


def test_a_scope_refuses_other_providers_on_every_proxy_endpoint_before_any_call(gw, alice, mock):
    key, _ = scoped(alice, ["openai"])
    assert key.chat("openai/gpt-4o-mini").status_code == 200
    assert key.chat("fast").status_code == 200  # an alias of an allowed provider
    mock.reset()
    before = gw.counters()
    refused = [key.chat("groq/llama"), key.chat("quick"), key.chat("claude/claude-haiku-4-5", stream=True),
               key.chat("GROQ/llama"), key.call("POST", "/v1/embeddings", json={"model": "groq/emb", "input": "x"})]
    for r, provider in zip(refused, ["groq", "groq", "claude", "groq", "groq"]):
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/json")
        assert r.json() == {"error": {"message": f"this key may not use provider {provider!r}",
                                      "type": "permission_error", "param": "model", "code": "provider_not_allowed"}}
    d = delta(before, gw.counters())
    assert (d["requests"], d.get("upstream_requests", 0), d.get("decryptions", 0)) == (5, 0, 0)
    assert sum(mock.stats().values()) == 0
    assert alice.chat("groq/llama").status_code == 200  # the unscoped key still has them all


def test_models_lists_and_fetches_only_what_the_key_may_use(gw, alice, mock):
    key, _ = scoped(alice, ["openai", "claude"])
    gw.gw.models.cache.clear()
    before = gw.counters()
    ids = {m["id"] for m in key.call("GET", "/v1/models").json()["data"]}
    assert "openai/gpt-4o-mini" in ids and "fast" in ids and any(i.startswith("claude/") for i in ids)
    assert not any(i.startswith("groq/") for i in ids) and "quick" not in ids
    assert delta(before, gw.counters())["upstream_model_list_requests"] == 2  # not groq's list
    none, _ = scoped(alice, [], name="none")
    assert none.call("GET", "/v1/models").json()["data"] == []
    all_ids = {m["id"] for m in alice.call("GET", "/v1/models").json()["data"]}
    assert all_ids > ids and "quick" in all_ids


def test_a_new_scope_and_a_revoked_key_hold_at_once(gw, alice):
    key, made = scoped(alice, ["openai"])
    path = f"/v1/users/me/keys/{made['id']}"
    assert key.chat("openai/gpt-4o-mini").status_code == 200  # cached with its scope
    r = alice.call("PATCH", path, json={"providers": ["groq"]})
    assert r.status_code == 200 and r.json()["providers"] == ["groq"] and "key" not in r.json()
    assert key.chat("openai/gpt-4o-mini").status_code == 403
    assert key.chat("groq/llama").status_code == 200
    assert alice.call("PATCH", path, json={"providers": None}).json()["providers"] is None
    assert key.chat("claude/claude-haiku-4-5").status_code == 200
    before = gw.counters()
    assert alice.call("PATCH", path, json={"name": "renamed"}).json()["name"] == "renamed"
    assert key.chat("openai/gpt-4o-mini").status_code == 200
    d = delta(before, gw.counters())  # no cache holds a key's name: nothing was dropped, the chat stayed warm
    assert (d.get("invalidations", 0), d.get("db_queries", 0), d["db_writes"]) == (0, 0, 1)
    assert alice.call("DELETE", path).status_code == 204
    r = key.chat("openai/gpt-4o-mini")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert alice.call("DELETE", path).json()["error"]["code"] == "key_not_found"
    assert alice.chat("openai/gpt-4o-mini").status_code == 200


def test_a_scoped_key_uses_and_reads_but_does_not_manage(alice):
    key, made = scoped(alice, ["openai"])
    for method, path, body in [("POST", "/v1/users/me/keys", {"name": "wider"}),
                               ("PATCH", f"/v1/users/me/keys/{made['id']}", {"providers": None}),
                               ("DELETE", f"/v1/users/me/keys/{made['id']}", None),
                               ("POST", "/v1/provider-keys", {"provider": "x", "api_key": "sk-x-0123456789",
                                                              "base_url": "http://127.0.0.1:9/v1"}),
                               ("PUT", "/v1/provider-keys/openai", {"base_url": "http://127.0.0.1:9/v1"}),
                               ("DELETE", "/v1/provider-keys/groq", None),
                               ("PATCH", "/v1/users/me", {"name": "mallory"}),
                               ("DELETE", "/v1/users/me", None)]:
        r = key.call(method, path, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "scoped_key", (method, path)
    for path in ("/v1/users/me", "/v1/users/me/keys", "/v1/provider-keys", "/v1/usage", "/v1/models"):
        assert key.call("GET", path).status_code == 200, path
    assert key.chat("openai/gpt-4o-mini").status_code == 200  # nothing above changed anything


def test_reset_key_renews_the_calling_key_and_keeps_its_scope(alice):
    key, made = scoped(alice, ["openai"])
    r = key.call("POST", "/v1/users/me/reset-key")
    assert r.status_code == 200
    new = Client(alice.url, r.json()["api_key"])
    assert r.json()["key_prefix"] == new.key[:12] and r.json()["name"] == "alice"
    assert key.chat("openai/gpt-4o-mini").status_code == 401
    assert new.chat("openai/gpt-4o-mini").status_code == 200 and new.chat("groq/llama").status_code == 403
    assert alice.chat("groq/llama").status_code == 200  # the other keys are untouched
    listed = {k["id"]: k for k in alice.call("GET", "/v1/users/me/keys").json()["data"]}
    assert (listed[made["id"]]["key_prefix"], listed[made["id"]]["providers"]) == (new.key[:12], ["openai"])


def test_another_users_key_or_an_odd_id_is_not_found(gw, alice):
    bob = Client(gw.url, create_user(gw.url, "bob"))
    _, made = scoped(bob, None)
    for key_id in (made["id"], "abc", "99999999999999999999999", "-1", "0"):
        for method, body in (("PATCH", {"name": "mine"}), ("DELETE", None)):
            r = alice.call(method, f"/v1/users/me/keys/{key_id}", json=body)
            assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found", (key_id, r.text)


@pytest.mark.parametrize(("body", "code"), [({"name": "x", "providers": "openai"}, "invalid_value"),
                                            ({"providers": ["openai"]}, "missing_field"),
                                            ({"name": "x", "scope": ["openai"]}, "unknown_field")])
def test_bad_bodies_are_400(alice, body, code):
    r = alice.call("POST", "/v1/users/me/keys", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_a_rename_and_a_deleted_user_reach_every_key(gw, alice):
    key, _ = scoped(alice, ["openai"])
    assert key.call("GET", "/v1/users/me").json()["name"] == "alice"  # cached under this key too
    assert alice.call("PATCH", "/v1/users/me", json={"name": "alice-2"}).status_code == 200
    assert key.call("GET", "/v1/users/me").json()["name"] == "alice-2"
    assert key.chat("openai/gpt-4o-mini").status_code == 200
    assert alice.call("DELETE", "/v1/users/me").status_code == 204
    for client in (alice, key):
        assert client.chat("openai/gpt-4o-mini").status_code == 401
