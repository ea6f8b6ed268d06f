"""Kind ``gemini``: OpenAI chat and embeddings requests over Gemini's native v1beta API, and back.

The native API (not Google's OpenAI-compatible endpoint) is used so that keys, quotas and
features behave exactly as Google documents them for ``generateContent``. Parameters without
a Gemini counterpart (``logprobs``, ``logit_bias``, ``user``) are dropped rather than guessed at.
"""

from __future__ import annotations

import base64
import itertools
import mimetypes
import struct
import time
import uuid
from urllib.parse import urlsplit

import orjson

from ..errors import BadRequest, ForgeError, UpstreamError
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

FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"}
MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
# Gemini 3 rejects a replayed functionCall without the thoughtSignature it was issued with.
# History the client built itself (or got from another provider) has none; this is the value
# Google documents for exactly that case.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"
# Gemini's only error shape without an HTTP status is a stream event; its ``status`` names
# the canonical code, so map it to the status the same failure would have had before the stream.
STATUS_CODES = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "PERMISSION_DENIED": 403,
                "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


def _base(url: str) -> str:
    return url.rstrip("/") + "/v1beta/models"


def _headers(api_key: str) -> dict[str, str]:
    # The key goes in a header, never in ``?key=``: URLs end up in logs.
    return {"x-goog-api-key": api_key, "Content-Type": "application/json"}


def _image(part: dict) -> dict:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise BadRequest("image_url part without a url", param="messages")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise BadRequest("image data URLs must be base64-encoded", param="messages")
        return {"inlineData": {"mimeType": mime, "data": data}}
    # Gemini needs a MIME type for remote files; the part is declared an image, so JPEG is the
    # least surprising fallback when the URL's extension says nothing.
    guess = mimetypes.guess_type(urlsplit(url).path)[0]
    return {"fileData": {"mimeType": guess or "image/jpeg", "fileUri": url}}


def _parts(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest("message content must be a string or a list of parts", param="messages")
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif kind == "image_url":
            out.append(_image(part))
        else:
            raise BadRequest(f"unsupported content part type for gemini: {kind!r}", param="messages")
    return out


def _args(call: dict) -> dict:
    raw = (call.get("function") or {}).get("arguments") or ""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("tool_calls[].function.arguments is not valid JSON", param="messages") from None
    if not isinstance(value, dict):
        raise BadRequest("tool_calls[].function.arguments must be a JSON object", param="messages")
    return value


def _tool_result(content):
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in _parts(content))
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _contents(messages: list) -> tuple[list[dict], list[dict]]:
    system: list[dict] = []
    turns: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id -> function name: Gemini answers calls by name
    for msg in messages:
        role = msg.get("role") if isinstance(msg, dict) else None
        if role in ("system", "developer"):
            system.extend(p for p in _parts(msg.get("content")) if "text" in p)
            continue
        if role == "user":
            parts = _parts(msg.get("content"))
        elif role == "assistant":
            role = "model"
            parts = _parts(msg.get("content"))
            for i, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") or {}
                names[call.get("id")] = fn.get("name")
                part = {"functionCall": {"name": fn.get("name"), "args": _args(call)}}
                sig = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
                if sig or i == 0:
                    part["thoughtSignature"] = sig or FOREIGN_SIGNATURE
                parts.append(part)
        elif role == "tool":
            name = names.get(msg.get("tool_call_id"))
            if name is None:
                raise BadRequest("tool message refers to an unknown tool_call_id", param="messages")
            role = "user"
            parts = [{"functionResponse": {"name": name, "response": {"content": _tool_result(msg.get("content"))}}}]
        else:
            raise BadRequest(f"unsupported message role for gemini: {role!r}", param="messages")
        if not parts:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})
    return system, turns


def _tools(body: dict) -> dict:
    out: dict = {}
    if not body.get("tools"):
        return out
    decls = []
    for tool in body["tools"]:
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequest("only function tools are supported for gemini", param="tools")
        decl = {"name": fn["name"], "description": fn.get("description") or ""}
        if fn.get("parameters"):
            # OpenAI tool parameters are JSON Schema; ``parameters`` takes only an OpenAPI subset
            # and rejects e.g. additionalProperties (which every strict tool has).
            decl["parametersJsonSchema"] = fn["parameters"]
        decls.append(decl)
    out["tools"] = [{"functionDeclarations": decls}]
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in MODES:
            raise BadRequest(f"unsupported tool_choice: {choice!r}", param="tool_choice")
        config = {"mode": MODES[choice]}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise BadRequest("tool_choice must name a function", param="tool_choice")
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        return out
    out["toolConfig"] = {"functionCallingConfig": config}
    return out


def _generation_config(body: dict) -> dict:
    config = {}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed"),
                     ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(src) is not None:
            config[dst] = body[src]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    return config


def _usage(meta: dict | None) -> dict:
    meta = meta or {}
    prompt = meta.get("promptTokenCount") or 0
    # Thinking tokens are billed as output, which OpenAI counts inside completion_tokens.
    thoughts = meta.get("thoughtsTokenCount") or 0
    completion = (meta.get("candidatesTokenCount") or 0) + thoughts
    out = {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": meta.get("totalTokenCount") or prompt + completion}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out


def _finish(reason: str | None, has_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def _candidates(resp: dict) -> list[dict]:
    if not resp.get("candidates") and (resp.get("promptFeedback") or {}).get("blockReason"):
        return [{"index": 0, "finishReason": "SAFETY"}]  # the prompt itself was refused
    return resp.get("candidates") or []


def _split(candidate: dict, ids: itertools.count, first_index: int) -> tuple[str, list[dict]]:
    """Text and tool calls of one candidate; ``ids`` numbers calls across the whole response."""
    texts, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if part.get("thought"):
            continue  # thought summaries are not part of the answer
        if "functionCall" in part:
            fc = part["functionCall"]
            args = orjson.dumps(fc.get("args") or {}).decode()
            call = {"index": first_index + len(calls), "id": f"call_{next(ids)}", "type": "function",
                    "function": {"name": fc.get("name"), "arguments": args}}
            if part.get("thoughtSignature"):
                # Where Google's own OpenAI-compatible endpoint puts it, so clients built for that
                # endpoint already hand it back on the next turn.
                call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(call)
        elif part.get("text"):
            texts.append(part["text"])
    return "".join(texts), calls


def _error_message(data: bytes) -> str:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "no detail"
    if isinstance(value, list) and value:
        value = value[0]  # the non-SSE stream endpoint wraps its error in an array
    err = value.get("error") if isinstance(value, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:500]
    return "no detail"


class GeminiStream(JsonEventStream):
    """``alt=sse`` GenerateContentResponse events in, OpenAI ``chat.completion.chunk`` frames out."""

    __slots__ = ("_label", "_usage", "_parser", "_id", "_created", "_ids", "_choices", "_meta", "_done", "result")

    def __init__(self, label: str, include_usage: bool) -> None:
        self._label = label
        self._usage = include_usage
        self._parser = SSEParser()
        self._id: str | None = None
        self._created = int(time.time())
        self._ids = itertools.count()
        self._choices: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self._meta: dict | None = None
        self._done = False
        self.result = StreamResult()

    def _frame(self, choices: list, **extra) -> bytes:
        return sse_frame({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                          "model": self._label, "choices": choices, **extra})

    def _event(self, ev: dict) -> list[bytes]:
        if isinstance(ev.get("error"), dict):
            err = ev["error"]
            status = err.get("code") if isinstance(err.get("code"), int) else STATUS_CODES.get(err.get("status"), 500)
            return self._fail(status_error(status, str(err.get("message") or "stream error")[:500], {}))
        if self._id is None:
            self._id = "chatcmpl-" + (ev.get("responseId") or uuid.uuid4().hex)
        if ev.get("usageMetadata"):
            self._meta = ev["usageMetadata"]
            usage = _usage(self._meta)
            self.result.prompt_tokens = usage["prompt_tokens"]
            self.result.completion_tokens = usage["completion_tokens"]
        out = []
        for cand in _candidates(ev):
            index = cand.get("index") or 0
            first = index not in self._choices
            sent = self._choices.get(index, 0)
            text, calls = _split(cand, self._ids, sent)
            delta: dict = {"role": "assistant"} if first else {}
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = calls
            if delta:
                out.append(self._frame([{"index": index, "delta": delta, "finish_reason": None}]))
            self._choices[index] = sent + len(calls)
            if cand.get("finishReason"):
                finish = _finish(cand["finishReason"], self._choices[index] > 0)
                self.result.finish_reason = finish
                out.append(self._frame([{"index": index, "delta": {}, "finish_reason": finish}]))
        return out

    def _usage_frame(self) -> bytes:
        self._id = self._id or "chatcmpl-" + uuid.uuid4().hex
        return self._frame([], usage=_usage(self._meta))


class GeminiAdapter:
    kind = "gemini"
    embeddings_merge = frozenset({"text"})  # batching (``forge_ref.batching``): strings merge, as batchEmbedContents

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list", param="messages")
        system, contents = _contents(messages)
        out: dict = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": system}
        out.update(_tools(body))
        if config := _generation_config(body):
            out["generationConfig"] = config
        url = _base(target.base_url) + "/" + target.model
        url += ":streamGenerateContent?alt=sse" if body.get("stream") else ":generateContent"
        return UpstreamRequest("POST", url, _headers(target.api_key), orjson.dumps(out))

    def chat_response(self, target: Target, data: bytes) -> dict:
        resp = loads(data, "chat completion")
        ids = itertools.count()
        choices = []
        for i, cand in enumerate(_candidates(resp)):
            text, tool_calls = _split(cand, ids, 0)
            for call in tool_calls:
                del call["index"]  # only stream deltas carry an index
            # OpenAI's schema requires refusal and logprobs, null when there is none: typed clients insist.
            message: dict = {"role": "assistant", "content": text if text or not tool_calls else None, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            finish = _finish(cand.get("finishReason"), bool(tool_calls))
            choices.append({"index": cand.get("index", i), "message": message, "logprobs": None,
                            "finish_reason": finish})
        return {
            "id": "chatcmpl-" + (resp.get("responseId") or uuid.uuid4().hex),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.label,
            "choices": choices,
            "usage": _usage(resp.get("usageMetadata")),
        }

    def chat_stream(self, target: Target, body: dict) -> GeminiStream:
        return GeminiStream(target.label, bool((body.get("stream_options") or {}).get("include_usage")))

    def embeddings_request(self, target: Target, body: dict) -> UpstreamRequest:
        inp = body.get("input")
        extra = {"outputDimensionality": body["dimensions"]} if body.get("dimensions") else {}
        model = _base(target.base_url) + "/" + target.model
        if isinstance(inp, str):
            out = {"content": {"parts": [{"text": inp}]}, **extra}
            url = model + ":embedContent"
        elif isinstance(inp, list) and inp and all(isinstance(s, str) for s in inp):
            name = "models/" + target.model
            out = {"requests": [{"model": name, "content": {"parts": [{"text": s}]}, **extra} for s in inp]}
            url = model + ":batchEmbedContents"
        else:
            raise BadRequest("gemini embeddings take a string or a non-empty list of strings (no token arrays)",
                             param="input")
        return UpstreamRequest("POST", url, _headers(target.api_key), orjson.dumps(out))

    def embeddings_response(self, target: Target, data: bytes, body: dict) -> dict:
        resp = loads(data, "embeddings")
        items = resp.get("embeddings") if "embeddings" in resp else [resp.get("embedding")]
        if not isinstance(items, list) or not all(isinstance(e, dict) and isinstance(e.get("values"), list)
                                                  for e in items):
            raise UpstreamError("upstream returned an unexpected embeddings body")
        b64 = body.get("encoding_format") == "base64"
        data_out = []
        for i, item in enumerate(items):
            values = item["values"]
            if b64:
                # OpenAI's base64 format is little-endian float32; its SDKs request it by default.
                values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data_out.append({"object": "embedding", "index": i, "embedding": values})
        return {"object": "list", "data": data_out, "model": target.label,
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def models_request(self, base_url: str, api_key: str) -> UpstreamRequest:
        # The default page is 50 models; 1000 is the documented maximum.
        return UpstreamRequest("GET", _base(base_url) + "?pageSize=1000", {"x-goog-api-key": api_key}, purpose="models")

    def models_response(self, data: bytes) -> list[str]:
        items = loads(data, "model list").get("models")
        if not isinstance(items, list):
            return []
        names = (m.get("name") for m in items if isinstance(m, dict))
        return [n.removeprefix("models/") for n in names if isinstance(n, str)]

    def error(self, status: int, data: bytes, headers: dict[str, str]) -> ForgeError:
        return status_error(status, _error_message(data), headers)
