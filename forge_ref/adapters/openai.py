"""Kind ``openai``: OpenAI and every OpenAI-compatible endpoint. Almost a pass-through.

Bodies are forwarded with only ``model`` replaced; responses go back untouched (no re-encoding
on the hot path). Streams are passed on frame by frame: bytes are cut at the last complete SSE
frame (LF or CRLF line ends) so that an error frame after a dropped connection never lands inside
a half-sent one.
"""

from __future__ import annotations

import re

import orjson

from ..errors import ForgeError
from ..upstream import UpstreamRequest
from .base import DONE_FRAME, SSEParser, StreamResult, Target, loads, status_error


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + api_key, "Content-Type": "application/json"}


# Usage and the finish reason are not looked for in every block (the stream's hot path): the
# protocol puts them in the last frames, [finish chunk(s)], [usage chunk], [DONE], so they are
# looked for once, at the end, in the last three blocks (each block holds at least one frame).
# There a bytes search comes first: a JSON object after a "usage" key (not the ``null`` every
# chunk carries once include_usage is asked, nor the word in a reply, whose quotes arrive
# escaped) marks the one frame worth parsing.
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z_]{1,64})"')
_DONE = DONE_FRAME.strip()
_CRLF_DONE = _DONE + b"\r\n\r\n"


def _frames_end(buf: bytes) -> int:
    """Where the last complete frame ends (0: none yet): a blank line, after LF or CRLF line ends."""
    end = buf.rfind(b"\n\n") + 2
    if buf.find(b"\r") >= 0:  # one byte (memchr): LF-only streams, most of them, pay almost nothing
        end = max(end, buf.rfind(b"\n\r\n") + 3)
    return end if end > 2 else 0


class PassThroughStream:
    """Passes whole frames on untouched; at the end, reads usage and the finish reason for the usage row."""

    __slots__ = ("_tail", "_last", "_done", "result")
    end_frame: bytes | None = DONE_FRAME  # what a stream that ended without it gets

    def __init__(self) -> None:
        self._tail = b""
        self._last = (b"", b"")  # the two blocks passed on before this one
        self._done = False
        self.result = StreamResult()

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._tail + chunk if self._tail else chunk
        end = _frames_end(buf)
        if end == 0:
            self._tail = buf
            return []
        self._tail = buf[end:]
        frames = buf[:end]
        if frames.endswith(DONE_FRAME) or frames.endswith(_CRLF_DONE):
            self._done = True
            self._read_end(frames)
        else:
            self._last = (self._last[1], frames)
        return [frames]

    def _read_end(self, frames: bytes) -> None:
        end = self._last[0] + self._last[1] + frames
        reasons = _FINISH.findall(end)
        if reasons:
            self.result.finish_reason = reasons[-1].decode()
        if _USAGE.search(end) is None:
            return
        for _, data in SSEParser().feed(end):
            if _USAGE.search(data) is None:
                continue
            try:
                usage = orjson.loads(data).get("usage")
            except (orjson.JSONDecodeError, AttributeError):
                continue  # not ours to judge: the client gets the frame as it came
            if isinstance(usage, dict):
                prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
                if type(prompt) is int and type(completion) is int:
                    self.result.prompt_tokens, self.result.completion_tokens = prompt, completion

    def close(self) -> list[bytes]:
        out = [self._tail + b"\n\n"] if self._tail.strip() else []
        self._tail = b""
        if not self._done:
            self._done = True
            self._read_end(b"".join(out))
            if self.end_frame and not (out and out[-1].strip() == _DONE):
                out.append(self.end_frame)  # some OpenAI-compatible servers end without [DONE]; clients wait for it
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
