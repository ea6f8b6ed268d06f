"""``POST /v1/completions``, ``/v1/images/generations`` and ``/v1/images/edits``: OpenAI's legacy
text completions and its image API, passed through to ``openai``-kind providers.

Each is the chat path (a ``ChatHandler``) with a pass-through in its hooks, so authentication,
routing (``provider/model``, aliases), scoped keys, the cache layers, counters, Server-Timing,
body limits, the stream limit and usage rows are chat's. The body goes as sent with only ``model``
replaced: in a multipart edit only the ``model`` part changes, the image files go byte for byte.
The answer and the stream come back as they came, read only for usage (a text completion's
``prompt_tokens``/``completion_tokens``, an image model's ``input_tokens``/``output_tokens``).
Anthropic and Gemini have no such endpoints: other kinds get a 400 naming the kind.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Any

import orjson

from . import validation
from .adapters.base import SSEParser, Target, loads
from .adapters.openai import PassThroughStream
from .errors import BadRequest
from .handlers import ChatHandler
from .upstream import UpstreamRequest

# A JSON object after a "usage" key: not the ``"usage": null`` every chunk carries once include_usage
# is asked, nor the word inside a text (its quotes arrive escaped). Only such a frame is parsed.
USAGE = re.compile(rb'"usage"\s*:\s*\{')


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens of a text completion's or an image answer's ``usage``."""
    if not isinstance(usage, dict):
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (prompt if isinstance(prompt, int) else None), (completion if isinstance(completion, int) else None)


class UsageStream(PassThroughStream):
    """Frames passed on as they come (whole frames only); those that carry usage are read for it."""

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        super().__init__()
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._usage(super().feed(chunk))

    def close(self) -> list[bytes]:
        return self._usage(super().close())

    def _usage(self, frames: list[bytes]) -> list[bytes]:
        for _, data in self._parser.feed(b"".join(frames)):
            if USAGE.search(data) is None:
                continue
            try:
                prompt, completion = usage_tokens(orjson.loads(data).get("usage"))
            except (orjson.JSONDecodeError, AttributeError):
                continue  # not ours to judge: the client gets the frame as it came
            if prompt is not None or completion is not None:
                self.result.prompt_tokens, self.result.completion_tokens = prompt, completion
        return frames


class ImageStream(UsageStream):
    __slots__ = ()
    end_frame = None  # an image stream ends with its ``completed`` event, never ``[DONE]``


class Form:
    """A ``multipart/form-data`` body kept as its bytes: the text fields read, the ``model`` part
    rewritten, every other part passed on untouched (RFC 7578: parts are split at CRLF ``--boundary``)."""

    def __init__(self, data: bytes, content_type: str) -> None:
        boundary = _param(content_type, "boundary", "content-type")
        if not boundary or not boundary.isascii():
            raise BadRequest("a multipart/form-data body needs a boundary parameter", code="invalid_multipart")
        self.content_type = content_type
        self._delimiter = b"\r\n--" + boundary.encode()
        # With a CRLF in front, the first delimiter splits like the others; part 0 is the preamble.
        self._parts = (b"\r\n" + data).split(self._delimiter)
        if len(self._parts) < 3 or not self._parts[-1].startswith(b"--"):
            raise BadRequest("the multipart body has no parts or no closing boundary", code="invalid_multipart")
        self.fields: dict[str, Any] = {}
        self._model: int | None = None
        for i in range(1, len(self._parts) - 1):
            head, sep, value = self._parts[i].partition(b"\r\n\r\n")
            name, filename = _disposition(head)
            if not sep or name is None:
                raise BadRequest(f"multipart part {i} has no Content-Disposition name", code="invalid_multipart")
            if filename is not None:
                continue  # a file: its bytes are not ours to read
            if name == "model":
                if self._model is not None:
                    raise BadRequest("'model' is given more than once", param="model", code="invalid_multipart")
                self._model = i
            self.fields[name] = value.decode("utf-8", "replace")
        if "stream" in self.fields:
            # Exactly as the SDKs write booleans: whether the provider streams must not be a guess.
            if self.fields["stream"] not in ("true", "false"):
                raise BadRequest("'stream' must be true or false", param="stream", code="invalid_type")
            self.fields["stream"] = self.fields["stream"] == "true"

    def with_model(self, model: str) -> bytes:
        parts = list(self._parts)
        head = parts[self._model].partition(b"\r\n\r\n")[0]
        parts[self._model] = head + b"\r\n\r\n" + model.encode()
        return self._delimiter.join(parts)[2:]


def _param(value: str, name: str, header: str) -> str | None:
    """A parameter of a structured header value (``boundary``, ``name``, ``filename``)."""
    msg = Message()
    msg[header] = value
    got = msg.get_param(name, header=header)
    return got if isinstance(got, str) else None


def _disposition(head: bytes) -> tuple[str | None, str | None]:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            text = value.decode("utf-8", "replace").strip()
            return _param(text, "name", "content-disposition"), _param(text, "filename", "content-disposition")
    return None, None


class PassThrough:
    """What ``ChatHandler`` drives in place of the kind's adapter: one OpenAI endpoint, as is."""

    def __init__(self, inner, path: str, stream: type[UsageStream]) -> None:
        self.inner = inner
        self.path = path
        self.stream = stream

    def error(self, status: int, data: bytes, headers: dict[str, str]):
        return self.inner.error(status, data, headers)

    def payload(self, target: Target, body: dict) -> tuple[bytes, str]:
        return orjson.dumps(dict(body, model=target.model)), "application/json"

    def chat_request(self, target: Target, body: dict) -> UpstreamRequest:
        data, content_type = self.payload(target, body)
        headers = {"Authorization": "Bearer " + target.api_key, "Content-Type": content_type}
        return UpstreamRequest("POST", target.base_url + self.path, headers, data)

    def chat_stream(self, target: Target, body: dict) -> UsageStream:
        return self.stream()


class FormPassThrough(PassThrough):
    def __init__(self, inner, path: str, stream: type[UsageStream], form: Form) -> None:
        super().__init__(inner, path, stream)
        self.form = form

    def payload(self, target: Target, body: dict) -> tuple[bytes, str]:
        return self.form.with_model(target.model), self.form.content_type


class CompletionsHandler(ChatHandler):
    # The response cache replays chat answers only (and an image edit's key would miss its files).
    response_cache = False
    validate = staticmethod(validation.completions_body)
    path = "/completions"  # under the provider's base URL
    endpoint = "legacy completions"  # in errors
    stream = UsageStream

    def _ingress(self, adapter, row, body: dict) -> tuple[PassThrough, dict]:
        if row.kind != "openai":
            raise BadRequest(f"kind {row.kind!r} has no {self.endpoint} endpoint", param="model",
                             code="unsupported_operation")
        return PassThrough(adapter, self.path, self.stream), body

    def _answer(self, adapter, target: Target, data: bytes) -> tuple[bytes, int | None, int | None]:
        return (data, *usage_tokens(loads(data, self.endpoint).get("usage")))


class ImagesHandler(CompletionsHandler):
    validate = staticmethod(validation.images_body)
    path = "/images/generations"
    endpoint = "images/generations"
    stream = ImageStream


class ImageEditsHandler(ImagesHandler):
    """JSON as generations, or a multipart form (how the SDKs send image files)."""

    path = "/images/edits"
    endpoint = "images/edits"
    form: Form | None = None

    def json_body(self) -> dict:
        content_type = self.request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return super().json_body()
        self.form = Form(self.body(), content_type)
        return self.form.fields

    def _ingress(self, adapter, row, body: dict) -> tuple[PassThrough, dict]:
        passed, body = super()._ingress(adapter, row, body)
        if self.form is not None:
            passed = FormPassThrough(adapter, self.path, self.stream, self.form)
        return passed, body
