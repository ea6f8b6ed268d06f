"""forge_mock.app and forge_mock.config: routes, ``/_mock/stats``, and the options of both entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import anthropic
import httpx
import openai
import pytest
from mock_sdk import PROMPT, REPLY, ant, gem, oai
from support import MockProcess

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
    a.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=msgs)
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
        "openai.chat": 3, "openai.embeddings": 1, "openai.models": 1,
        "anthropic.messages": 1, "anthropic.models": 1,
        "gemini.generateContent": 1, "gemini.streamGenerateContent": 1,
        "gemini.embedContent": 1, "gemini.batchEmbedContents": 1, "gemini.models": 1,
    }, "total": 12}
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
    with pytest.raises(SystemExit, match="forge-ref mock-provider: --chunks must be at least 1"):
        args.func(args)
    with pytest.raises(SystemExit) as e:
        main(["--latency-ms", "-1"])
    assert e.value.code == 2 and "delays cannot be negative" in capsys.readouterr().err


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
