"""Kind ``anthropic``: OpenAI chat requests over Anthropic's Messages API, and back.

Translation is structural (roles, content blocks, tools, stop reasons, usage), never semantic:
parameters Anthropic has no counterpart for (``response_format``, ``seed``, penalties,
``logprobs``) are dropped rather than guessed at, and values Anthropic bounds differently
(``temperature`` above 1) are passed on so that Anthropic's own 400 reaches the client.
"""

from __future__ import annotations

import time
import uuid

import orjson

from ..errors import BadRequest, ForgeError
from ..upstream import UpstreamRequest
from .base import (
    JsonEventStream,
    SSEParser,
    StreamResult,
    Target,
    loads,
    sse_frame,
    status_error,
)

API_VERSION = "2023-06-01"
# Anthropic rejects requests without max_tokens; OpenAI clients rarely send one.
DEFAULT_MAX_TOKENS = 4096

FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
# An ``error`` event inside a stream has no HTTP status; map its type to the one Anthropic
# would have used so it gets the same client-facing treatment as a status error.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def request_headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}


def _image(part: dict) -> dict:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise BadRequest("image_url part without a url", param="messages")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise BadRequest("image data URLs must be base64-encoded", param="messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content) -> list[dict]:
    """OpenAI message content (string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        # Anthropic rejects empty text blocks, and an empty string carries nothing anyway.
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest("message content must be a string or a list of parts", param="messages")
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                out.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            out.append(_image(part))
        else:
            raise BadRequest(f"unsupported content part type for anthropic: {kind!r}", param="messages")
    return out


def _text(content) -> str:
    return "".join(b["text"] for b in _blocks(content) if b["type"] == "text")


def _tool_input(call: dict) -> dict:
    raw = (call.get("function") or {}).get("arguments") or ""
    if not raw.strip():
        # Some clients send "" for argument-less calls; Anthropic wants an object either way.
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("tool_calls[].function.arguments is not valid JSON", param="messages") from None
    if not isinstance(value, dict):
        raise BadRequest("tool_calls[].function.arguments must be a JSON object", param="messages")
    return value


def _messages(messages: list) -> tuple[list[str], list[dict]]:
    system: list[str] = []
    turns: list[dict] = []
    for msg in messages:
        role = msg.get("role") if isinstance(msg, dict) else None
        if role in ("system", "developer"):
            if text := _text(msg.get("content")):
                system.append(text)
            continue
        if role == "user":
            blocks = _blocks(msg.get("content"))
        elif role == "assistant":
            blocks = _blocks(msg.get("content"))
            for call in msg.get("tool_calls") or ():
                name = (call.get("function") or {}).get("name")
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": name, "input": _tool_input(call)})
        elif role == "tool":
            # Tool results are user content in Anthropic's model of a conversation.
            role = "user"
            result = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
            content = msg.get("content")
            result["content"] = content if isinstance(content, str) else _blocks(content)
            blocks = [result]
        else:
            raise BadRequest(f"unsupported message role for anthropic: {role!r}", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            # Anthropic requires strict user/assistant alternation.
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
    return system, turns


def _tools(body: dict) -> dict:
    out: dict = {}
    tools = body.get("tools")
    if not tools:
        return out
    decls = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequest("only function tools are supported for anthropic", param="tools")
        decl = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if fn.get("description"):
            decl["description"] = fn["description"]
        decls.append(decl)
    out["tools"] = decls
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE:
            raise BadRequest(f"unsupported tool_choice: {choice!r}", param="tool_choice")
        tc = dict(TOOL_CHOICE[choice])
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise BadRequest("tool_choice must name a function", param="tool_choice")
        tc = {"type": "tool", "name": name}
    else:
        tc = None
    if body.get("parallel_tool_calls") is False and (tc is None or tc["type"] != "none"):
        tc = tc or {"type": "auto"}
        tc["disable_parallel_tool_use"] = True
    if tc is not None:
        out["tool_choice"] = tc
    return out


def openai_usage(usage: dict | None) -> dict:
    """Anthropic usage as OpenAI counts it (also what a usage row records)."""
    usage = usage or {}
    # Anthropic's input_tokens excludes cached tokens; OpenAI's prompt_tokens includes them.
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    completion = usage.get("output_tokens") or 0
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _error_message(data: bytes) -> str:
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return "no detail"
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:500]
    return "no detail"


class AnthropicStream(JsonEventStream):
    """Anthropic stream events in, OpenAI ``chat.completion.chunk`` frames out."""

    __slots__ = ("_label", "_usage", "_parser", "_id", "_created", "_tools", "_args_sent", "_counts", "_done", "result")

    def __init__(self, label: str, include_usage: bool) -> None:
        self._label = label
        self._usage = include_usage
        self._parser = SSEParser()
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._args_sent: set[int] = set()
        self._counts: dict = {}
        self._done = False
        self.result = StreamResult()

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse_frame({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                          "model": self._label, "choices": [choice]})

    def _count(self, usage: dict | None) -> None:
        if usage:
            self._counts.update({k: v for k, v in usage.items() if isinstance(v, int)})
            counted = openai_usage(self._counts)
            self.result.prompt_tokens = counted["prompt_tokens"]
            self.result.completion_tokens = counted["completion_tokens"]

    def _event(self, ev: dict) -> list[bytes]:
        kind = ev.get("type")
        if kind == "message_start":
            msg = ev.get("message") or {}
            self._id = msg.get("id") or self._id
            self._count(msg.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = ev.get("content_block") or {}
            if block.get("type") == "tool_use":
                n = self._tools[ev.get("index")] = len(self._tools)
                call = {"index": n, "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            n = self._tools.get(ev.get("index"))
            if delta.get("type") == "input_json_delta" and n is not None and delta.get("partial_json"):
                self._args_sent.add(n)
                return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": delta["partial_json"]}}]})]
            return []  # thinking and signature deltas have no OpenAI chat counterpart
        if kind == "content_block_stop":
            n = self._tools.get(ev.get("index"))
            if n is not None and n not in self._args_sent:
                # An argument-less call streams no JSON at all; clients would be left parsing "".
                return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": "{}"}}]})]
            return []
        if kind == "message_delta":
            self._count(ev.get("usage"))
            reason = (ev.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            self.result.finish_reason = FINISH.get(reason, "stop")
            return [self._chunk({}, self.result.finish_reason)]
        if kind == "error":
            err = ev.get("error") or {}
            message = err.get("message") if isinstance(err.get("message"), str) else "stream error"
            return self._fail(status_error(ERROR_STATUS.get(err.get("type"), 500), message[:500], {}))
        return []  # ping, message_stop and event types added later

    def _usage_frame(self) -> bytes:
        return sse_frame({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                          "model": self._label, "choices": [], "usage": openai_usage(self._counts)})


class AnthropicAdapter:
    kind = "anthropic"
    embeddings_merge: frozenset[str] = frozenset()  # no embeddings API: never batched

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list", param="messages")
        if (body.get("n") or 1) != 1:
            raise BadRequest("anthropic provider supports only n=1", param="n")
        system, turns = _messages(messages)
        out: dict = {"model": target.model, "messages": turns}
        if system:
            out["system"] = "\n\n".join(system)
        out["max_tokens"] = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
        for key in ("temperature", "top_p"):
            if body.get(key) is not None:
                out[key] = body[key]
        stop = body.get("stop")
        if stop:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        out.update(_tools(body))
        if isinstance(body.get("user"), str) and body["user"]:
            out["metadata"] = {"user_id": body["user"]}
        if body.get("stream"):
            out["stream"] = True
        base = target.base_url.rstrip("/")
        return UpstreamRequest("POST", base + "/v1/messages", request_headers(target.api_key), orjson.dumps(out))

    def chat_response(self, target: Target, data: bytes) -> dict:
        msg = loads(data, "chat completion")
        texts, calls = [], []
        for block in msg.get("content") or ():
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": args}})
        # OpenAI's schema requires refusal and logprobs, null when there is none: typed clients insist.
        message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                         "refusal": None}
        if calls:
            message["tool_calls"] = calls
        finish = FINISH.get(msg.get("stop_reason"), "stop")
        return {
            "id": msg.get("id") or "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.label,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": openai_usage(msg.get("usage")),
        }

    def chat_stream(self, target: Target, body: dict) -> AnthropicStream:
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return AnthropicStream(target.label, include)

    def embeddings_request(self, target: Target, body: dict) -> UpstreamRequest:
        raise BadRequest("anthropic provider does not support embeddings", code="unsupported_operation")

    def embeddings_response(self, target: Target, data: bytes, body: dict) -> dict:
        raise BadRequest("anthropic provider does not support embeddings", code="unsupported_operation")

    def models_request(self, base_url: str, api_key: str) -> UpstreamRequest:
        # The default page is 20 models; 1000 is the documented maximum and covers every account.
        return UpstreamRequest("GET", base_url.rstrip("/") + "/v1/models?limit=1000", request_headers(api_key),
                               purpose="models")

    def models_response(self, data: bytes) -> list[str]:
        items = loads(data, "model list").get("data")
        if not isinstance(items, list):
            return []
        return [m["id"] for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def error(self, status: int, data: bytes, headers: dict[str, str]) -> ForgeError:
        return status_error(status, _error_message(data), headers)
