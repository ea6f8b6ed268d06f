"""Through forge-ref, the ``openai`` SDK against the anthropic and gemini mocks: plain, streaming
and tool calls; and a ``/v1/models`` that survives a provider being down."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from support import ADMIN, GatewayThread, MockProcess, add_provider, create_user, settings_for

TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "look something up",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


@pytest.fixture(scope="module")
def gateway(mock, tmp_path_factory):
    gw = GatewayThread(settings_for(tmp_path_factory.mktemp("providers"), models_timeout=1.0,
                                    models_failure_ttl=30.0))
    key = create_user(gw.url)
    for provider, kind, path in (("anthropic", "anthropic", "/anthropic"), ("gemini", "gemini", "/gemini"),
                                 ("openai", "openai", "/openai/v1")):
        r = add_provider(gw.url, key, provider=provider, kind=kind, api_key=f"key-{provider}",
                         base_url=mock.url + path)
        assert r.status_code == 201, r.text
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=10)
    yield gw, key, client
    gw.stop()


MODELS = ["anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash"]


@pytest.mark.parametrize("model", MODELS)
def test_chat(gateway, model):
    _, _, client = gateway
    r = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello from the sdk"}])
    assert "hello from the sdk" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.model == model
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streaming_with_usage(gateway, model):
    _, _, client = gateway
    chunks = list(client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream across providers"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream across providers" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_call(gateway, model):
    _, _, client = gateway
    r = client.chat.completions.create(model=model, tools=TOOLS,
                                       messages=[{"role": "user", "content": "please use a tool"}])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"query": "please use a tool"}
    # the tool result goes back in the next turn, translated to the provider's format
    r2 = client.chat.completions.create(model=model, tools=TOOLS, messages=[
        {"role": "user", "content": "please use a tool"},
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"answer": 42}'},
        {"role": "user", "content": "thanks, summarise"}])
    assert "thanks, summarise" in r2.choices[0].message.content


@pytest.mark.parametrize("model", MODELS)
def test_streaming_tool_call(gateway, model):
    _, _, client = gateway
    chunks = list(client.chat.completions.create(model=model, tools=TOOLS, stream=True,
                                                 messages=[{"role": "user", "content": "tool time"}]))
    args = "".join(tc.function.arguments or ""
                   for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or []))
    names = [tc.function.name for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])
             if tc.function.name]
    assert names == ["lookup"]
    assert json.loads(args) == {"query": "tool time"}


def test_gemini_embeddings(gateway):
    _, _, client = gateway
    r = client.embeddings.create(model="gemini/text-embedding-004", input=["one", "two"], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) > 0


def test_anthropic_embeddings_are_a_clear_400(gateway):
    _, _, client = gateway
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="anthropic/claude-haiku-4-5", input="x")
    assert "embeddings" in info.value.message


@pytest.mark.parametrize("model,exc,status", [
    ("anthropic/fail-429", openai.RateLimitError, 429),
    ("gemini/fail-500", openai.InternalServerError, 502),
])
def test_provider_errors(gateway, model, exc, status):
    _, _, client = gateway
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status


def test_models_list_all_kinds(gateway):
    _, _, client = gateway
    ids = {m.id for m in client.models.list()}
    assert {"anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash", "openai/gpt-4o-mini"} <= ids


# --- resilient model listing ---------------------------------------------------------------------


def test_models_survive_a_down_provider_with_negative_cache(mock, tmp_path):
    clockless = settings_for(tmp_path, models_timeout=1.0, models_failure_ttl=2.5, caches="all")
    gw = GatewayThread(clockless)
    try:
        key = create_user(gw.url)
        add_provider(gw.url, key, provider="openai", api_key="sk-ok", base_url=mock.url + "/openai/v1")
        add_provider(gw.url, key, provider="gemini", kind="gemini", api_key="g-ok", base_url=mock.url + "/gemini")
        # one provider hangs forever, one answers 500
        add_provider(gw.url, key, provider="anthropic", kind="anthropic", api_key="hang-forever",
                     base_url=mock.url + "/anthropic")
        add_provider(gw.url, key, provider="broken", api_key="fail-500-key", base_url=mock.url + "/openai/v1")
        mock.reset()
        h = {"Authorization": f"Bearer {key}"}
        started = time.monotonic()
        r = httpx.get(gw.url + "/v1/models", headers=h, timeout=10)
        elapsed = time.monotonic() - started
        assert r.status_code == 200
        ids = {m["id"] for m in r.json()["data"]}
        assert "openai/gpt-4o" in ids and "gemini/gemini-2.5-flash" in ids
        assert not any(i.startswith(("anthropic/", "broken/")) for i in ids)
        assert elapsed < 1.8  # within the per-provider timeout (1 s), not the hang
        for _ in range(5):  # within the failure TTL: no new attempts at the down providers
            assert httpx.get(gw.url + "/v1/models", headers=h, timeout=10).status_code == 200
        calls = mock.stats()
        assert calls["anthropic.models"] == 1
        assert calls["openai.models"] == 2  # one for "openai" (then cached), one for "broken"
        time.sleep(2.6)  # past the failure TTL: one new attempt each
        httpx.get(gw.url + "/v1/models", headers=h, timeout=10)
        calls = mock.stats()
        assert calls["anthropic.models"] == 2 and calls["openai.models"] == 3
    finally:
        gw.stop()


def test_models_concurrency_is_bounded(mock, tmp_path):
    slow = MockProcess("--latency-ms", "300")
    gw = GatewayThread(settings_for(tmp_path, models_concurrency=2, caches="none"))
    try:
        key = create_user(gw.url)
        for i in range(4):
            add_provider(gw.url, key, provider=f"p{i}", api_key="sk", base_url=slow.url + "/openai/v1")
        started = time.monotonic()
        r = httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        elapsed = time.monotonic() - started
        assert r.status_code == 200 and len(r.json()["data"]) == 4 * 3
        assert 0.6 <= elapsed < 1.2  # 4 calls of 300 ms, 2 at a time: two rounds
    finally:
        gw.stop()
        slow.stop()


def test_admin_stats_counts_model_list_calls(gateway):
    gw, key, _ = gateway
    admin = {"Authorization": f"Bearer {ADMIN}"}
    httpx.delete(gw.url + "/_stats", headers=admin)
    httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert httpx.get(gw.url + "/_stats", headers=admin).json()["counters"]["upstream_model_list_requests"] == 0
