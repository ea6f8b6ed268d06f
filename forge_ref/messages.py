"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API as ingress.

The chat path with Anthropic's shapes in its hooks (``MessagesHandler`` is a ``ChatHandler``), so
authentication, routing (``provider/model``, aliases), scoped keys, the cache layers, counters,
Server-Timing and usage rows are the same as for chat. Two ways through:

* an ``anthropic``-kind provider: a native pass-through. The body goes as sent with only
  ``model`` replaced (and the client's ``anthropic-version`` and ``anthropic-beta``); the answer
  and the stream come back as they came, event by event, read only for usage.
* ``openai`` and ``gemini`` kinds: ``from_anthropic`` makes an OpenAI chat request for the
  kind's own adapter, and ``to_anthropic`` turns the OpenAI answer it makes back into Anthropic's.

Every error of these endpoints (auth, routing, limits, upstream) has Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}``; once a stream has started, ``event: error``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from tornado.httputil import HTTPHeaders
from tornado.web import HTTPError

from . import validation
from .adapters.anthropic import openai_usage, request_headers
from .adapters.base import SSEParser, Target, loads
from .adapters.from_anthropic import to_openai
from .adapters.openai import PassThroughStream
from .adapters.to_anthropic import MessagesStream, error_event, error_json, to_anthropic
from .errors import BadRequest, ForgeError, UpstreamError
from .handlers import ChatHandler
from .upstream import UpstreamRequest

OVERLOADED = 529  # Anthropic's "try again later", which its SDK retries: an Anthropic client keeps it
PASSED_HEADERS = ("anthropic-version", "anthropic-beta")


class AnthropicError(ForgeError):
    """An error of the Messages endpoints, in Anthropic's shape."""

    def body(self) -> bytes:
        return orjson.dumps(error_json(self.status, self.message))


class _Ingress:
    """What ``ChatHandler`` drives in place of the kind's adapter: ``chat_request``,
    ``chat_stream``, ``error``, and ``answer`` (the response body and its Anthropic usage)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def error(self, status: int, data: bytes, headers: dict[str, str]) -> ForgeError:
        err = self.inner.error(status, data, headers)
        return ForgeError(err.message, status=OVERLOADED) if status == OVERLOADED else err


class Native(_Ingress):
    """To an anthropic-kind provider: the client's own request and the provider's own answer."""

    def __init__(self, inner, client_headers: HTTPHeaders) -> None:
        super().__init__(inner)
        self.headers = {name: value for name in PASSED_HEADERS if (value := client_headers.get(name))}

    def _request(self, target: Target, path: str, body: dict) -> UpstreamRequest:
        headers = dict(request_headers(target.api_key), **self.headers)
        return UpstreamRequest("POST", target.base_url.rstrip("/") + path, headers,
                               orjson.dumps(dict(body, model=target.model)))

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        return self._request(target, "/v1/messages", body)

    def count_request(self, target: Target, body: dict) -> UpstreamRequest:
        return self._request(target, "/v1/messages/count_tokens", body)

    def chat_stream(self, target: Target, body: dict) -> "NativeStream":
        return NativeStream()

    def answer(self, target: Target, data: bytes) -> tuple[bytes, Any]:
        return data, loads(data, "message").get("usage")


class Translated(_Ingress):
    """To an openai- or gemini-kind provider: through the kind's adapter, in OpenAI's shape."""

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        return self.inner.chat_request(target, body)

    def chat_stream(self, target: Target, body: dict) -> MessagesStream:
        return MessagesStream(self.inner.chat_stream(target, body), target.label)

    def answer(self, target: Target, data: bytes) -> tuple[bytes, Any]:
        try:
            message = to_anthropic(self.inner.chat_response(target, data), target.label)
        except (AttributeError, TypeError, KeyError, IndexError):
            raise UpstreamError("upstream returned an unexpected chat completion") from None
        return orjson.dumps(message), message["usage"]


class NativeStream(PassThroughStream):
    """Anthropic's events passed on as they come (whole events only), read for usage on the way."""

    __slots__ = ("_parser", "_counts")
    end_frame = None  # the stream's own message_stop ends it

    def __init__(self) -> None:
        super().__init__()
        self._parser = SSEParser()
        self._counts: dict[str, int] = {}

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._read(super().feed(chunk))

    def close(self) -> list[bytes]:
        return self._read(super().close())

    def _read(self, frames: list[bytes]) -> list[bytes]:
        for name, data in self._parser.feed(b"".join(frames)):
            if name not in ("message_start", "message_delta"):
                continue
            try:
                ev = orjson.loads(data)
                usage = ev["message"]["usage"] if name == "message_start" else ev["usage"]
                self._counts.update((k, v) for k, v in usage.items() if isinstance(v, int))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue  # not ours to judge: the client gets the event as it came
            counted = openai_usage(self._counts)
            self.result.prompt_tokens = counted["prompt_tokens"]
            self.result.completion_tokens = counted["completion_tokens"]
        return frames


class MessagesHandler(ChatHandler):
    validate = staticmethod(validation.messages_body)

    def _ingress(self, adapter, row, body: dict) -> tuple[_Ingress, dict]:
        if row.kind == "anthropic":
            return Native(adapter, self.request.headers), body
        return Translated(adapter), self._translate(to_openai, body)

    def _answer(self, adapter: _Ingress, target: Target, data: bytes) -> tuple[bytes, int | None, int | None]:
        out, usage = adapter.answer(target, data)
        counted = openai_usage(usage if isinstance(usage, dict) else None)
        return out, counted["prompt_tokens"], counted["completion_tokens"]

    def _stream_failure(self, exc: ForgeError) -> bytes:
        return error_event(exc)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ForgeError):
            err = AnthropicError(exc.message, status=status_code, headers=exc.headers)
        elif isinstance(exc, HTTPError) and status_code < 500:
            err = AnthropicError(exc.log_message or self._reason, status=status_code)
        else:
            err = AnthropicError("internal error", status=status_code)  # never a traceback
        super().write_error(status_code, exc_info=(AnthropicError, err, None))


class CountTokensHandler(MessagesHandler):
    validate = staticmethod(validation.count_tokens_body)

    async def post(self) -> None:
        started = time.perf_counter()
        body = self._body(self.validate)
        user, row, target = await self._target(body)
        if row.kind != "anthropic":
            raise BadRequest(f"provider {row.provider!r} is of kind {row.kind!r}, which cannot count tokens: "
                             "count_tokens works with anthropic-kind providers only", param="model",
                             code="unsupported_operation")
        adapter, client, owned = self._adapter(row.kind)
        try:
            native = Native(adapter, self.request.headers)
            with self._upstream_failures(user, row, target, started):
                data = await self._send(client, native, native.count_request(target, body), user, row, target,
                                        started)
            self._record(user, row, target, 200, started)
            self.trace.lap("respond")
            self.finish(data)
        finally:
            if owned:
                client.close()
