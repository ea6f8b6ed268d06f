"""What the three fake APIs share: faults, request reading, reply text and tokens, SSE, call stats.

Each API module subclasses ``Api`` with its auth header, error shape and messages; the flow
(count the call, delay, check the key, inject faults, stream frames) is written once here.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from functools import lru_cache
from typing import Any

import orjson
import tornado.iostream
import tornado.web

from .config import MockConfig

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


def fault_of(value: str | None) -> str | None:
    """Fault named by a model name or API key prefix (None for normal)."""
    if value:
        for fault in FAULTS:
            if value.startswith(fault):
                return fault
    return None


def words(text: str) -> int:
    return len(text.split())


def parts_text(content: Any) -> str:
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


def split(text: str, n: int) -> list[str]:
    """Split text into at most n non-empty pieces that join back to text."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)]


def scan(turns: Any, system: Any = None) -> tuple[int, str, bool]:
    """One pass over (is_user, content, is_tool_result) turns.

    Returns the prompt word count (system text included), the last user text,
    and whether the conversation ends with a plain user turn: only then may the
    mock call a tool, so an agent loop feeding results back gets a text answer.
    """
    count, user_text, ends_user = words(parts_text(system)), "", False
    for is_user, content, tool_result in turns:
        text = parts_text(content)
        count += words(text)
        ends_user = is_user and not tool_result
        if is_user and text:
            user_text = text
    return count, user_text, ends_user


def answer(user_text: str, tool: str | None) -> tuple[str, int]:
    """Reply text (or the tool-call arguments JSON) and its output token count."""
    out = orjson.dumps({"query": user_text}).decode() if tool else "Mock reply to: " + user_text
    return out, words(out)


def wants_tool(ends_user: bool, user_text: str, tools: Any) -> bool:
    return bool(tools) and ends_user and "tool" in user_text.lower()


@lru_cache(maxsize=8192)
def embedding(text: str, dim: int) -> tuple[float, ...]:
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


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_event(event: bytes, obj: Any) -> bytes:
    return b"event: " + event + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class MockApp(tornado.web.Application):
    """Application carrying the mock's config and counters."""

    def __init__(self, handlers: list, config: MockConfig) -> None:
        super().__init__(handlers, log_function=_no_log, compress_response=False)
        self.config = config
        self.latency_s = config.latency_ms / 1000.0
        self.chunks = config.chunks
        self.chunk_delay_s = config.chunk_delay_ms / 1000.0
        self.calls = dict.fromkeys(STAT_KEYS, 0)
        self.ids = itertools.count(1)


def _no_log(handler: tornado.web.RequestHandler) -> None:
    """Access logging off: per-request log lines cost more than the request."""


class Api(tornado.web.RequestHandler):
    """Base for the three APIs: auth, faults, error shapes, SSE writing."""

    application: MockApp
    stat = ""                 # stats key, set per route via initialize()
    key_fault: str | None = None
    _hang_future: asyncio.Future | None = None
    # Handlers that call model_fault() take a key's drop-mid-stream / bad-json
    # there, once they know whether the request streams.
    DEFER_SHAPE_FAULTS = False
    # Per API: the messages of its errors and its broken stream (bad-json).
    MISSING_KEY = INVALID_KEY = BAD_BODY = SERVER_ERROR = RATE_LIMIT = ""
    BAD_SSE = b""

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
        fault = self.key_fault = fault_of(key)
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
        fault = self.key_fault or fault_of(model)
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


class NotFound(Api):
    """Unknown path under an API prefix: 404 in that API's shape (auth first)."""

    async def _any(self, *_: Any) -> None:
        if await self.begin():
            self.error(404, "Not found: " + self.request.path)

    get = post = put = delete = patch = _any
