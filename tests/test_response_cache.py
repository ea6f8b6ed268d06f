"""The ``responses`` layer end to end: real gateway on loopback, real mock, the real SDKs.

Opt-in and X-Forge-Cache, per-user entries, exact invalidation by provider-key writes (in process,
and across two nodes through Redis), replay of a kept answer as a stream and the reverse (text, tool
calls, finish_reason, usage), errors never kept, the bound in bytes, usage rows, /_stats and /metrics.
"""

from __future__ import annotations

import asyncio
import sqlite3

import anthropic
import httpx
import openai
import pytest
from support import ADMIN, GatewayThread, add_provider, create_user, delta, settings_for

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
OPT = {"Cache-Control": "max-age=600"}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def new_user(gw, mock_url, name="alice", **provider):
    key = create_user(gw.url, name)
    r = add_provider(gw.url, key, provider="openai", api_key="sk-resp-test", base_url=mock_url + "/openai/v1",
                     **provider)
    assert r.status_code == 201, r.text
    return key


@pytest.fixture
def gw(tmp_path):
    g = GatewayThread(settings_for(tmp_path, caches="all"))
    yield g
    g.stop()


def chat(gw, key, body=CHAT, **headers):
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **headers})


def upstream_calls(gw, fn):
    before = gw.counters()
    result = fn()
    return result, delta(before, gw.counters()).get("upstream_requests", 0)


def stats(gw) -> dict:
    return httpx.get(gw.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()


def test_opt_in_and_x_forge_cache(gw, mock):
    key = new_user(gw, mock.url)
    for _ in range(2):  # without an opt-in, never cached
        r, calls = upstream_calls(gw, lambda: chat(gw, key))
        assert (r.status_code, r.headers["X-Forge-Cache"], calls) == (200, "bypass", 1)
    r, calls = upstream_calls(gw, lambda: chat(gw, key, **OPT))
    assert (r.status_code, r.headers["X-Forge-Cache"], calls) == (200, "miss", 1)
    first = r.content
    r, calls = upstream_calls(gw, lambda: chat(gw, key, **OPT))
    assert (r.status_code, r.headers["X-Forge-Cache"], calls, r.content) == (200, "hit", 0, first)  # the bytes kept
    # no-cache: no look-up (bypass), but the fresh answer is kept; no-store: neither
    r, calls = upstream_calls(gw, lambda: chat(gw, key, **{"Cache-Control": "no-cache, max-age=600"}))
    assert (r.headers["X-Forge-Cache"], calls) == ("bypass", 1) and r.content != first
    fresh = r.content
    assert chat(gw, key, **OPT).content == fresh
    r, calls = upstream_calls(gw, lambda: chat(gw, key, **{"Cache-Control": "max-age=600, no-store"}))
    assert (r.headers["X-Forge-Cache"], calls) == ("bypass", 1)
    # the body's cache object, LiteLLM's spelling: taken out before the body goes upstream
    r, calls = upstream_calls(gw, lambda: chat(gw, key, dict(CHAT, cache={"ttl": 600})))
    assert (r.status_code, r.headers["X-Forge-Cache"], calls, r.content) == (200, "hit", 0, fresh)
    r = chat(gw, key, dict(CHAT, cache={"ttl": "soon"}))
    assert (r.status_code, r.json()["error"]["code"], r.headers["X-Forge-Cache"]) == (400, "invalid_cache", "bypass")
    # errors say it too: a wrong key, an unknown provider
    assert chat(gw, "forge-wrong", **OPT).headers["X-Forge-Cache"] == "bypass"
    assert chat(gw, key, dict(CHAT, model="nope/x"), **OPT).status_code == 404
    s = stats(gw)["caches"]["responses"]
    assert (s["hits"], s["misses"], s["size"]) == (3, 1, 1) and s["bytes"] > len(fresh)


def test_a_provider_keys_cache_ttl_opts_its_requests_in(gw, mock):
    key = new_user(gw, mock.url, cache_ttl=600)
    listed = httpx.get(gw.url + "/v1/provider-keys", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert listed[0]["cache_ttl"] == 600
    assert [chat(gw, key).headers["X-Forge-Cache"] for _ in range(2)] == ["miss", "hit"]
    assert chat(gw, key, **{"Cache-Control": "no-store"}).headers["X-Forge-Cache"] == "bypass"
    h = {"Authorization": f"Bearer {key}"}
    r = httpx.put(gw.url + "/v1/provider-keys/openai", json={"cache_ttl": None}, headers=h)
    assert r.status_code == 200 and "cache_ttl" not in r.json()
    assert chat(gw, key).headers["X-Forge-Cache"] == "bypass"
    r = httpx.put(gw.url + "/v1/provider-keys/openai", json={"cache_ttl": -5}, headers=h)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "cache_ttl")


def test_two_users_with_identical_requests_never_share_an_entry(gw, mock):
    alice, bob = new_user(gw, mock.url, "alice"), new_user(gw, mock.url, "bob")
    for key in (alice, bob):
        r, calls = upstream_calls(gw, lambda key=key: chat(gw, key, **OPT))
        assert (r.headers["X-Forge-Cache"], calls) == ("miss", 1)
    a, b = chat(gw, alice, **OPT), chat(gw, bob, **OPT)
    assert (a.headers["X-Forge-Cache"], b.headers["X-Forge-Cache"]) == ("hit", "hit")
    assert a.json()["id"] != b.json()["id"]  # each got the answer made for them
    assert len(gw.gw.responses.store) == 2


def test_a_provider_key_write_drops_exactly_that_users_entries(gw, mock):
    alice, bob = new_user(gw, mock.url, "alice"), new_user(gw, mock.url, "bob")
    bodies = [CHAT, dict(CHAT, messages=[{"role": "user", "content": "two"}])]
    for key in (alice, bob):
        for body in bodies:
            assert chat(gw, key, body, **OPT).headers["X-Forge-Cache"] == "miss"
    assert stats(gw)["caches"]["responses"]["size"] == 4
    h = {"Authorization": f"Bearer {alice}"}
    assert httpx.put(gw.url + "/v1/provider-keys/openai", json={"model_mapping": {"m": "gpt-4o"}},
                     headers=h).status_code == 200
    assert stats(gw)["caches"]["responses"]["size"] == 2  # alice's two, exactly
    assert [chat(gw, bob, body, **OPT).headers["X-Forge-Cache"] for body in bodies] == ["hit", "hit"]
    assert [chat(gw, alice, body, **OPT).headers["X-Forge-Cache"] for body in bodies] == ["miss", "miss"]
    # another provider key of alice's: added, then deleted; each drops her entries again
    assert add_provider(gw.url, alice, provider="groq", api_key="sk-groq-x", base_url=mock.url + "/openai/v1"
                        ).status_code == 201
    assert stats(gw)["caches"]["responses"]["size"] == 2
    assert chat(gw, alice, **OPT).headers["X-Forge-Cache"] == "miss"
    assert httpx.delete(gw.url + "/v1/provider-keys/groq", headers=h).status_code == 204
    assert chat(gw, alice, **OPT).headers["X-Forge-Cache"] == "miss"
    assert [chat(gw, bob, body, **OPT).headers["X-Forge-Cache"] for body in bodies] == ["hit", "hit"]


def collect(stream) -> dict:
    """What an OpenAI stream said: text, tool calls, finish_reason, usage."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                into = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                into["id"] = call.id or into["id"]
                into["name"] = (call.function and call.function.name) or into["name"]
                into["arguments"] += (call.function and call.function.arguments) or ""
            finish = choice.finish_reason or finish
    return {"text": text, "tool_calls": [calls[i] for i in sorted(calls)], "finish": finish,
            "usage": usage and usage.model_dump(exclude_none=True)}


def whole(completion) -> dict:
    message = completion.choices[0].message
    return {"text": message.content or "", "finish": completion.choices[0].finish_reason,
            "tool_calls": [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                           for c in message.tool_calls or ()],
            "usage": completion.usage.model_dump(exclude_none=True)}


@pytest.mark.parametrize("content, tools", [("say hi", None), ("use a tool please", TOOLS)], ids=["text", "tool"])
@pytest.mark.parametrize("first_stream", [True, False], ids=["stream-first", "answer-first"])
def test_a_kept_answer_replays_the_same_content_either_way(gw, mock, content, tools, first_stream):
    key = new_user(gw, mock.url)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, default_headers=OPT, max_retries=0)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    if tools:
        body["tools"] = tools

    def ask(stream: bool) -> tuple[dict, str]:
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                **body, stream=True, stream_options={"include_usage": True})
            return collect(raw.parse()), raw.headers["X-Forge-Cache"]
        raw = client.chat.completions.with_raw_response.create(**body)
        return whole(raw.parse()), raw.headers["X-Forge-Cache"]

    original, state = ask(first_stream)
    assert state == "miss"
    if tools:
        assert original["finish"] == "tool_calls" and original["tool_calls"][0]["name"] == "lookup"
        assert "use a tool please" in original["tool_calls"][0]["arguments"]
    else:
        assert original["finish"] == "stop" and "say hi" in original["text"]
    assert original["usage"]["completion_tokens"] > 0
    before = gw.counters()
    for stream in (True, False, True):
        assert ask(stream) == (original, "hit")
    assert delta(before, gw.counters()).get("upstream_requests", 0) == 0
    # without include_usage, a replayed stream has no usage chunk
    raw = client.chat.completions.with_raw_response.create(**body, stream=True)
    assert collect(raw.parse())["usage"] is None and raw.headers["X-Forge-Cache"] == "hit"


def test_errors_are_never_kept(gw, mock):
    key = new_user(gw, mock.url)
    for model, stream in (("fail-500", False), ("fail-429", False), ("drop-mid-stream", True), ("bad-json", True)):
        body = dict(CHAT, model=f"openai/{model}", stream=stream)
        for _ in range(2):
            r, calls = upstream_calls(gw, lambda body=body: chat(gw, key, body, **OPT))
            assert (r.headers["X-Forge-Cache"], calls) == ("miss", 1), model
            if stream:  # an error event, or the provider's broken frame passed on as it came
                assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
                assert b'"error"' in r.content or b"{not valid json" in r.content
            else:
                assert r.status_code in (429, 502)
    assert stats(gw)["caches"]["responses"]["size"] == 0


def test_the_bound_in_bytes_evicts(tmp_path, mock):
    gw = GatewayThread(settings_for(tmp_path, caches="all", responses_max_bytes=3000))
    try:
        key = new_user(gw, mock.url)
        bodies = [dict(CHAT, messages=[{"role": "user", "content": f"question {i}"}]) for i in range(4)]
        for body in bodies:
            assert chat(gw, key, body, **OPT).headers["X-Forge-Cache"] == "miss"
        s = stats(gw)["caches"]["responses"]
        assert s["evictions"] >= 1 and s["bytes"] <= 3000 and s["size"] == 4 - s["evictions"]
        assert chat(gw, key, bodies[-1], **OPT).headers["X-Forge-Cache"] == "hit"
        assert chat(gw, key, bodies[0], **OPT).headers["X-Forge-Cache"] == "miss"  # the least recently used went
    finally:
        gw.stop()


def test_usage_rows_hold_the_providers_tokens_once(gw, mock, tmp_path):
    key = new_user(gw, mock.url)
    for _ in range(3):
        assert chat(gw, key, **OPT).status_code == 200
    asyncio.run_coroutine_threadsafe(gw.gw.usage.flush(), gw.loop).result(5)
    rows = sqlite3.connect(tmp_path / "forge.db").execute(
        "SELECT status, prompt_tokens, completion_tokens FROM usage ORDER BY id").fetchall()
    assert rows[0][0] == 200 and rows[0][1] > 0 and rows[0][2] > 0  # the miss: what the provider billed
    assert rows[1:] == [(200, 0, 0), (200, 0, 0)]  # the hits: one row each, no tokens billed


def test_stats_and_metrics_show_the_layer(gw, mock):
    key = new_user(gw, mock.url)
    chat(gw, key, **OPT)
    chat(gw, key, **OPT)
    s = stats(gw)
    assert s["caches_enabled"]["responses"] is True
    # every layer's statistics (its refresh counters stay 0: answers are never refreshed ahead), plus bytes
    assert set(s["caches"]["responses"]) == {"hits", "misses", "evictions", "expirations", "size", "hit_ratio", "bytes",
                                             "refreshes", "refreshes_stored", "refreshes_discarded", "refresh_failures"}
    assert s["caches"]["responses"]["refreshes"] == 0
    assert s["caches"]["responses"]["hit_ratio"] == 0.5 and s["counters"]["dedup_joins"] == 0
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert 'forge_cache_hits_total{layer="responses"} 1.0' in metrics
    assert 'forge_cache_bytes{layer="responses"}' in metrics


def test_server_timing_names_the_layer(tmp_path, mock):
    gw = GatewayThread(settings_for(tmp_path, caches="all", server_timing=True))
    try:
        key = new_user(gw, mock.url)
        assert 'responses;desc="miss"' in chat(gw, key, **OPT).headers["Server-Timing"]
        timing = chat(gw, key, **OPT).headers["Server-Timing"]
        assert 'responses;desc="hit"' in timing and "upstream" not in timing
        assert "responses" not in chat(gw, key).headers["Server-Timing"]  # bypass: not looked up
    finally:
        gw.stop()


def test_layer_off_means_bypass(tmp_path, mock):
    gw = GatewayThread(settings_for(tmp_path, caches="user,service,keys,models,adapters"))
    try:
        key = new_user(gw, mock.url)
        for _ in range(2):
            r, calls = upstream_calls(gw, lambda: chat(gw, key, dict(CHAT, cache={"ttl": 60}), **OPT))
            assert (r.status_code, r.headers["X-Forge-Cache"], calls) == (200, "bypass", 1)
    finally:
        gw.stop()


# --- Anthropic's Messages API takes part, in its own shape ----------------------------------------


@pytest.mark.parametrize("kind, path, model", [("anthropic", "/anthropic", "anthropic/claude-haiku-4-5"),
                                               ("openai", "/openai/v1", "openai/gpt-4o-mini"),
                                               ("gemini", "/gemini", "gemini/gemini-2.5-flash")])
@pytest.mark.parametrize("first_stream", [True, False], ids=["stream-first", "answer-first"])
def test_messages_answers_are_kept_and_replayed_in_anthropics_shape(gw, mock, kind, path, model, first_stream):
    key = create_user(gw.url)
    assert add_provider(gw.url, key, provider=kind, kind=kind, api_key=f"sk-{kind}-x",
                        base_url=mock.url + path).status_code == 201
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, default_headers=OPT, max_retries=0)
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "use a tool now"}],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}

    def ask(stream: bool):
        if stream:
            with client.messages.stream(**body) as s:
                message = s.get_final_message()
        else:
            message = client.messages.create(**body)
        return message.model_dump()

    before = gw.counters()
    original = ask(first_stream)
    assert original["stop_reason"] == "tool_use" and original["content"][-1]["name"] == "lookup"
    assert original["usage"]["output_tokens"] > 0
    for stream in (True, False):
        assert ask(stream) == original
    assert delta(before, gw.counters())["upstream_requests"] == 1
    # chat and messages never share an entry, even for the same provider and model
    if kind == "openai":
        r = chat(gw, key, {"model": model, "messages": body["messages"], "tools": TOOLS}, **OPT)
        assert r.headers["X-Forge-Cache"] == "miss"


# --- across nodes: Redis --------------------------------------------------------------------------


def test_redis_shares_answers_and_a_write_drops_them_on_every_node(tmp_path, mock, redis_url, prefix):
    nodes = [GatewayThread(settings_for(tmp_path, caches="all", cache_backend="redis", redis_url=redis_url,
                                        redis_prefix=prefix)) for _ in range(2)]
    a, b = nodes
    try:
        alice, bob = new_user(a, mock.url, "alice"), new_user(a, mock.url, "bob")
        for key in (alice, bob):
            assert chat(a, key, **OPT).headers["X-Forge-Cache"] == "miss"
            r, calls = upstream_calls(b, lambda key=key: chat(b, key, **OPT))
            assert (r.headers["X-Forge-Cache"], calls) == ("hit", 0)  # the other node, from Redis
        assert httpx.put(a.url + "/v1/provider-keys/openai", json={"api_key": "sk-resp-test-2"},
                         headers={"Authorization": f"Bearer {alice}"}).status_code == 200
        assert chat(b, alice, **OPT).headers["X-Forge-Cache"] == "miss"
        assert chat(b, bob, **OPT).headers["X-Forge-Cache"] == "hit"
        assert chat(a, bob, **OPT).headers["X-Forge-Cache"] == "hit"
        assert chat(a, alice, **OPT).headers["X-Forge-Cache"] == "hit"  # b's new answer, shared
    finally:
        for node in nodes:
            node.stop()
