"""The requests every benchmark tool sends, as each target spells them."""

from __future__ import annotations

import json

from benchmarks import traffic


def test_each_target_kind_gets_its_path_and_model_names():
    assert traffic.kind("forge-ref-httpx") == "forge-ref" and traffic.kind("forge-ref-nodes") == "forge-ref"
    assert traffic.kind("bare-proxy-curl") == "bare-proxy" and traffic.kind("litellm") == "litellm"
    bodies = {}
    for target in ("forge-ref", "litellm", "mock-direct", "bare-proxy-httpx"):
        path, body = traffic.chat_request(target)
        bodies[target] = (path, json.loads(body)["model"])
    assert bodies == {"forge-ref": ("/v1/chat/completions", "openai/gpt-4o-mini"),
                      "litellm": ("/v1/chat/completions", "openai/gpt-4o-mini"),
                      "mock-direct": ("/openai/v1/chat/completions", "gpt-4o-mini"),
                      "bare-proxy-httpx": ("/v1/chat/completions", "gpt-4o-mini")}


def test_bodies_name_each_provider_and_carry_the_text():
    chat = json.loads(traffic.chat_body("anthropic", text="hi"))
    assert chat == {"model": "anthropic/claude-haiku-4-5", "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}]}
    assert json.loads(traffic.embeddings_body(routed=False)) == {"model": "text-embedding-3-small",
                                                                 "input": "embed this benchmark sentence"}
