"""What the three fake APIs share: auth and faults, request bodies, SSE, pacing, call stats.

Each API module subclasses ``Api`` with its auth header, error shape and messages; the flow
(count the call, delay, check the key, inject faults, pace and stream frames, list models under
a rate limit) is written once here.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any, Awaitable, Callable

import orjson
import tornado.iostream
import tornado.web

from .config import MockConfig
from .ratelimit import SlidingWindow
from .timing import Timing

STAT_KEYS = (
    "openai.chat", "openai.completions", "openai.embeddings", "openai.models",
    "openai.images.generations", "openai.images.edits",
    "anthropic.messages", "anthropic.count_tokens", "anthropic.models",
    "gemini.generateContent", "gemini.streamGenerateContent",
    "gemini.embedContent", "gemini.batchEmbedContents", "gemini.models",
)
FAULTS = ("fail-500", "fail-429", "hang", "drop-mid-stream", "bad-json")
SHAPE_FAULTS = ("drop-mid-stream", "bad-json")  # their form depends on streaming
HANG_SECONDS = 3600.0
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


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_event(event: bytes, obj: Any) -> bytes:
    return b"event: " + event + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class MockApp(tornado.web.Application):
    """Application carrying the mock's config, timing model and counters.

    ``rng``, ``clock`` and ``sleep`` are seams for tests: the random source of the timing
    model (default ``random.Random(config.seed)``), the clock of the rate limit and of stream
    pacing, and the delay itself.
    """

    def __init__(self, handlers: list, config: MockConfig, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(handlers, log_function=_no_log, compress_response=False)
        self.latency_s = config.latency_ms / 1000.0
        self.chunks = config.chunks
        self.chunk_delay_s = config.chunk_delay_ms / 1000.0
        self.timing = Timing(config, rng)
        self.clock, self.sleep = clock, sleep
        self.models_limit = (SlidingWindow(config.models_rate_limit, config.models_rate_window, clock)
                             if config.models_rate_limit else None)
        # With a model-list limit, "<api>.models.429" count the refused calls among "<api>.models".
        limited = [k + ".429" for k in STAT_KEYS if k.endswith(".models")] if self.models_limit else []
        self.calls = dict.fromkeys((*STAT_KEYS, *limited), 0)
        self.ids = itertools.count(1)

    def total_calls(self) -> int:
        """Requests received: the sub-counts of refused calls are not requests of their own."""
        return sum(self.calls[k] for k in STAT_KEYS)


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
            await app.sleep(app.latency_s)
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
                    drop_at: int = 2, due: list[float] | None = None) -> None:
        if fault == "fail-500":
            self.error(500, self.SERVER_ERROR)
        elif fault == "fail-429":
            self.set_header("Retry-After", RETRY_AFTER)
            self.error(429, self.RATE_LIMIT)
        elif fault == "hang":
            await self.hang()
        elif fault == "drop-mid-stream":
            if streaming and frames:
                await self.send_sse(frames[:drop_at], drop=True, due=due and due[:drop_at])
            else:
                self.abort_connection()
        elif fault == "bad-json":
            if streaming:
                self.set_header("Content-Type", "text/event-stream")
                self.finish(self.BAD_SSE)
            else:
                self.send_json(BAD_JSON)

    async def model_fault(self, model: str, frames: list[bytes] | None = None,
                          drop_at: int = 2, due: list[float] | None = None) -> bool:
        """Inject the fault named by the key or model, if any. True = answered."""
        fault = self.key_fault or fault_of(model)
        if fault is None:
            return False
        await self.fault(fault, frames is not None, frames, drop_at, due)
        return True

    async def pause(self, seconds: float) -> None:
        """Wait that long; no timer at all for 0."""
        if seconds > 0:
            await self.application.sleep(seconds)

    async def list_models(self, body: bytes) -> None:
        """A model-list call: auth, then the per-key rate limit, then the model-list delay."""
        if not await self.begin():
            return
        app = self.application
        if app.models_limit is not None:
            wait = app.models_limit.hit((self.stat, self.api_key()))
            if wait:
                app.calls[self.stat + ".429"] += 1
                self.set_header("Retry-After", str(wait))
                self.error(429, f"Rate limit reached for model listing: {app.models_limit.limit} "
                                f"calls per {app.models_limit.window:g} s per API key. "
                                f"Please try again in {wait} s.")
                return
        delay = app.timing.models_delay()
        if delay:
            await app.sleep(delay)
        self.send_json(body)

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

    async def send_sse(self, frames: list[bytes], drop: bool = False,
                       due: list[float] | None = None) -> None:
        """Write SSE frames, flushing each; optionally cut the socket after.

        ``due`` (the timing model) holds each frame's time after the start; without it
        frames are ``--chunk-delay-ms`` apart.
        """
        for name, value in SSE_HEADERS.items():
            self.set_header(name, value)
        # Without TCP_NODELAY, Nagle holds every frame after the first until the stream ends on a
        # reused keep-alive connection (Tornado resets it between requests: set it per request).
        self.request.connection.stream.set_nodelay(True)
        app = self.application
        delay, clock = app.chunk_delay_s, app.clock
        start = clock() if due else 0.0
        try:
            for i, frame in enumerate(frames):
                if due:
                    # Against the start, not the previous frame: write time does not add up.
                    await self.pause(start + due[i] - clock())
                elif delay and i:
                    await app.sleep(delay)
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
