"""What every provider adapter is: pure translation between OpenAI's wire format and a provider's.

Adapters are stateless: they hold no per-user or per-request data, so one instance per kind
can be shared by every request (the ``adapters`` cache layer). Everything a call needs comes
in through a ``Target``; the HTTP exchange itself is done by the caller over the shared
upstream client, which keeps adapters testable without a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from ..errors import ForgeError, UpstreamError
from ..upstream import UpstreamRequest

DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: provider base URL, decrypted key, upstream model name."""

    base_url: str
    api_key: str
    model: str  # the provider's own model name
    label: str  # what the client asked for (``provider/model`` or an alias), echoed back


@dataclass(slots=True)
class StreamResult:
    """Filled in by a stream translator as it goes; read once the stream ends (usage logging)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: ForgeError | None = None


class StreamTranslator(Protocol):
    result: StreamResult

    def feed(self, chunk: bytes) -> list[bytes]:
        """Upstream bytes in (any split), complete OpenAI SSE frames out (``b"data: ...\\n\\n"``)."""

    def close(self) -> list[bytes]:
        """Upstream ended cleanly: the last frames, ending with ``DONE_FRAME``."""


class Adapter(Protocol):
    kind: str
    embeddings_merge: frozenset[str]  # input forms ("text", "tokens") one merged embeddings call can carry

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest: ...
    def chat_response(self, target: Target, data: bytes) -> dict: ...
    def chat_stream(self, target: Target, body: dict) -> StreamTranslator: ...
    def embeddings_request(self, target: Target, body: dict) -> UpstreamRequest: ...
    def embeddings_response(self, target: Target, data: bytes, body: dict) -> dict: ...
    def models_request(self, base_url: str, api_key: str) -> UpstreamRequest: ...
    def models_response(self, data: bytes) -> list[str]: ...
    def error(self, status: int, data: bytes, headers: dict[str, str]) -> ForgeError: ...


def loads(data: bytes, what: str) -> dict:
    """Parse an upstream JSON body; anything unusable is the upstream's fault (502)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"upstream returned invalid JSON for {what}") from None
    if not isinstance(value, dict):
        raise UpstreamError(f"upstream returned an unexpected {what} body")
    return value


def sse_frame(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_frame(err: ForgeError) -> bytes:
    """An error inside an SSE stream (headers are already sent, so no status can carry it)."""
    return b"data: " + err.body() + b"\n\n"


def status_error(status: int, message: str, headers: dict[str, str]) -> ForgeError:
    """Map an upstream failure status to what the client sees (DESIGN: 429 passes, else 502)."""
    if status == 429:
        out = {}
        if "retry-after" in headers:
            out["Retry-After"] = headers["retry-after"]
        return ForgeError(message, status=429, type="rate_limit_error", code="rate_limit_exceeded", headers=out)
    if status in (400, 404, 422):
        # The request itself was wrong for this provider: tell the client, not "bad gateway".
        return ForgeError(message, status=status, type="invalid_request_error", code="upstream_rejected")
    if status in (401, 403):
        # The user's stored provider key is bad; that is not the Forge key's fault (never 401).
        return UpstreamError(f"provider rejected the stored key: {message}", code="provider_auth_failed")
    return UpstreamError(f"upstream error {status}: {message}")


class SSEParser:
    """Incremental Server-Sent Events parser: bytes in any split, (event, data) pairs out."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        events = []
        for block in buf[:end].split(b"\n\n"):
            event = None
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
            if data or event:
                events.append((event, b"\n".join(data)))
        return events


class JsonEventStream:
    """The skeleton both translating streams share: SSE bytes in, one JSON event at a time to
    ``_event`` (the provider-specific part), OpenAI frames out; a final usage chunk when asked.

    Subclasses set ``_usage`` (include_usage asked) and implement ``_event`` and ``_usage_frame``.
    """

    __slots__ = ()

    def _fail(self, err: ForgeError) -> list[bytes]:
        self.result.error = err
        self._done = True
        return [error_frame(err), DONE_FRAME]

    def _event(self, ev: dict) -> list[bytes]:
        raise NotImplementedError

    def _usage_frame(self) -> bytes:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        for _, data in self._parser.feed(chunk):
            if self._done:
                break
            try:
                ev = orjson.loads(data)
            except orjson.JSONDecodeError:
                out.extend(self._fail(UpstreamError("upstream sent an invalid stream event")))
                break
            if isinstance(ev, dict):
                out.extend(self._event(ev))
        return out

    def close(self) -> list[bytes]:
        # A final event without its blank line is still an event.
        out = self.feed(b"\n\n") if not self._done else []
        if self._done:
            return out
        self._done = True
        if self._usage:
            out.append(self._usage_frame())
        out.append(DONE_FRAME)
        return out
