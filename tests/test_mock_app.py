"""forge_mock.app and forge_mock.config: routes, ``/_mock/stats``, and the options of both entry points."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import anthropic
import httpx
import openai
import pytest
from mock_sdk import PROMPT, REPLY, FakeTime, ant, gem, in_process, oai
from support import MockProcess

from forge_mock.app import make_app
from forge_mock.config import MockConfig

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_stats_count_every_call(mock_url):
    assert httpx.delete(f"{mock_url}/_mock/stats").json()["total"] == 0
    o, a, g = oai(mock_url), ant(mock_url), gem(mock_url)
    msgs = [{"role": "user", "content": "hi"}]
    o.chat.completions.create(model="gpt-4o", messages=msgs)
    list(o.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    with pytest.raises(openai.InternalServerError):          # failures count too
        o.chat.completions.create(model="fail-500", messages=msgs)
    o.embeddings.create(model="text-embedding-3-small", input="x")
    o.models.list()
    o.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    o.images.generate(model="dall-e-2", prompt="x")
    o.images.edit(model="gpt-image-1", prompt="x", image=("a.png", b"png"))
    a.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=msgs)
    a.messages.count_tokens(model="claude-haiku-4-5", messages=msgs)
    with pytest.raises(anthropic.AuthenticationError):
        ant(mock_url, key="invalid").models.list()
    g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    list(g.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    g.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    httpx.post(f"{mock_url}/gemini/v1beta/models/text-embedding-004:embedContent?key=k",
               json={"content": {"parts": [{"text": "a"}]}})
    list(g.models.list())
    stats = httpx.get(f"{mock_url}/_mock/stats").json()
    assert stats == {"calls": {
        "openai.chat": 3, "openai.completions": 1, "openai.embeddings": 1, "openai.models": 1,
        "openai.images.generations": 1, "openai.images.edits": 1,
        "anthropic.messages": 1, "anthropic.count_tokens": 1, "anthropic.models": 1,
        "gemini.generateContent": 1, "gemini.streamGenerateContent": 1,
        "gemini.embedContent": 1, "gemini.batchEmbedContents": 1, "gemini.models": 1,
    }, "total": 16}
    httpx.delete(f"{mock_url}/_mock/stats")
    assert set(httpx.get(f"{mock_url}/_mock/stats").json()["calls"].values()) == {0}


def test_latency_and_chunk_options_through_the_gateway_cli():
    # `forge-ref mock-provider` hands its parsed flags straight to forge_mock.app.run.
    mock = MockProcess("--latency-ms", "150", "--chunks", "2", "--chunk-delay-ms", "100",
                       command=("-m", "forge_ref.cli", "mock-provider"))
    try:
        c = oai(mock.url)
        t0 = time.perf_counter()
        c.models.list()
        assert time.perf_counter() - t0 >= 0.15
        t0 = time.perf_counter()
        chunks = list(c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True))
        elapsed = time.perf_counter() - t0
        texts = [ch.choices[0].delta.content for ch in chunks[1:] if ch.choices[0].delta.content]
        assert len(texts) == 2 and "".join(texts) == REPLY
        assert elapsed >= 0.15 + 3 * 0.1   # latency + delays between the 4 frames before [DONE]
    finally:
        assert "Traceback" not in mock.stop()


def test_bad_options_are_usage_errors(capsys):
    from forge_mock.app import main
    from forge_ref.cli import parser

    args = parser().parse_args(["mock-provider", "--chunks", "0"])
    with pytest.raises(SystemExit, match="forge-ref mock-provider: --chunks and --tokens-per-chunk must be at least 1"):
        args.func(args)
    with pytest.raises(SystemExit) as e:
        main(["--latency-ms", "-1"])
    assert e.value.code == 2 and "cannot be negative" in capsys.readouterr().err


def test_the_gateway_runtime_never_imports_the_mock():
    # Every forge_ref module but the CLI (which runs the mock on request) imported in a fresh interpreter.
    code = ("import importlib, json, pkgutil, sys, forge_ref\n"
            "for m in pkgutil.walk_packages(forge_ref.__path__, 'forge_ref.'):\n"
            "    if m.name not in ('forge_ref.cli', 'forge_ref.__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print(json.dumps([n.split('.')[0] for n in sys.modules if n.startswith('forge_')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert loaded.count("forge_ref") > 20 and "forge_mock" not in loaded


# --------------------------------------------------------------------------
# The timing model, in-process on a fake clock: every delay is exact, none is waited for
# --------------------------------------------------------------------------

OPENAI = {"Authorization": "Bearer k1"}
ANTHROPIC = {"x-api-key": "k1", "anthropic-version": "2023-06-01"}
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
GENERATE = {"contents": [{"parts": [{"text": PROMPT}]}]}


def sse_data(r: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]


async def every_kind_of_call(c: httpx.AsyncClient) -> list[httpx.Response]:
    g = "/gemini/v1beta/models/gemini-2.5-flash"
    return [
        await c.post("/openai/v1/chat/completions", headers=OPENAI, json=CHAT),
        await c.post("/openai/v1/chat/completions", headers=OPENAI,
                     json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
        await c.post("/anthropic/v1/messages", headers=ANTHROPIC, json=MESSAGE),
        await c.post("/anthropic/v1/messages", headers=ANTHROPIC, json={**MESSAGE, "stream": True}),
        await c.post(f"{g}:generateContent?key=k1", json=GENERATE),
        await c.post(f"{g}:streamGenerateContent?alt=sse&key=k1", json=GENERATE),
        await c.post(f"{g}:streamGenerateContent?key=k1", json=GENERATE),
        await c.post("/openai/v1/embeddings", headers=OPENAI, json={"model": "e", "input": "x"}),
        await c.get("/openai/v1/models", headers=OPENAI),
        await c.get("/anthropic/v1/models", headers=ANTHROPIC),
        await c.get("/gemini/v1beta/models?key=k1"),
    ]


def test_with_delays_at_zero_no_timer_is_ever_created():
    t = FakeTime()
    responses = in_process(make_app(MockConfig(), clock=t.clock, sleep=t.sleep), every_kind_of_call)
    assert [r.status_code for r in responses] == [200] * 11
    assert t.sleeps == []


def test_latency_and_chunk_delay_without_the_timing_model_are_exactly_as_before():
    t = FakeTime()
    app = make_app(MockConfig(latency_ms=150, chunks=2, chunk_delay_ms=100), clock=t.clock, sleep=t.sleep)
    r = in_process(app, lambda c: c.post("/openai/v1/chat/completions", headers=OPENAI, json={**CHAT, "stream": True}))
    texts = [d["choices"][0]["delta"].get("content") for d in sse_data(r)]
    assert texts == ["", "Mock reply to: h", "ello mock world", None]   # role, 2 pieces, finish
    assert t.sleeps == [0.15, 0.1, 0.1, 0.1, 0.1]    # latency, then between the 5 frames ([DONE] too)


def test_the_timing_model_paces_every_api_and_usage_counts_what_was_streamed():
    # TTFT 0.2 s, 10 tokens/s, 7 tokens, 3 per chunk: chunks of 3, 3, 1 tokens due at 0.4, 0.7, 0.8 s.
    t = FakeTime()
    config = MockConfig(ttft_ms=200, token_rate=10, output_tokens=7, tokens_per_chunk=3)
    responses = in_process(make_app(config, clock=t.clock, sleep=t.sleep), every_kind_of_call)
    assert [r.status_code for r in responses] == [200] * 11
    whole, stream = [0.8], [0.4, 0.3, 0.1]
    assert t.sleeps == pytest.approx(whole + stream + whole + stream + whole + stream + whole)

    chat, chat_stream, message, message_stream, gen, gen_sse, gen_array = (r for r in responses[:7])
    reply = chat.json()["choices"][0]["message"]["content"]
    assert reply.startswith(REPLY + " ") and len(reply.split()) == 7 == chat.json()["usage"]["completion_tokens"]
    frames = sse_data(chat_stream)
    pieces = [f["choices"][0]["delta"]["content"] for f in frames[1:4]]
    assert [len(p.split()) for p in pieces] == [3, 3, 1] and "".join(pieces) == reply
    assert frames[-1]["usage"]["completion_tokens"] == 7 and frames[-1]["choices"] == []

    assert message.json()["usage"]["output_tokens"] == 7 and message.json()["content"][0]["text"] == reply
    events = sse_data(message_stream)
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(deltas) == reply and len(deltas) == 3
    assert [e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta"] == [7]

    assert gen.json()["usageMetadata"]["candidatesTokenCount"] == 7
    chunks = sse_data(gen_sse)
    assert "".join(ch["candidates"][0]["content"]["parts"][0]["text"] for ch in chunks) == reply
    assert len(chunks) == 3 and chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 7
    assert len(gen_array.json()) == 3


def test_model_listing_is_rate_limited_per_key_and_api_in_each_api_shape():
    t = FakeTime()
    app = make_app(MockConfig(models_rate_limit=2, models_rate_window=10), clock=t.clock, sleep=t.sleep)

    async def calls(c: httpx.AsyncClient):
        def oai_models(key="k1"):
            return c.get("/openai/v1/models", headers={"Authorization": f"Bearer {key}"})

        first = [(await oai_models()).status_code for _ in range(2)]
        refused = await oai_models()
        other_key = await oai_models("k2")
        ant = [await c.get("/anthropic/v1/models", headers=ANTHROPIC) for _ in range(3)]
        gem = [await c.get("/gemini/v1beta/models?key=k1") for _ in range(3)]
        t.now += 9.5
        still = await oai_models()
        t.now += 0.5                           # both of k1's calls were at 0: the window frees them
        again = [(await oai_models()).status_code for _ in range(3)]
        stats = (await c.get("/_mock/stats")).json()
        return first, refused, other_key, ant, gem, still, again, stats

    first, refused, other_key, ant, gem, still, again, stats = in_process(app, calls)
    assert first == [200, 200] and other_key.status_code == 200
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10"
    assert refused.json()["error"] == {
        "message": "Rate limit reached for model listing: 2 calls per 10 s per API key. Please try again in 10 s.",
        "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    assert [r.status_code for r in ant] == [200, 200, 429] and ant[2].headers["Retry-After"] == "10"
    assert ant[2].json()["type"] == "error" and ant[2].json()["error"]["type"] == "rate_limit_error"
    assert [r.status_code for r in gem] == [200, 200, 429] and gem[2].headers["Retry-After"] == "10"
    assert gem[2].json()["error"]["status"] == "RESOURCE_EXHAUSTED" and gem[2].json()["error"]["code"] == 429
    assert still.status_code == 429 and still.headers["Retry-After"] == "1"
    assert again == [200, 200, 429]
    calls = stats["calls"]
    assert (calls["openai.models"], calls["openai.models.429"]) == (8, 3)
    assert (calls["anthropic.models"], calls["anthropic.models.429"]) == (3, 1)
    assert (calls["gemini.models"], calls["gemini.models.429"]) == (3, 1)
    assert stats["total"] == 14 and t.sleeps == []      # refused calls are not requests twice


def test_deleting_the_stats_also_frees_the_rate_limit():
    """Between benchmark jobs: the calls of one must not rate-limit the next."""
    app = make_app(MockConfig(models_rate_limit=1, models_rate_window=60))

    async def calls(c: httpx.AsyncClient):
        def models():
            return c.get("/openai/v1/models", headers={"Authorization": "Bearer k1"})

        before = [(await models()).status_code for _ in range(2)]
        await c.delete("/_mock/stats")
        after = [(await models()).status_code for _ in range(2)]
        return before, after, (await c.get("/_mock/stats")).json()["calls"]

    before, after, stats = in_process(app, calls)
    assert before == [200, 429] and after == [200, 429]
    assert (stats["openai.models"], stats["openai.models.429"]) == (2, 1)


def test_model_list_latency_is_drawn_per_answered_call():
    t = FakeTime()
    app = make_app(MockConfig(models_latency_ms=(300, 800), seed=5), clock=t.clock, sleep=t.sleep)
    responses = in_process(app, lambda c: asyncio.gather(*[c.get("/gemini/v1beta/models?key=k") for _ in range(20)]))
    assert [r.status_code for r in responses] == [200] * 20
    assert len(t.sleeps) == 20 and all(0.3 <= s <= 0.8 for s in t.sleeps) and len(set(t.sleeps)) == 20
    t = FakeTime()
    app = make_app(MockConfig(models_latency_ms=500, models_rate_limit=1), clock=t.clock, sleep=t.sleep)
    in_process(app, lambda c: asyncio.gather(*[c.get("/gemini/v1beta/models?key=k") for _ in range(3)]))
    assert t.sleeps == [0.5]                    # the two refused calls answer at once


# --------------------------------------------------------------------------
# The timing model in a real process, through the CLI and the SDKs (wall clock, generous bounds)
# --------------------------------------------------------------------------

def test_timing_flags_through_the_cli_reach_config_and_the_sdks():
    mock = MockProcess("--ttft-ms", "100", "--token-rate", "200", "--output-tokens", "12", "--tokens-per-chunk", "5",
                       "--models-rate-limit", "1", "--seed", "3", command=("-m", "forge_ref.cli", "mock-provider"))
    try:
        config = httpx.get(mock.url + "/_mock/config").json()
        assert config == {
            "latency_ms": 0.0, "chunks": 4, "chunk_delay_ms": 0.0, "timing_model": True,
            "ttft_ms": {"distribution": "lognormal", "median": 100.0, "sigma": 0.0},
            "token_rate": {"distribution": "uniform", "low": 200.0, "high": 200.0},
            "output_tokens": {"distribution": "uniform", "low": 12, "high": 12}, "tokens_per_chunk": 5,
            "models_latency_ms": None,
            "models_rate_limit": {"calls": 1, "window_s": 60.0, "window": "sliding", "per": "API key and API"},
            "seed": 3}
        msgs = [{"role": "user", "content": PROMPT}]
        t0 = time.perf_counter()
        chunks = list(oai(mock.url).chat.completions.create(
            model="gpt-4o", messages=msgs, stream=True, stream_options={"include_usage": True}))
        elapsed = time.perf_counter() - t0
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert [len(x.split()) for x in texts] == [5, 5, 2]
        assert chunks[-1].usage.completion_tokens == 12 == len("".join(texts).split())
        assert 0.1 + 11 / 200 - 0.01 <= elapsed < 10          # TTFT + 11 tokens at 200/s
        with ant(mock.url).messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=msgs) as s:
            assert len(list(s.text_stream)) == 3 and s.get_final_message().usage.output_tokens == 12
        g = gem(mock.url)
        gchunks = list(g.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
        assert len(gchunks) == 3 and gchunks[-1].usage_metadata.candidates_token_count == 12
        o = oai(mock.url)
        o.models.list()
        with pytest.raises(openai.RateLimitError) as e:
            o.models.list()
        assert e.value.response.headers["retry-after"] in ("59", "60")
        assert mock.stats()["openai.models.429"] == 1
    finally:
        assert "Traceback" not in mock.stop()
