"""Anthropic messages both ways, as ``replay`` does for OpenAI chat: a stream's events added up to one
``message``, and a ``message`` played back as the events that say the same. ``/v1/messages`` is the
chat path with Anthropic's shapes (``messages``), so it takes part in the response cache and shared
calls with its answers kept in Anthropic's shape, whether the provider spoke Anthropic natively or
was translated.

    stream:  message_start, content_block_start/delta/stop ..., message_delta, message_stop  -->  message
    answer:  message  -->  the same events, one delta per block

A message is cacheable when it is whole and stopped for a reason that is the answer's own:
``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use`` (not ``pause_turn`` or ``refusal``).
"""

from __future__ import annotations

import orjson

from .adapters.base import SSEParser
from .adapters.to_anthropic import error_event, event
from .errors import UpstreamError

FINISHED = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use"})
# Delta type -> the block field it adds to.
TEXT_DELTAS = {"text_delta": "text", "thinking_delta": "thinking"}


class MessagesAssembler:
    """Anthropic stream events in (any split), the same events out one by one, the message at the end."""

    usage_frame = None  # Anthropic's events always carry usage: nothing to hold back

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._message: dict | None = None
        self._blocks: dict[int, dict] = {}
        self._json: dict[int, str] = {}  # tool_use input, as its partial_json pieces add up
        self._whole = True
        self._done = False

    def feed(self, blobs: list[bytes]) -> list[bytes]:
        out = []
        for name, data in self._parser.feed(b"".join(blobs)):
            out.append((b"event: " + name.encode() + b"\n" if name else b"") + b"data: " + data + b"\n\n")
            try:
                self._event(name, orjson.loads(data))
            except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, ValueError):
                self._whole = False
        return out

    def _event(self, name: str | None, ev: dict) -> None:
        kind = ev.get("type", name)
        if kind == "message_start":
            self._message = dict(ev["message"], content=[])
        elif kind == "content_block_start":
            self._blocks[ev["index"]] = dict(ev["content_block"])
        elif kind == "content_block_delta":
            block, delta = self._blocks[ev["index"]], ev["delta"]
            if delta["type"] in TEXT_DELTAS:
                field = TEXT_DELTAS[delta["type"]]
                block[field] = block.get(field, "") + delta[field]
            elif delta["type"] == "input_json_delta":
                self._json[ev["index"]] = self._json.get(ev["index"], "") + delta["partial_json"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                self._whole = False  # citations and the like: not assembled
        elif kind == "message_delta":
            self._message.update(ev.get("delta") or {})
            self._message["usage"] = dict(self._message.get("usage") or {}, **(ev.get("usage") or {}))
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            self._whole = False
        # ping and content_block_stop add nothing

    @staticmethod
    def tokens() -> tuple[None, None]:
        return None, None  # both ways to a Messages stream count its usage on the way (``messages``)

    def result(self) -> tuple[bytes | None, bool]:
        if not (self._whole and self._done and self._message is not None):
            return None, False
        for index, partial in self._json.items():
            self._blocks[index]["input"] = orjson.loads(partial) if partial else {}
        message = dict(self._message, content=[block for _, block in sorted(self._blocks.items())])
        return orjson.dumps(message), message.get("stop_reason") in FINISHED


def _block_events(index: int, block: dict) -> list[bytes]:
    """One content block as its start (empty), one delta with all of it, and its stop."""
    kind = block.get("type")
    empty, deltas = dict(block), []
    if kind in ("text", "thinking"):
        empty[kind] = ""
        if block.get(kind):
            deltas.append({"type": f"{kind}_delta", kind: block[kind]})
        if kind == "thinking" and "signature" in block:
            empty["signature"] = ""
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif "input" in block:  # tool_use, server_tool_use
        empty["input"] = {}
        deltas.append({"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()})
    out = [event(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})]
    out += [event(b"content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas]
    out.append(event(b"content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


class MessagesCodec:
    """What the response cache and shared calls need of Anthropic's Messages API."""

    scope = "messages"
    failure = staticmethod(error_event)
    assembler = MessagesAssembler

    @staticmethod
    def prepare(body: dict) -> dict:
        return body  # usage is in every Anthropic stream

    @staticmethod
    def wants_usage(body: dict) -> bool:
        return True

    @staticmethod
    def cacheable(answer: bytes) -> bool:
        return orjson.loads(answer).get("stop_reason") in FINISHED

    @staticmethod
    def replay(answer: bytes, usage: bool) -> bytes:
        try:
            return MessagesCodec._replay(orjson.loads(answer))
        except (AttributeError, TypeError):
            raise UpstreamError("upstream returned an unexpected message") from None

    @staticmethod
    def _replay(message: dict) -> bytes:
        usage_now = message.get("usage") or {}
        start = dict(message, content=[], stop_reason=None, stop_sequence=None,
                     usage=dict(usage_now, output_tokens=0))
        out = [event(b"message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(message.get("content") or ()):
            out += _block_events(index, block)
        out.append(event(b"message_delta", {"type": "message_delta", "usage": usage_now,
                                            "delta": {"stop_reason": message.get("stop_reason"),
                                                      "stop_sequence": message.get("stop_sequence")}}))
        out.append(event(b"message_stop", {"type": "message_stop"}))
        return b"".join(out)


MESSAGES = MessagesCodec()
