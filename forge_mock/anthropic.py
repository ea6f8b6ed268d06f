"""Anthropic's API under ``/anthropic``: ``/v1/messages`` (SSE with ``stream``),
``/v1/messages/count_tokens`` and ``/v1/models``."""

from __future__ import annotations

import orjson

from .base import Api, NotFound, sse_event
from .replies import make_reply, scan, wants_tool

MODELS_LIST = [
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-1", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
]
MODELS = orjson.dumps({
    "data": [{"type": "model", "id": i, "display_name": d, "created_at": c}
             for i, d, c in MODELS_LIST],
    "has_more": False, "first_id": MODELS_LIST[0][0], "last_id": MODELS_LIST[-1][0]})
TYPES = {400: "invalid_request_error", 401: "authentication_error",
         404: "not_found_error", 429: "rate_limit_error", 500: "api_error"}
# Like the real API, an ``anthropic-beta`` value it does not know is a 400: a test can see a
# beta header arrive (or not) without the mock echoing requests.
BETAS = frozenset({
    "claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14",
    "context-1m-2025-08-07", "context-management-2025-06-27", "prompt-caching-2024-07-31",
    "token-counting-2024-11-01", "output-128k-2025-02-19", "files-api-2025-04-14",
})
PING = sse_event(b"ping", {"type": "ping"})
STOP = sse_event(b"message_stop", {"type": "message_stop"})


class AnthropicApi(Api):
    MISSING_KEY = "x-api-key header is required"  # real API's wording
    INVALID_KEY = "invalid x-api-key"
    BAD_BODY = "There was an issue with the request body: invalid JSON."
    SERVER_ERROR = "Internal server error"
    RATE_LIMIT = "Number of requests has exceeded your rate limit. Please try again later."
    BAD_SSE = b"event: message_start\ndata: {not valid json\n\n"

    def api_key(self) -> str | None:
        # anthropic-python >= 2.x sends the key as "Authorization: Bearer",
        # older SDKs and raw clients as x-api-key: accept both.
        key = self.request.headers.get("x-api-key")
        if key:
            return key
        auth = self.request.headers.get("Authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return None

    def check_headers(self) -> bool:
        # Like the real API: a missing version header is a 400, not a 401.
        if not self.request.headers.get("anthropic-version"):
            self.error(400, "anthropic-version: header is required")
            return False
        betas = {b.strip() for b in self.request.headers.get("anthropic-beta", "").split(",") if b.strip()}
        if betas - BETAS:
            unknown = ", ".join(f"`{b}`" for b in sorted(betas - BETAS))
            self.error(400, f"Unexpected value(s) {unknown} for the `anthropic-beta` header. Please consult "
                            "our documentation at docs.anthropic.com or try again without the header.")
            return False
        return True

    def error(self, status: int, message: str, param: str | None = None,
              code: str | None = None) -> None:
        self.send_json(orjson.dumps({"type": "error", "error": {
            "type": TYPES.get(status, "api_error"), "message": message}}), status)

    async def messages_body(self, required: tuple[str, ...]) -> dict | None:
        """Auth, then a body with the ``required`` fields and at least one message. None = answered."""
        if not await self.begin():
            return None
        body = self.body_json()
        if body is None:
            return None
        for field in required:
            if body.get(field) is None:
                self.error(400, f"{field}: Field required")
                return None
        if not isinstance(body["messages"], list) or not body["messages"]:
            self.error(400, "messages: at least one message is required")
            return None
        return body


def prompt(body: dict) -> tuple[int, str, bool]:
    """``scan`` over a Messages body; a user turn made only of tool_result blocks is a tool-result turn."""
    return scan((
        (m.get("role") == "user", m.get("content"), isinstance(m.get("content"), list)
         and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"]))
        for m in body["messages"] if isinstance(m, dict)), body.get("system"))


class Models(AnthropicApi):
    async def get(self) -> None:
        await self.list_models(MODELS)


class Messages(AnthropicApi):
    DEFER_SHAPE_FAULTS = True

    async def post(self) -> None:
        body = await self.messages_body(("model", "max_tokens", "messages"))
        if body is None:
            return
        model = str(body["model"])
        stream = bool(body.get("stream"))

        prompt_words, user_text, ends_user = prompt(body)
        tools, tool = body.get("tools"), None
        choice = body.get("tool_choice")
        if (wants_tool(ends_user, user_text, tools)
                and not (isinstance(choice, dict) and choice.get("type") == "none")):
            tool = tools[0].get("name")
        reply = make_reply(self.application.timing, user_text, tool,
                           (2 if tool else self.application.chunks) if stream else 1)
        output = reply.tokens
        n = self.next_id()
        mid, tid = f"msg_mock_{n}", f"toolu_mock_{n}"
        stop = "tool_use" if tool else "end_turn"

        if not stream:
            if await self.model_fault(model):
                return
            await self.pause(reply.latency)
            content = ({"type": "tool_use", "id": tid, "name": tool, "input": {"query": user_text}}
                       if tool else {"type": "text", "text": reply.text})
            self.send_json(orjson.dumps({
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [content], "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": prompt_words, "output_tokens": output}}))
            return

        if tool:
            block = {"type": "tool_use", "id": tid, "name": tool, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in reply.pieces]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in reply.pieces]
        frames = [
            sse_event(b"message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": prompt_words, "output_tokens": 1}}}),
            sse_event(b"content_block_start", {
                "type": "content_block_start", "index": 0, "content_block": block}),
            PING,
            *[sse_event(b"content_block_delta", {
                "type": "content_block_delta", "index": 0, "delta": d}) for d in deltas],
            sse_event(b"content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse_event(b"message_delta", {
                "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output}}),
            STOP,
        ]
        due = reply.schedule(3, 3)  # message_start, content_block_start, ping | stop, delta, message_stop
        if not await self.model_fault(model, frames, drop_at=5, due=due):
            await self.send_sse(frames, due=due)


class CountTokens(AnthropicApi):
    """The tokens a Messages request would take as input: the same count its answer's usage says."""

    async def post(self) -> None:
        body = await self.messages_body(("model", "messages"))
        if body is None:
            return
        if not await self.model_fault(str(body["model"])):
            self.send_json(orjson.dumps({"input_tokens": prompt(body)[0]}))


class Unknown(NotFound, AnthropicApi):
    pass


ROUTES = [
    (r"/anthropic/v1/messages", Messages, {"stat": "anthropic.messages"}),
    (r"/anthropic/v1/messages/count_tokens", CountTokens, {"stat": "anthropic.count_tokens"}),
    (r"/anthropic/v1/models", Models, {"stat": "anthropic.models"}),
    (r"/anthropic/.*", Unknown),
]
