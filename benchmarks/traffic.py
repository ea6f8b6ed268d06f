"""What a benchmark request looks like on each kind of target: path prefix, model names, bodies.

One definition for the locustfile's users and the runner's warm-ups and concurrency-1 probe, so
that every tool sends the same requests. mock-direct is the mock's own OpenAI prefix; targets
without routing (the mock, a bare proxy) take the bare upstream model name.
"""

from __future__ import annotations

import json

TARGETS = {
    "forge-ref": {"prefix": "", "routed": True},
    "mock-direct": {"prefix": "/openai", "routed": False},
    "bare-proxy": {"prefix": "", "routed": False},
    "litellm": {"prefix": "", "routed": True},
}
CHAT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
EMBEDDING_MODEL = "text-embedding-3-small"
CHAT_PATH = "/v1/chat/completions"


def kind(target: str) -> str:
    """The request kind of a job's target: ``forge-ref-httpx`` is a ``forge-ref``, ``bare-proxy-curl`` a
    ``bare-proxy``."""
    if target.startswith("bare-proxy"):
        return "bare-proxy"
    return target if target in TARGETS else "forge-ref"


def _model(provider: str, name: str, routed: bool) -> str:
    return f"{provider}/{name}" if routed else name


def chat_body(provider: str = "openai", *, routed: bool = True, text: str = "Say hello to the benchmark",
              model: str | None = None) -> bytes:
    """``model``: the exact model to ask for (your own gateway's ``provider/model``); default: the
    mock's model of ``provider``'s kind."""
    model = model or _model(provider, CHAT_MODELS[provider], routed)
    return json.dumps({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}).encode()


def embeddings_body(*, routed: bool = True, text: str = "embed this benchmark sentence") -> bytes:
    return json.dumps({"model": _model("openai", EMBEDDING_MODEL, routed), "input": text}).encode()


def chat_request(target: str) -> tuple[str, bytes]:
    """Path and body of one non-streaming chat as a job's target spells it."""
    spec = TARGETS[kind(target)]
    return spec["prefix"] + CHAT_PATH, chat_body(routed=spec["routed"])


# One function tool: what an agent's turns declare (the gateway passes it through; the mock calls it when asked).
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look a fact up", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def tool_turns(provider: str = "openai", *, routed: bool = True) -> tuple[bytes, bytes]:
    """The two short turns of one agent step: the question with the tools (the mock answers with a
    tool call), then the tool's result (the mock answers with text). Small ``max_tokens`` both."""
    model = _model(provider, CHAT_MODELS[provider], routed)
    ask = [{"role": "user", "content": "Find the answer with the lookup tool"}]
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "answer"}'}}
    result = [*ask, {"role": "assistant", "content": None, "tool_calls": [call]},
              {"role": "tool", "tool_call_id": "call_1", "content": "the answer is 42"}]
    return tuple(json.dumps({"model": model, "max_tokens": 16, "messages": m, "tools": TOOLS}).encode()
                 for m in (ask, result))
