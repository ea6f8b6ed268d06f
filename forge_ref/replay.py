"""OpenAI chat answers both ways: a stream's chunks added up to one ``chat.completion``, and a
``chat.completion`` played back as a stream. What the response cache and shared calls need so that
an answer serves a streaming and a non-streaming request alike, whichever way it was produced.

    stream:  data: {chat.completion.chunk} ... data: [DONE]   --ChatAssembler-->   chat.completion
    answer:  chat.completion   --ChatCodec.replay-->   role+content+tool calls, finish, [usage], [DONE]

Both work on the client-facing frames (what every kind's stream translator emits), so they are the
same for every provider kind. An answer is cacheable only when it is whole: every choice finished
with ``stop``, ``length`` or ``tool_calls``, no error, the stream ended with ``[DONE]``.
"""

from __future__ import annotations

import orjson

from .adapters.base import DONE_FRAME, SSEParser, error_frame, sse_frame
from .errors import UpstreamError

FINISHED = frozenset({"stop", "length", "tool_calls"})
_HEAD = ("id", "created", "model", "system_fingerprint", "service_tier")


def _data(frame_data: bytes) -> bytes:
    return b"data: " + frame_data + b"\n\n"


class ChatAssembler:
    """Client-facing OpenAI frames in (any split), the same frames out one by one, the answer at the end."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._head: dict | None = None
        self._choices: dict[int, dict] = {}
        self._usage: dict | None = None
        self._whole = True  # every part understood (else: not cacheable, no JSON answer)
        self._done = False
        self._failed = False
        self.usage_frame: bytes | None = None  # the usage-only chunk, which only clients that asked get

    def feed(self, blobs: list[bytes]) -> list[bytes]:
        out = []
        for _, data in self._parser.feed(b"".join(blobs)):
            frame = _data(data)
            out.append(frame)
            if data == b"[DONE]":
                self._done = True
                continue
            try:
                chunk = orjson.loads(data)
                self._chunk(chunk, frame)
            except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError):
                self._failed = True  # the stream itself says so to the client; nothing to keep
        return out

    def _chunk(self, chunk: dict, frame: bytes) -> None:
        if chunk.get("error") is not None:
            self._failed = True
            return
        if self._head is None:
            self._head = {k: chunk[k] for k in _HEAD if chunk.get(k) is not None}
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
            if not chunk.get("choices"):
                self.usage_frame = frame
        for choice in chunk.get("choices") or ():
            into = self._choices.setdefault(choice.get("index", 0), {"message": {}, "tools": {}, "finish": None})
            if choice.get("logprobs") is not None:
                self._whole = False  # not assembled: such an answer is passed on, never kept
            if choice.get("finish_reason"):
                into["finish"] = choice["finish_reason"]
            self._delta(choice.get("delta") or {}, into)

    def _delta(self, delta: dict, into: dict) -> None:
        message = into["message"]
        for name, value in delta.items():
            if name == "tool_calls":
                for call in value or ():
                    tool = into["tools"].setdefault(call.get("index", 0), {"function": {"arguments": ""}})
                    for field in ("id", "type"):
                        if call.get(field):
                            tool[field] = call[field]
                    fn = call.get("function") or {}
                    if fn.get("name"):
                        tool["function"]["name"] = fn["name"]
                    tool["function"]["arguments"] += fn.get("arguments") or ""
            elif name == "role":
                message["role"] = value
            elif isinstance(value, str):  # content, refusal, reasoning_content, ...: text that adds up
                message[name] = message.get(name, "") + value
            elif value is not None:
                self._whole = False  # audio and the like: not assembled

    def tokens(self) -> tuple[int | None, int | None]:
        """What the usage chunk said (a pass-through stream's translator does not read it)."""
        usage = self._usage or {}
        return usage.get("prompt_tokens"), usage.get("completion_tokens")

    def result(self) -> tuple[bytes | None, bool]:
        """(the answer as a ``chat.completion``, or None when there is none; whether it may be kept)."""
        if self._failed or not self._done or not self._whole or not self._choices:
            return None, False
        choices = []
        for index, c in sorted(self._choices.items()):
            message = {"role": "assistant", "content": None, **c["message"]}
            if c["tools"]:
                message["tool_calls"] = [dict(t, type=t.get("type", "function")) for _, t in sorted(c["tools"].items())]
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": c["finish"]})
        answer = dict(self._head or {}, object="chat.completion", choices=choices)
        if self._usage is not None:
            answer["usage"] = self._usage
        return orjson.dumps(answer), all(c["finish_reason"] in FINISHED for c in choices)


class ChatCodec:
    """What the response cache and shared calls need of the chat completions API."""

    scope = "chat"
    failure = staticmethod(lambda exc: error_frame(exc) + DONE_FRAME)
    assembler = ChatAssembler

    @staticmethod
    def prepare(body: dict) -> dict:
        """A kept stream must be able to serve a client that asks for usage: always ask the provider."""
        options = body.get("stream_options")
        if body.get("stream") is True and (options is None or isinstance(options, dict)):
            return dict(body, stream_options=dict(options or {}, include_usage=True))
        return body

    @staticmethod
    def wants_usage(body: dict) -> bool:
        options = body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    @staticmethod
    def cacheable(answer: bytes) -> bool:
        choices = orjson.loads(answer).get("choices")
        return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") in FINISHED for c in choices)

    @staticmethod
    def replay(answer: bytes, usage: bool) -> bytes:
        """A ``chat.completion`` as the stream that says the same: per choice one chunk with the whole
        message (text, tool calls with their index), one with its finish_reason; usage if asked; [DONE]."""
        try:
            return ChatCodec._replay(orjson.loads(answer), usage)
        except (AttributeError, TypeError):
            raise UpstreamError("upstream returned an unexpected chat completion") from None

    @staticmethod
    def _replay(completion: dict, usage: bool) -> bytes:
        head = {k: completion[k] for k in _HEAD if completion.get(k) is not None}
        head["object"] = "chat.completion.chunk"
        out = []
        for choice in completion.get("choices") or ():
            delta = {k: v for k, v in (choice.get("message") or {}).items() if v is not None}
            if "tool_calls" in delta:
                delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(delta["tool_calls"])]
            index = choice.get("index", 0)
            out.append(sse_frame(dict(head, choices=[{"index": index, "delta": delta, "finish_reason": None}])))
            out.append(sse_frame(dict(head, choices=[{"index": index, "delta": {},
                                                      "finish_reason": choice.get("finish_reason")}])))
        if usage and completion.get("usage") is not None:
            out.append(sse_frame(dict(head, choices=[], usage=completion["usage"])))
        out.append(DONE_FRAME)
        return b"".join(out)


CHAT = ChatCodec()
