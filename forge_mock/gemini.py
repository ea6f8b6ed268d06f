"""Gemini's API under ``/gemini``: ``/v1beta/models`` and ``/v1beta/models/{m}:{method}``.

Methods: ``generateContent``, ``streamGenerateContent`` (SSE with ``?alt=sse``, else one JSON
array), ``embedContent``, ``batchEmbedContents``. ``/v1/`` is accepted for ``/v1beta/``.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import Api, NotFound, sse
from .replies import DEFAULT_EMBED_DIM, embedding, make_reply, parts_text, scan, wants_tool

_GEN = ["generateContent", "countTokens"]
MODELS = orjson.dumps({"models": [
    {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "supportedGenerationMethods": _GEN},
    {"name": "models/gemini-2.5-pro", "version": "001", "displayName": "Gemini 2.5 Pro",
     "inputTokenLimit": 1048576, "outputTokenLimit": 65536, "supportedGenerationMethods": _GEN},
    {"name": "models/text-embedding-004", "version": "004", "displayName": "Text Embedding 004",
     "inputTokenLimit": 2048, "outputTokenLimit": 1,
     "supportedGenerationMethods": ["embedContent"]},
]})
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


class GeminiApi(Api):
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
            "status": STATUS.get(status, "UNKNOWN")}}), status)


class Models(GeminiApi):
    async def get(self) -> None:
        await self.list_models(MODELS)


def _embed(req: Any) -> list[float] | None:
    if not isinstance(req, dict) or not isinstance(req.get("content"), dict):
        return None
    dim = req.get("outputDimensionality") or DEFAULT_EMBED_DIM
    text = parts_text(req["content"].get("parts"))
    return list(embedding(text, max(1, min(int(dim), 8192))))


class ModelMethod(GeminiApi):
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
            vec = _embed(body)
            if vec is None:
                self.error(400, "* EmbedContentRequest.content: content is not specified")
            elif not await self.model_fault(model):
                self.send_json(orjson.dumps({"embedding": {"values": vec}}))
        elif method == "batchEmbedContents":
            reqs = body.get("requests")
            vecs = [_embed(r) for r in reqs] if isinstance(reqs, list) and reqs else [None]
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
        prompt_words, user_text, ends_user = scan((
            (c.get("role", "user") == "user", c.get("parts"), isinstance(c.get("parts"), list)
             and any(isinstance(p, dict) and "functionResponse" in p for p in c["parts"]))
            for c in contents if isinstance(c, dict)),
            system.get("parts") if isinstance(system, dict) else None)
        tools, tool = body.get("tools"), None
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        if wants_tool(ends_user, user_text, tools) and mode != "NONE":
            decls = [d for t in tools for d in (t.get("functionDeclarations") or [])]
            tool = decls[0].get("name") if decls else None
        # A function call is one part: it is not split.
        reply = make_reply(self.application.timing, user_text, tool,
                           self.application.chunks if stream and not tool else 1)
        output = reply.tokens
        if tool:
            pieces = [[{"functionCall": {"name": tool, "args": {"query": user_text}}}]]
        else:
            pieces = [[{"text": p}] for p in reply.pieces]
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

        last = len(pieces) - 1
        if not stream or self.get_query_argument("alt", None) != "sse":
            # Not streamed, or streamed without ?alt=sse: then the real API sends one JSON array.
            if not await self.model_fault(model):
                await self.pause(reply.latency)
                self.send_json(orjson.dumps([response(p, i == last) for i, p in enumerate(pieces)]
                                            if stream else response(pieces[0], True)))
            return
        frames = [sse(response(p, i == last)) for i, p in enumerate(pieces)]
        if not await self.model_fault(model, frames, due=reply.due):
            await self.send_sse(frames, due=reply.due)


class Unknown(NotFound, GeminiApi):
    pass


ROUTES = [
    (r"/gemini/v1(?:beta)?/models", Models, {"stat": "gemini.models"}),
    (r"/gemini/v1(?:beta)?/models/([^/:]+):([A-Za-z]+)", ModelMethod),
    (r"/gemini/.*", Unknown),
]
