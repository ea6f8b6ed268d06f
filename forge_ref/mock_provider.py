"""Fast fake upstream speaking the OpenAI, Anthropic and Gemini wire formats.

One Tornado app, one port, one prefix per API, so that each provider's
official SDK can use the prefix as its ``base_url``:

    openai     http://HOST:PORT/openai/v1   chat/completions, embeddings, models
    anthropic  http://HOST:PORT/anthropic   /v1/messages, /v1/models
    gemini     http://HOST:PORT/gemini      /v1beta/models[/{m}:{method}]

Behaviour is driven by the request itself (no per-test setup):
  * reply text is ``"Mock reply to: <last user text>"``; token counts are
    whitespace word counts (prompt = all message text, completion = reply);
  * if tools are offered and the last user message contains "tool", the reply
    is a call to the first tool with arguments ``{"query": <last user text>}``;
  * a model name OR an API key starting with ``fail-500``, ``fail-429``,
    ``hang``, ``drop-mid-stream`` or ``bad-json`` injects that fault; keys
    ``invalid`` / ``sk-invalid...`` are rejected with 401.

``GET /_mock/stats`` returns per-endpoint call counts, ``DELETE`` resets them.

The hot path is kept lean on purpose (benchmarks push thousands of req/s
through it on one core): orjson, pre-serialised constant bodies, no access
log, no etag hashing, no sleeping when delays are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import math
import struct
import sys
import time
from functools import lru_cache
from typing import Any

import orjson
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

STAT_KEYS = (
    "openai.chat", "openai.embeddings", "openai.models",
    "anthropic.messages", "anthropic.models",
    "gemini.generateContent", "gemini.streamGenerateContent",
    "gemini.embedContent", "gemini.batchEmbedContents", "gemini.models",
)
FAULTS = ("fail-500", "fail-429", "hang", "drop-mid-stream", "bad-json")
SHAPE_FAULTS = ("drop-mid-stream", "bad-json")  # their form depends on streaming
HANG_SECONDS = 3600.0
DEFAULT_EMBED_DIM = 8
RETRY_AFTER = "7"
BAD_JSON = b'{"id": "mock", "choices": [ this is {not valid json'
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
JSON_CT = "application/json"
# Wrong field types in a parseable body surface as these: answered as 400.
MALFORMED = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _fault_of(value: str | None) -> str | None:
    """Fault named by a model name or API key prefix (None for normal)."""
    if value:
        for fault in FAULTS:
            if value.startswith(fault):
                return fault
    return None


def _words(text: str) -> int:
    return len(text.split())


def _parts_text(content: Any) -> str:
    """Text of a message content: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)
        return " ".join(out)
    return ""


def _split(text: str, n: int) -> list[str]:
    """Split text into at most n non-empty pieces that join back to text."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _scan(turns: Any, system: Any = None) -> tuple[int, str, bool]:
    """One pass over (is_user, content, is_tool_result) turns.

    Returns the prompt word count (system text included), the last user text,
    and whether the conversation ends with a plain user turn: only then may the
    mock call a tool, so an agent loop feeding results back gets a text answer.
    """
    words, user_text, ends_user = _words(_parts_text(system)), "", False
    for is_user, content, tool_result in turns:
        text = _parts_text(content)
        words += _words(text)
        ends_user = is_user and not tool_result
        if is_user and text:
            user_text = text
    return words, user_text, ends_user


def _answer(user_text: str, tool: str | None) -> tuple[str, int]:
    """Reply text (or the tool-call arguments JSON) and its output token count."""
    out = orjson.dumps({"query": user_text}).decode() if tool else "Mock reply to: " + user_text
    return out, _words(out)


def _wants_tool(ends_user: bool, user_text: str, tools: Any) -> bool:
    return bool(tools) and ends_user and "tool" in user_text.lower()


@lru_cache(maxsize=8192)
def _embedding(text: str, dim: int) -> tuple[float, ...]:
    """Deterministic unit vector from a hash of the text (no semantics)."""
    data = text.encode()
    raw = bytearray()
    block = 0
    while len(raw) < dim:
        raw += hashlib.blake2b(data, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        block += 1
    vals = [(b - 127.5) / 127.5 for b in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    return tuple(v / norm for v in vals)


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _sse_event(event: bytes, obj: Any) -> bytes:
    return b"event: " + event + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# --------------------------------------------------------------------------
# Shared handler machinery
# --------------------------------------------------------------------------

class MockApp(tornado.web.Application):
    """Application carrying the mock's config and counters."""

    def __init__(self, handlers, *, latency_ms: float, chunks: int, chunk_delay_ms: float):
        super().__init__(handlers, log_function=_no_log, compress_response=False)
        self.latency_s = max(0.0, latency_ms) / 1000.0
        self.chunks = max(1, int(chunks))
        self.chunk_delay_s = max(0.0, chunk_delay_ms) / 1000.0
        self.calls = dict.fromkeys(STAT_KEYS, 0)
        self.ids = itertools.count(1)


def _no_log(handler: tornado.web.RequestHandler) -> None:
    """Access logging off: per-request log lines cost more than the request."""


class _Api(tornado.web.RequestHandler):
    """Base for the three APIs: auth, faults, error shapes, SSE writing."""

    application: MockApp
    stat = ""                 # stats key, set per route via initialize()
    key_fault: str | None = None
    _hang_future: asyncio.Future | None = None
    # Handlers that call model_fault() take a key's drop-mid-stream / bad-json
    # there, once they know whether the request streams.
    DEFER_SHAPE_FAULTS = False

    def initialize(self, stat: str = "") -> None:
        self.stat = stat

    def compute_etag(self) -> None:  # skip hashing every GET body
        return None

    def on_connection_close(self) -> None:
        fut = self._hang_future
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- per-API hooks ------------------------------------------------------
    def api_key(self) -> str | None:
        raise NotImplementedError

    def error(self, status: int, message: str, param: str | None = None,
              code: str | None = None) -> None:
        raise NotImplementedError

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Parseable JSON with wrong field types lands here: answer 400 in the
        # API's own shape (as the real APIs do) rather than Tornado's HTML page.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MALFORMED):
            self.error(400, f"Invalid request: {exc}")
        else:
            self.error(status_code, self._reason)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, MALFORMED):
            super().log_exception(typ, value, tb)

    def check_headers(self) -> bool:
        """Extra header checks after the key (Anthropic's version header)."""
        return True

    # -- common flow ----------------------------------------------------------
    async def begin(self) -> bool:
        """Count, add latency, check auth and key faults. False = answered."""
        app = self.application
        if self.stat:
            app.calls[self.stat] += 1
        if app.latency_s:
            await asyncio.sleep(app.latency_s)
        key = self.api_key()
        if not key:
            self.error(401, self.MISSING_KEY)
            return False
        if key == "invalid" or key.startswith("sk-invalid"):
            self.error(401, self.INVALID_KEY)
            return False
        if not self.check_headers():
            return False
        fault = self.key_fault = _fault_of(key)
        if fault is not None and not (self.DEFER_SHAPE_FAULTS and fault in SHAPE_FAULTS):
            await self.fault(fault, streaming=False)
            return False
        return True

    def body_json(self) -> dict | None:
        try:
            body = orjson.loads(self.request.body)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.error(400, self.BAD_BODY)
            return None
        return body

    def send_json(self, body: bytes, status: int = 200) -> None:
        if status != 200:
            self.set_status(status)
        self.set_header("Content-Type", JSON_CT)
        self.finish(body)

    async def fault(self, fault: str, streaming: bool, frames: list[bytes] | None = None,
                    drop_at: int = 2) -> None:
        if fault == "fail-500":
            self.error(500, self.SERVER_ERROR)
        elif fault == "fail-429":
            self.set_header("Retry-After", RETRY_AFTER)
            self.error(429, self.RATE_LIMIT)
        elif fault == "hang":
            await self.hang()
        elif fault == "drop-mid-stream":
            if streaming and frames:
                await self.send_sse(frames[:drop_at], drop=True)
            else:
                self.abort_connection()
        elif fault == "bad-json":
            if streaming:
                self.set_header("Content-Type", "text/event-stream")
                self.finish(self.BAD_SSE)
            else:
                self.send_json(BAD_JSON)

    async def model_fault(self, model: str, frames: list[bytes] | None = None,
                          drop_at: int = 2) -> bool:
        """Inject the fault named by the key or model, if any. True = answered."""
        fault = self.key_fault or _fault_of(model)
        if fault is None:
            return False
        await self.fault(fault, frames is not None, frames, drop_at)
        return True

    async def hang(self) -> None:
        """Never answer; ends when the client goes away (or after an hour)."""
        fut = self._hang_future = asyncio.get_running_loop().create_future()
        if self.request.connection.stream.closed():  # type: ignore[attr-defined]
            fut.set_result(None)
        try:
            await asyncio.wait_for(fut, HANG_SECONDS)
        except asyncio.TimeoutError:
            pass
        self.abort_connection()

    def abort_connection(self) -> None:
        """Close the socket with no (further) response bytes."""
        self.request.connection.close()  # type: ignore[attr-defined]
        self._finished = True  # stop Tornado's auto-finish writing to a dead socket

    async def send_sse(self, frames: list[bytes], drop: bool = False) -> None:
        """Write SSE frames, flushing each; optionally cut the socket after."""
        for name, value in SSE_HEADERS.items():
            self.set_header(name, value)
        # Without TCP_NODELAY, Nagle holds every frame after the first until the stream ends on a
        # reused keep-alive connection (Tornado resets it between requests: set it per request).
        self.request.connection.stream.set_nodelay(True)
        delay = self.application.chunk_delay_s
        try:
            for i, frame in enumerate(frames):
                if delay and i:
                    await asyncio.sleep(delay)
                self.write(frame)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            self._finished = True
            return
        if drop:
            self.abort_connection()
        else:
            self.finish()

    def next_id(self) -> int:
        return next(self.application.ids)


class _NotFound(_Api):
    """Unknown path under an API prefix: 404 in that API's shape (auth first)."""

    async def _any(self, *_: Any) -> None:
        if await self.begin():
            self.error(404, "Not found: " + self.request.path)

    get = post = put = delete = patch = _any


# --------------------------------------------------------------------------
# OpenAI  (/openai/v1)
# --------------------------------------------------------------------------

OPENAI_MODELS = orjson.dumps({"object": "list", "data": [
    {"id": m, "object": "model", "created": 1715367049, "owned_by": "mock"}
    for m in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")]})
OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                404: "invalid_request_error", 429: "requests", 500: "server_error"}
OPENAI_CODES = {401: "invalid_api_key", 404: "unknown_url", 429: "rate_limit_exceeded"}


class _OpenAI(_Api):
    MISSING_KEY = ("You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    INVALID_KEY = "Incorrect API key provided."
    BAD_BODY = "We could not parse the JSON body of your request."
    SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
    RATE_LIMIT = "Rate limit reached for requests. Please try again in 7s."
    BAD_SSE = b"data: {not valid json\n\ndata: [DONE]\n\n"

    def api_key(self) -> str | None:
        auth = self.request.headers.get("Authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    def error(self, status: int, message: str, param: str | None = None,
              code: str | None = None) -> None:
        if code is None and message is not self.MISSING_KEY:
            code = OPENAI_CODES.get(status)
        self.send_json(orjson.dumps({"error": {
            "message": message, "type": OPENAI_TYPES.get(status, "api_error"),
            "param": param, "code": code}}), status)

    def require(self, body: dict, *fields: str) -> bool:
        for f in fields:
            if body.get(f) is None:
                self.error(400, f"Missing required parameter: '{f}'.", f,
                           "missing_required_parameter")
                return False
        return True


class OpenAIModels(_OpenAI):
    async def get(self) -> None:
        if await self.begin():
            self.send_json(OPENAI_MODELS)


class OpenAIChat(_OpenAI):
    DEFER_SHAPE_FAULTS = True

    async def post(self) -> None:
        if not await self.begin():
            return
        body = self.body_json()
        if body is None or not self.require(body, "model", "messages"):
            return
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            self.error(400, "'messages' must be a non-empty array.", "messages")
            return
        model = str(body["model"])
        stream = bool(body.get("stream"))

        prompt_words, user_text, ends_user = _scan(
            (m.get("role") == "user", m.get("content"), False)
            for m in messages if isinstance(m, dict))
        tools, tool = body.get("tools"), None
        if _wants_tool(ends_user, user_text, tools) and body.get("tool_choice") != "none":
            tool = (tools[0].get("function") or {}).get("name")
        text, completion = _answer(user_text, tool)
        n = self.next_id()
        cid, created = f"chatcmpl-mock-{n}", int(time.time())
        usage = {"prompt_tokens": prompt_words, "completion_tokens": completion,
                 "total_tokens": prompt_words + completion}
        call = {"id": f"call_mock_{n}", "type": "function",
                "function": {"name": tool, "arguments": text}}

        if not stream:
            if await self.model_fault(model):
                return
            message = ({"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
                       if tool else {"role": "assistant", "content": text, "refusal": None})
            self.send_json(orjson.dumps({
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if tool else "stop"}],
                "usage": usage, "system_fingerprint": "fp_mock"}))
            return

        # Role chunk, delta chunks, finish chunk, [usage chunk], [DONE].
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict | None, finish: str | None = None) -> bytes:
            c = {"id": cid, "object": "chat.completion.chunk", "created": created,
                 "model": model, "system_fingerprint": "fp_mock",
                 "choices": [] if delta is None else [
                     {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:  # the real API puts "usage": null on every chunk then
                c["usage"] = usage if delta is None else None
            return _sse(c)

        if tool:
            call["index"], call["function"] = 0, {"name": tool, "arguments": ""}
            frames = [chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
            frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                       for p in _split(text, 2)]
        else:
            frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
            frames += [chunk({"content": p}) for p in _split(text, self.application.chunks)]
        frames.append(chunk({}, "tool_calls" if tool else "stop"))
        if include_usage:
            frames.append(chunk(None))
        frames.append(b"data: [DONE]\n\n")
        if not await self.model_fault(model, frames, drop_at=3):
            await self.send_sse(frames)


class OpenAIEmbeddings(_OpenAI):
    DEFER_SHAPE_FAULTS = True

    async def post(self) -> None:
        if not await self.begin():
            return
        body = self.body_json()
        if body is None or not self.require(body, "model", "input"):
            return
        model = str(body["model"])
        dim = body.get("dimensions") or DEFAULT_EMBED_DIM
        if not isinstance(dim, int) or dim < 1 or dim > 8192:
            self.error(400, "Invalid value for 'dimensions'.", "dimensions")
            return
        inp = body["input"]
        # input: str | list[str] | list[int] (one token array) | list[list[int]]
        if isinstance(inp, str):
            texts = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp):
            texts = [" ".join(map(str, inp))]
        elif isinstance(inp, list) and inp:
            texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in inp]
        else:
            self.error(400, "'input' must be a non-empty string or array.", "input")
            return
        if await self.model_fault(model):
            return
        b64 = body.get("encoding_format") == "base64"  # the Python SDK's default!
        data, tokens = [], 0
        for i, text in enumerate(texts):
            vec = _embedding(text, dim)
            tokens += _words(text)
            emb: Any = (base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
                        if b64 else vec)
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self.send_json(orjson.dumps({"object": "list", "data": data, "model": model,
                                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))


# --------------------------------------------------------------------------
# Anthropic  (/anthropic/v1)
# --------------------------------------------------------------------------

ANTHROPIC_MODELS_LIST = [
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
]
ANTHROPIC_MODELS = orjson.dumps({
    "data": [{"type": "model", "id": i, "display_name": d, "created_at": c}
             for i, d, c in ANTHROPIC_MODELS_LIST],
    "has_more": False, "first_id": ANTHROPIC_MODELS_LIST[0][0],
    "last_id": ANTHROPIC_MODELS_LIST[-1][0]})
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                   404: "not_found_error", 429: "rate_limit_error", 500: "api_error"}
ANTHROPIC_PING = _sse_event(b"ping", {"type": "ping"})
ANTHROPIC_STOP = _sse_event(b"message_stop", {"type": "message_stop"})


class _Anthropic(_Api):
    MISSING_KEY = "x-api-key header is required"  # real API's wording
    INVALID_KEY = "invalid x-api-key"
    BAD_BODY = "There was an issue with the request body: invalid JSON."
    SERVER_ERROR = "Internal server error"
    RATE_LIMIT = "Number of requests has exceeded your rate limit. Please try again later."
    BAD_SSE = b"event: message_start\ndata: {not valid json\n\n"

    def api_key(self) -> str | None:
        # anthropic-python >= 2.x sends the key as "Authorization: Bearer",
        # older SDKs and raw clients as x-api-key: accept both.
        key = self.request.headers.get("x-api-key")
        if key:
            return key
        auth = self.request.headers.get("Authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    def check_headers(self) -> bool:
        # Like the real API: a missing version header is a 400, not a 401.
        if not self.request.headers.get("anthropic-version"):
            self.error(400, "anthropic-version: header is required")
            return False
        return True

    def error(self, status: int, message: str, param: str | None = None,
              code: str | None = None) -> None:
        self.send_json(orjson.dumps({"type": "error", "error": {
            "type": ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}), status)


class AnthropicModels(_Anthropic):
    async def get(self) -> None:
        if await self.begin():
            self.send_json(ANTHROPIC_MODELS)


class AnthropicMessages(_Anthropic):
    DEFER_SHAPE_FAULTS = True

    async def post(self) -> None:
        if not await self.begin():
            return
        body = self.body_json()
        if body is None:
            return
        for field in ("model", "max_tokens", "messages"):
            if body.get(field) is None:
                self.error(400, f"{field}: Field required")
                return
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            self.error(400, "messages: at least one message is required")
            return
        model = str(body["model"])
        stream = bool(body.get("stream"))

        # A user turn made only of tool_result blocks is a tool-result turn.
        prompt_words, user_text, ends_user = _scan((
            (m.get("role") == "user", m.get("content"), isinstance(m.get("content"), list)
             and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"]))
            for m in messages if isinstance(m, dict)), body.get("system"))
        tools, tool = body.get("tools"), None
        choice = body.get("tool_choice")
        if (_wants_tool(ends_user, user_text, tools)
                and not (isinstance(choice, dict) and choice.get("type") == "none")):
            tool = tools[0].get("name")
        text, output = _answer(user_text, tool)
        n = self.next_id()
        mid, tid = f"msg_mock_{n}", f"toolu_mock_{n}"
        stop = "tool_use" if tool else "end_turn"

        if not stream:
            if await self.model_fault(model):
                return
            content = ({"type": "tool_use", "id": tid, "name": tool, "input": {"query": user_text}}
                       if tool else {"type": "text", "text": text})
            self.send_json(orjson.dumps({
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [content], "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": prompt_words, "output_tokens": output}}))
            return

        if tool:
            block = {"type": "tool_use", "id": tid, "name": tool, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _split(text, 2)]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p}
                      for p in _split(text, self.application.chunks)]
        frames = [
            _sse_event(b"message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": prompt_words, "output_tokens": 1}}}),
            _sse_event(b"content_block_start", {
                "type": "content_block_start", "index": 0, "content_block": block}),
            ANTHROPIC_PING,
            *[_sse_event(b"content_block_delta", {
                "type": "content_block_delta", "index": 0, "delta": d}) for d in deltas],
            _sse_event(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse_event(b"message_delta", {
                "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output}}),
            ANTHROPIC_STOP,
        ]
        if not await self.model_fault(model, frames, drop_at=5):
            await self.send_sse(frames)


# --------------------------------------------------------------------------
# Gemini  (/gemini/v1beta)
# --------------------------------------------------------------------------

_GEN = ["generateContent", "countTokens"]
GEMINI_MODELS = orjson.dumps({"models": [
    {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "supportedGenerationMethods": _GEN},
    {"name": "models/gemini-2.5-pro", "version": "001", "displayName": "Gemini 2.5 Pro",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "supportedGenerationMethods": _GEN},
    {"name": "models/text-embedding-004", "version": "004", "displayName": "Text Embedding 004",
     "inputTokenLimit": 2048, "outputTokenLimit": 1,
     "supportedGenerationMethods": ["embedContent"]},
]})
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


class _Gemini(_Api):
    MISSING_KEY = ("Method doesn't allow unregistered callers. Please use API Key or other "
                   "form of API consumer identity to call this API.")
    INVALID_KEY = "API key not valid. Please pass a valid API key."
    BAD_BODY = "Invalid JSON payload received."
    SERVER_ERROR = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    RATE_LIMIT = "Resource has been exhausted (e.g. check quota)."
    BAD_SSE = b"data: {not valid json\n\n"

    def api_key(self) -> str | None:
        return self.request.headers.get("x-goog-api-key") or self.get_query_argument("key", None)

    def error(self, status: int, message: str, param: str | None = None,
              code: str | None = None) -> None:
        self.send_json(orjson.dumps({"error": {
            "code": status, "message": message,
            "status": GEMINI_STATUS.get(status, "UNKNOWN")}}), status)


class GeminiModels(_Gemini):
    async def get(self) -> None:
        if await self.begin():
            self.send_json(GEMINI_MODELS)


def _gemini_embed(req: Any) -> list[float] | None:
    if not isinstance(req, dict) or not isinstance(req.get("content"), dict):
        return None
    dim = req.get("outputDimensionality") or DEFAULT_EMBED_DIM
    text = _parts_text(req["content"].get("parts"))
    return list(_embedding(text, max(1, min(int(dim), 8192))))


class GeminiModelMethod(_Gemini):
    """POST /gemini/v1beta/models/{model}:{method}."""

    STATS = {m: "gemini." + m for m in (
        "generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents")}
    DEFER_SHAPE_FAULTS = True

    async def post(self, model: str, method: str) -> None:
        self.stat = self.STATS.get(method, "")
        if not await self.begin():
            return
        if not self.stat:
            self.error(404, f"Method {method} not found for models/{model}.")
            return
        body = self.body_json()
        if body is None:
            return
        if method == "embedContent":
            vec = _gemini_embed(body)
            if vec is None:
                self.error(400, "* EmbedContentRequest.content: content is not specified")
            elif not await self.model_fault(model):
                self.send_json(orjson.dumps({"embedding": {"values": vec}}))
        elif method == "batchEmbedContents":
            reqs = body.get("requests")
            vecs = [_gemini_embed(r) for r in reqs] if isinstance(reqs, list) and reqs else [None]
            if any(v is None for v in vecs):
                self.error(400, "* BatchEmbedContentsRequest.requests: content is not specified")
            elif not await self.model_fault(model):
                self.send_json(orjson.dumps({"embeddings": [{"values": v} for v in vecs]}))
        else:
            await self.generate(body, model, method == "streamGenerateContent")

    async def generate(self, body: dict, model: str, stream: bool) -> None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            self.error(400, "* GenerateContentRequest.contents: contents is not specified")
            return
        system = body.get("systemInstruction")
        prompt_words, user_text, ends_user = _scan((
            (c.get("role", "user") == "user", c.get("parts"), isinstance(c.get("parts"), list)
             and any(isinstance(p, dict) and "functionResponse" in p for p in c["parts"]))
            for c in contents if isinstance(c, dict)),
            system.get("parts") if isinstance(system, dict) else None)
        tools, tool = body.get("tools"), None
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        if _wants_tool(ends_user, user_text, tools) and mode != "NONE":
            decls = [d for t in tools for d in (t.get("functionDeclarations") or [])]
            tool = decls[0].get("name") if decls else None
        text, output = _answer(user_text, tool)
        if tool:
            pieces = [[{"functionCall": {"name": tool, "args": {"query": user_text}}}]]
        else:
            pieces = [[{"text": p}] for p in _split(text, self.application.chunks if stream else 1)]
        usage = {"promptTokenCount": prompt_words, "candidatesTokenCount": output,
                 "totalTokenCount": prompt_words + output}
        rid = f"mock-{self.next_id()}"

        def response(parts: list, last_chunk: bool) -> dict:
            cand: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
            r: dict = {"candidates": [cand], "modelVersion": model, "responseId": rid}
            if last_chunk:
                cand["finishReason"] = "STOP"
                r["usageMetadata"] = usage
            return r

        if not stream:
            if not await self.model_fault(model):
                self.send_json(orjson.dumps(response(pieces[0], True)))
            return
        last = len(pieces) - 1
        if self.get_query_argument("alt", None) != "sse":
            # Without ?alt=sse the real API streams one JSON array instead.
            if not await self.model_fault(model):
                self.send_json(orjson.dumps([response(p, i == last) for i, p in enumerate(pieces)]))
            return
        frames = [_sse(response(p, i == last)) for i, p in enumerate(pieces)]
        if not await self.model_fault(model, frames):
            await self.send_sse(frames)


# --------------------------------------------------------------------------
# Stats, app, server, CLI
# --------------------------------------------------------------------------

class Stats(tornado.web.RequestHandler):
    application: MockApp

    def get(self) -> None:
        calls = self.application.calls
        self.set_header("Content-Type", JSON_CT)
        self.finish(orjson.dumps({"calls": calls, "total": sum(calls.values())}))

    def delete(self) -> None:
        calls = self.application.calls
        for k in calls:
            calls[k] = 0
        self.set_header("Content-Type", JSON_CT)
        self.finish(orjson.dumps({"calls": calls, "total": 0}))


def make_mock_app(*, latency_ms: float = 0, chunks: int = 4,
                  chunk_delay_ms: float = 0) -> tornado.web.Application:
    """Build the mock application (all three APIs plus /_mock/stats)."""
    handlers = [
        (r"/openai/v1/chat/completions", OpenAIChat, {"stat": "openai.chat"}),
        (r"/openai/v1/embeddings", OpenAIEmbeddings, {"stat": "openai.embeddings"}),
        (r"/openai/v1/models", OpenAIModels, {"stat": "openai.models"}),
        (r"/openai/.*", type("OpenAINotFound", (_NotFound, _OpenAI), {})),
        (r"/anthropic/v1/messages", AnthropicMessages, {"stat": "anthropic.messages"}),
        (r"/anthropic/v1/models", AnthropicModels, {"stat": "anthropic.models"}),
        (r"/anthropic/.*", type("AnthropicNotFound", (_NotFound, _Anthropic), {})),
        (r"/gemini/v1(?:beta)?/models", GeminiModels, {"stat": "gemini.models"}),
        (r"/gemini/v1(?:beta)?/models/([^/:]+):([A-Za-z]+)", GeminiModelMethod),
        (r"/gemini/.*", type("GeminiNotFound", (_NotFound, _Gemini), {})),
        (r"/_mock/stats", Stats),
    ]
    return MockApp(handlers, latency_ms=latency_ms, chunks=chunks, chunk_delay_ms=chunk_delay_ms)


async def serve_mock(host: str = "127.0.0.1", port: int = 8001, *, latency_ms: float = 0,
                     chunks: int = 4, chunk_delay_ms: float = 0, announce: bool = True) -> None:
    """Serve forever. Port 0 picks a free port; the announced line has the real one."""
    app = make_mock_app(latency_ms=latency_ms, chunks=chunks, chunk_delay_ms=chunk_delay_ms)
    sockets = tornado.netutil.bind_sockets(port, host, backlog=1024)  # bursts of new connections
    server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=300)
    server.add_sockets(sockets)
    if announce:
        bound = sockets[0].getsockname()[1]
        print(f"mock-provider listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="forge-ref mock-provider",
                                description="Fake OpenAI/Anthropic/Gemini upstream.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    a = p.parse_args(argv)
    try:
        asyncio.run(serve_mock(a.host, a.port, latency_ms=a.latency_ms, chunks=a.chunks,
                               chunk_delay_ms=a.chunk_delay_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
