"""Kind ``openai``: OpenAI and every OpenAI-compatible endpoint. Almost a pass-through.

Bodies are forwarded with only ``model`` replaced; responses go back untouched (no re-encoding
on the hot path). Streams are passed on frame by frame: bytes are cut at the last complete SSE
frame so that an error frame after a dropped connection never lands inside a half-sent one.
"""

from __future__ import annotations

import orjson

from ..errors import ForgeError
from ..upstream import UpstreamRequest
from .base import DONE_FRAME, StreamResult, Target, loads, status_error


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + api_key, "Content-Type": "application/json"}


class PassThroughStream:
    __slots__ = ("_tail", "_done", "result")
    end_frame: bytes | None = DONE_FRAME  # what a stream that ended without it gets

    def __init__(self) -> None:
        self._tail = b""
        self._done = False
        self.result = StreamResult()

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._tail + chunk if self._tail else chunk
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._tail = buf
            return []
        self._tail = buf[end + 2 :]
        frames = buf[: end + 2]
        if frames.endswith(DONE_FRAME):
            self._done = True
        return [frames]

    def close(self) -> list[bytes]:
        out = []
        if self._tail.strip():
            out.append(self._tail + b"\n\n")
            if self._tail.strip() == DONE_FRAME.strip():
                self._done = True
        self._tail = b""
        if not self._done and self.end_frame:
            # Some OpenAI-compatible servers end without [DONE]; clients wait for it.
            out.append(self.end_frame)
        return out


class OpenAIAdapter:
    kind = "openai"
    embeddings_merge = frozenset({"text", "tokens"})  # batching (``forge_ref.batching``): any list merges

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        body = dict(body, model=target.model)
        return UpstreamRequest(
            "POST", target.base_url + "/chat/completions", _headers(target.api_key), orjson.dumps(body)
        )

    def chat_response(self, target: Target, data: bytes) -> dict:
        return loads(data, "chat completion")

    def chat_stream(self, target: Target, body: dict) -> PassThroughStream:
        return PassThroughStream()

    def embeddings_request(self, target: Target, body: dict) -> UpstreamRequest:
        body = dict(body, model=target.model)
        return UpstreamRequest("POST", target.base_url + "/embeddings", _headers(target.api_key), orjson.dumps(body))

    def embeddings_response(self, target: Target, data: bytes, body: dict) -> dict:
        return loads(data, "embeddings")

    def models_request(self, base_url: str, api_key: str) -> UpstreamRequest:
        return UpstreamRequest("GET", base_url + "/models", {"Authorization": "Bearer " + api_key}, purpose="models")

    def models_response(self, data: bytes) -> list[str]:
        items = loads(data, "model list").get("data")
        if not isinstance(items, list):
            return []
        return [m["id"] for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def error(self, status: int, data: bytes, headers: dict[str, str]) -> ForgeError:
        message = "no detail"
        try:
            err = orjson.loads(data).get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                message = err["message"]
            elif isinstance(err, str):
                message = err
        except (orjson.JSONDecodeError, AttributeError):
            pass
        return status_error(status, message[:500], headers)
