"""OpenAI's API under ``/openai/v1``: chat completions and legacy text completions (SSE with ``stream``),
embeddings, models. The image API is ``images.py``."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

from .base import Api, NotFound, sse
from .replies import DEFAULT_EMBED_DIM, embedding, make_reply, scan, wants_tool, words

MODELS = orjson.dumps({"object": "list", "data": [
    {"id": m, "object": "model", "created": 1715367049, "owned_by": "mock"}
    for m in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")]})
TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
         404: "invalid_request_error", 429: "requests", 500: "server_error"}
CODES = {401: "invalid_api_key", 404: "unknown_url", 429: "rate_limit_exceeded"}


class OpenAIApi(Api):
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
            code = CODES.get(status)
        self.send_json(orjson.dumps({"error": {
            "message": message, "type": TYPES.get(status, "api_error"),
            "param": param, "code": code}}), status)

    def require(self, body: dict, *fields: str) -> bool:
        for f in fields:
            if body.get(f) is None:
                self.error(400, f"Missing required parameter: '{f}'.", f,
                           "missing_required_parameter")
                return False
        return True


class Models(OpenAIApi):
    async def get(self) -> None:
        await self.list_models(MODELS)


class Chat(OpenAIApi):
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

        prompt_words, user_text, ends_user = scan(
            (m.get("role") == "user", m.get("content"), False)
            for m in messages if isinstance(m, dict))
        tools, tool = body.get("tools"), None
        if wants_tool(ends_user, user_text, tools) and body.get("tool_choice") != "none":
            tool = (tools[0].get("function") or {}).get("name")
        reply = make_reply(self.application.timing, user_text, tool,
                           (2 if tool else self.application.chunks) if stream else 1)
        text, completion = reply.text, reply.tokens
        n = self.next_id()
        cid, created = f"chatcmpl-mock-{n}", int(time.time())
        usage = {"prompt_tokens": prompt_words, "completion_tokens": completion,
                 "total_tokens": prompt_words + completion}
        call = {"id": f"call_mock_{n}", "type": "function",
                "function": {"name": tool, "arguments": text}}

        if not stream:
            if await self.model_fault(model):
                return
            await self.pause(reply.latency)
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
            return sse(c)

        if tool:
            call["index"], call["function"] = 0, {"name": tool, "arguments": ""}
            frames = [chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
            frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                       for p in reply.pieces]
        else:
            frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
            frames += [chunk({"content": p}) for p in reply.pieces]
        frames.append(chunk({}, "tool_calls" if tool else "stop"))
        if include_usage:
            frames.append(chunk(None))
        frames.append(b"data: [DONE]\n\n")
        due = reply.schedule(1, len(frames) - 1 - len(reply.pieces))
        if not await self.model_fault(model, frames, drop_at=3, due=due):
            await self.send_sse(frames, due=due)


class Completions(OpenAIApi):
    """The legacy text completions API: one choice per prompt, each a ``text``."""

    DEFER_SHAPE_FAULTS = True

    async def post(self) -> None:
        if not await self.begin():
            return
        body = self.body_json()
        if body is None or not self.require(body, "model", "prompt"):
            return
        prompts = texts(body["prompt"])
        if prompts is None:
            self.error(400, "Invalid type for 'prompt': expected a string, an array of strings or token arrays.",
                       "prompt", "invalid_type")
            return
        model = str(body["model"])
        stream = bool(body.get("stream"))
        timing = self.application.timing
        replies = [make_reply(timing, p, None, self.application.chunks if stream else 1) for p in prompts]
        prompt_tokens, completion = sum(map(words, prompts)), sum(r.tokens for r in replies)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                 "total_tokens": prompt_tokens + completion}
        cid, created = f"cmpl-mock-{self.next_id()}", int(time.time())

        def answer(choices: list, **extra) -> dict:
            return {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "choices": choices, "system_fingerprint": "fp_mock", **extra}

        def choice(i: int, text: str, finish: str | None) -> dict:
            return {"text": text, "index": i, "logprobs": None, "finish_reason": finish}

        if not stream:
            if await self.model_fault(model):
                return
            await self.pause(max(r.latency for r in replies))
            self.send_json(orjson.dumps(answer([choice(i, r.text, "stop") for i, r in enumerate(replies)],
                                               usage=usage)))
            return
        # Each prompt's pieces, then a finish chunk per prompt, [a usage chunk], [DONE].
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = [sse(answer([choice(i, p, None)])) for i, r in enumerate(replies) for p in r.pieces]
        frames += [sse(answer([choice(i, "", "stop")])) for i in range(len(replies))]
        if include_usage:
            frames.append(sse(answer([], usage=usage)))
        frames.append(b"data: [DONE]\n\n")
        # The timing model paces one answer; a batch of prompts streams as fast as it can.
        due = replies[0].schedule(0, len(frames) - len(replies[0].pieces)) if len(replies) == 1 else None
        if not await self.model_fault(model, frames, drop_at=2, due=due):
            await self.send_sse(frames, due=due)


def texts(value: Any) -> list[str] | None:
    """The texts of an ``input`` or ``prompt``: a string, strings, one token array or token arrays
    (tokens read as their numbers); None when it is none of those."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list) and value:
        return [t if isinstance(t, str) else " ".join(map(str, t)) for t in value]
    return None


class Embeddings(OpenAIApi):
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
        inputs = texts(body["input"])
        if inputs is None:
            self.error(400, "'input' must be a non-empty string or array.", "input")
            return
        if await self.model_fault(model):
            return
        b64 = body.get("encoding_format") == "base64"  # the Python SDK's default!
        data, tokens = [], 0
        for i, text in enumerate(inputs):
            vec = embedding(text, dim)
            tokens += words(text)
            emb: Any = (base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
                        if b64 else vec)
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self.send_json(orjson.dumps({"object": "list", "data": data, "model": model,
                                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))


class Unknown(NotFound, OpenAIApi):
    pass


ROUTES = [
    (r"/openai/v1/chat/completions", Chat, {"stat": "openai.chat"}),
    (r"/openai/v1/completions", Completions, {"stat": "openai.completions"}),
    (r"/openai/v1/embeddings", Embeddings, {"stat": "openai.embeddings"}),
    (r"/openai/v1/models", Models, {"stat": "openai.models"}),
    (r"/openai/.*", Unknown),
]
