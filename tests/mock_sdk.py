"""Shared by the mock provider's tests: the official SDKs pointed at a mock, what it answers, and
the mock served in-process on a fake clock.

Token counts are whitespace word counts: "hello mock world" is 3 prompt tokens and
"Mock reply to: hello mock world" is 6 completion tokens.
"""

from __future__ import annotations

import asyncio
import math
from typing import Awaitable, Callable, TypeVar

import anthropic
import httpx
import openai
from google import genai
from google.genai import types
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

PROMPT = "hello mock world"
REPLY = "Mock reply to: hello mock world"
TOOL_PROMPT = "please use the tool for cats"
TOOL_ARGS = {"query": TOOL_PROMPT}
T = TypeVar("T")


def oai(base: str, key: str = "sk-test", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/openai/v1", api_key=key, max_retries=0, **kw)


def ant(base: str, key: str = "sk-ant-test", **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0, **kw)


def gem(base: str, key: str = "g-test", timeout_ms: int | None = None) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=f"{base}/gemini", api_version="v1beta", timeout=timeout_ms,
        retry_options=types.HttpRetryOptions(attempts=1)))


OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Look up",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]
ANTHROPIC_TOOLS = [
    {"name": "lookup", "description": "Look up",
     "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "other", "input_schema": {"type": "object"}},
]
GEMINI_TOOLS = [types.Tool(function_declarations=[
    types.FunctionDeclaration(name="lookup", description="Look up", parameters=types.Schema(
        type="OBJECT", properties={"query": types.Schema(type="STRING")})),
    types.FunctionDeclaration(name="other", description="Other"),
])]


def cut_mid_body(exc: BaseException | None) -> bool:
    """The error chain holds the HTTP stack's 'incomplete body' error.

    Matched by name: the SDKs vendor different httpx flavours (httpx, httpx2).
    """
    while exc is not None:
        if type(exc).__name__ == "RemoteProtocolError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_unit(vec: list[float]) -> bool:
    return math.isclose(math.sqrt(sum(v * v for v in vec)), 1.0, rel_tol=1e-4)


class FakeTime:
    """A clock that moves only when the mock sleeps on it: delays become exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def in_process(app, requests: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Serve a ``forge_mock.app.make_app(...)`` on loopback for one ``requests(client)`` run."""

    async def main() -> T:
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sockets[0].getsockname()[1]}") as c:
                return await requests(c)
        finally:
            server.stop()

    return asyncio.run(main())
