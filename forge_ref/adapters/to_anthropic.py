"""OpenAI answers as Anthropic's: a chat completion as a message, a stream of chunks as
Anthropic's stream events, a failure as Anthropic's error. The way back of ``from_anthropic``.

    client <--Anthropic-- to_anthropic / MessagesStream <--OpenAI-- the kind's adapter <--provider--

The tables are ``adapters/anthropic.py``'s (stop reasons, error types, usage) read backwards.
"""

from __future__ import annotations

import uuid

import orjson

from ..errors import ForgeError, UpstreamError
from .anthropic import ERROR_STATUS
from .base import SSEParser, StreamResult, StreamTranslator

# ``anthropic.FINISH`` read backwards; it maps several stop reasons to "stop", so the inverse names
# the usual one. OpenAI does not say which stop sequence matched: ``stop_sequence`` stays null.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal", "function_call": "tool_use"}
ERROR_TYPES = {status: kind for kind, status in ERROR_STATUS.items()}


def error_json(status: int, message: str) -> dict:
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def event(name: bytes, obj: dict) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def error_event(err: ForgeError) -> bytes:
    """A failure once a stream has started: Anthropic's ``event: error``."""
    return event(b"error", error_json(err.status, err.message))


def anthropic_usage(usage) -> dict:
    """OpenAI usage as Anthropic counts it: ``openai_usage`` backwards (cached tokens apart)."""
    usage = usage if isinstance(usage, dict) else {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    out = {"input_tokens": (usage.get("prompt_tokens") or 0) - cached,
           "output_tokens": usage.get("completion_tokens") or 0}
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _message_id(completion_id) -> str:
    return "msg_" + (completion_id.removeprefix("chatcmpl-") if isinstance(completion_id, str) else uuid.uuid4().hex)


def _input(arguments) -> dict:
    if not arguments:
        return {}  # argument-less calls arrive as "" from some servers
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError("upstream returned tool-call arguments that are not a JSON object")
    return value


def to_anthropic(completion: dict, label: str) -> dict:
    """An OpenAI chat completion (any kind's adapter output) as an Anthropic message; ``label``
    names the model where the completion does not."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = []
    text = message.get("content") or message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                        "name": fn.get("name"), "input": _input(fn.get("arguments"))})
    return {
        "id": _message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or label,
        "content": content,
        "stop_reason": "refusal" if message.get("refusal") else STOP_REASONS.get(choice.get("finish_reason"),
                                                                                  "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


class MessagesStream:
    """OpenAI ``chat.completion.chunk`` frames (what every kind's stream translator emits) in,
    Anthropic's stream events out: ``message_start``, content blocks one after another (text
    deltas; tool_use with ``input_json_delta``), ``message_delta`` with the stop reason and
    usage, ``message_stop``. A failure becomes ``event: error`` and ends the stream."""

    __slots__ = ("_inner", "_label", "_parser", "_started", "_open", "_next", "_tools", "_stop", "_usage", "_refused",
                 "_done", "result")

    def __init__(self, inner: StreamTranslator, label: str) -> None:
        self._inner = inner
        self._label = label
        self._parser = SSEParser()
        self._started = False
        self._open: str | None = None  # type of the content block open now
        self._next = 0  # index of the next content block
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> content block index
        self._stop: str | None = None
        self._usage: dict | None = None
        self._refused = False
        self._done = False
        self.result = StreamResult()

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._events(self._inner.feed(chunk))

    def close(self) -> list[bytes]:
        return self._events(self._inner.close())  # every translator's close ends with [DONE] or an error

    def _events(self, frames: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for _, data in self._parser.feed(b"".join(frames)):
            if self._done:
                break
            if data == b"[DONE]":
                out += self._finish()
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                out += self._fail(UpstreamError("upstream sent an invalid stream event"))
                break
            try:
                out += self._chunk(chunk)
            except (AttributeError, TypeError, KeyError, IndexError):
                out += self._fail(UpstreamError("upstream sent an unexpected stream event"))
                break
        return out

    def _chunk(self, chunk: dict) -> list[bytes]:
        err = chunk.get("error")
        if isinstance(err, dict):
            # The kind's translator says why (with a status) when it raised it; a pass-through
            # stream's own error event has only a message.
            message = str(err.get("message") or "stream error")[:500]
            return self._fail(self._inner.result.error or UpstreamError(message))
        out = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per request (n=1)
            delta = choice.get("delta") or {}
            if delta.get("refusal"):
                self._refused = True
            text = delta.get("content") or delta.get("refusal")
            if text:
                if self._open != "text":
                    out += self._block({"type": "text", "text": ""})
                out.append(event(b"content_block_delta", {"type": "content_block_delta", "index": self._next - 1,
                                                          "delta": {"type": "text_delta", "text": text}}))
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._stop = choice["finish_reason"]
        return out

    def _start(self, chunk: dict) -> list[bytes]:
        self._started = True
        message = {"id": _message_id(chunk.get("id")), "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self._label, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}  # known only at the end
        return [event(b"message_start", {"type": "message_start", "message": message})]

    def _block(self, block: dict) -> list[bytes]:
        """Close the open block, open the next one (Anthropic streams blocks one after another)."""
        out = self._close_block()
        self._open = block["type"]
        out.append(event(b"content_block_start", {"type": "content_block_start", "index": self._next,
                                                  "content_block": block}))
        self._next += 1
        return out

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [event(b"content_block_stop", {"type": "content_block_stop", "index": self._next - 1})]

    def _tool(self, call: dict) -> list[bytes]:
        n = call.get("index", 0)
        fn = call.get("function") or {}
        out = []
        if n not in self._tools:
            out += self._block({"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                                "name": fn.get("name"), "input": {}})
            self._tools[n] = self._next - 1
        if fn.get("arguments"):
            out.append(event(b"content_block_delta", {"type": "content_block_delta", "index": self._tools[n],
                                                      "delta": {"type": "input_json_delta",
                                                                "partial_json": fn["arguments"]}}))
        return out

    def _finish(self) -> list[bytes]:
        out = [] if self._started else self._start({})
        out += self._close_block()
        self._done = True
        if self._usage is not None:
            self.result.prompt_tokens = self._usage.get("prompt_tokens")
            self.result.completion_tokens = self._usage.get("completion_tokens")
        self.result.finish_reason = self._stop
        reason = "refusal" if self._refused else STOP_REASONS.get(self._stop, "end_turn")
        out.append(event(b"message_delta", {"type": "message_delta", "usage": anthropic_usage(self._usage),
                                            "delta": {"stop_reason": reason, "stop_sequence": None}}))
        out.append(event(b"message_stop", {"type": "message_stop"}))
        return out

    def _fail(self, err: ForgeError) -> list[bytes]:
        self._done = True
        self.result.error = err
        return [error_event(err)]
