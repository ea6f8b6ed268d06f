"""OpenAI's image API under ``/openai/v1/images``: ``generations`` (JSON) and ``edits`` (multipart
form with the image files, or JSON with data URLs), answered as the real API does per model:

* ``dall-e-2`` / ``dall-e-3``: ``url`` unless ``response_format`` is ``b64_json``; dall-e-3 adds
  ``revised_prompt``; no usage, no streaming (a 400).
* GPT image models (``gpt-image-*``, ``chatgpt-image-*``): always ``b64_json``, with the output's
  ``size``, ``quality``, ``background``, ``output_format`` and token ``usage``; ``stream: true``
  sends ``partial_images`` partial images, then the completed one (SSE events with their ``type``
  as event name, no ``[DONE]``).

Any other model is a 400, as upstream: a model name that reaches here unrewritten fails loudly.
A generated image is a 1x1 PNG; an edit answers the first image it was given, byte for byte, so a
test sees the files arrive intact.
"""

from __future__ import annotations

import base64
import binascii
import time

import orjson

from .base import fault_of, sse_event
from .openai import OpenAIApi
from .replies import words

# A 1x1 transparent PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
                        "RU5ErkJggg==")
GPT_IMAGE = ("gpt-image-", "chatgpt-image-")
DALL_E = ("dall-e-2", "dall-e-3")
SUPPORTED = "'gpt-image-1', 'gpt-image-1-mini', 'gpt-image-1.5', 'dall-e-2' and 'dall-e-3'"
# Output tokens of a 1024x1024 image per quality (OpenAI's published table).
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
IMAGE_INPUT_TOKENS = 194  # per input image of an edit (a 1024x1024 image at the default fidelity)


class Images(OpenAIApi):
    DEFER_SHAPE_FAULTS = True
    event = b"image_generation"

    def fields(self) -> dict | None:
        return self.body_json()

    def source(self, body: dict) -> tuple[bytes, int] | None:
        """The picture to answer and the number of input images (None: a 400 was sent)."""
        return PNG, 0

    async def post(self) -> None:
        if not await self.begin():
            return
        body = self.fields()
        if body is None or not self.require(body, "prompt"):
            return
        model = str(body.get("model") or "dall-e-2")
        gpt = model.startswith(GPT_IMAGE) or fault_of(model) is not None  # a fault name acts as a GPT image model
        if not gpt and not model.startswith(DALL_E):
            self.error(400, f"Invalid value: '{model}'. Supported values are: {SUPPORTED}.", "model", "invalid_value")
            return
        count = body.get("n") or 1
        if not isinstance(count, int) or not 1 <= count <= 10:
            self.error(400, "Invalid value for 'n': expected an integer from 1 to 10.", "n", "invalid_value")
            return
        source = self.source(body)
        if source is None:
            return
        picture, images = source
        prompt = str(body["prompt"])
        b64 = base64.b64encode(picture).decode()
        created = int(time.time())
        if not gpt:
            if body.get("stream"):
                self.error(400, f"Streaming is not supported for model '{model}'.", "stream", "unsupported_value")
                return
            if await self.model_fault(model):
                return
            if body.get("response_format") == "b64_json":
                data = [{"b64_json": b64} for _ in range(count)]
            else:
                data = [{"url": f"https://images.mock.invalid/{self.next_id()}.png"} for _ in range(count)]
            if model == "dall-e-3":
                for item in data:
                    item["revised_prompt"] = prompt
            self.send_json(orjson.dumps({"created": created, "data": data}))
            return
        quality = body.get("quality") if body.get("quality") in OUTPUT_TOKENS else "medium"
        output = {"size": "1024x1024", "quality": quality, "background": "opaque", "output_format": "png"}
        text_tokens, image_tokens = words(prompt), IMAGE_INPUT_TOKENS * images
        usage = {"input_tokens": text_tokens + image_tokens, "output_tokens": OUTPUT_TOKENS[quality] * count,
                 "total_tokens": text_tokens + image_tokens + OUTPUT_TOKENS[quality] * count,
                 "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens}}
        if not body.get("stream"):
            if not await self.model_fault(model):
                self.send_json(orjson.dumps({"created": created, "data": [{"b64_json": b64}] * count,
                                             "usage": usage, **output}))
            return
        partial = self.event + b".partial_image"
        frames = [sse_event(partial, {"type": partial.decode(), "b64_json": b64, "created_at": created,
                                      "partial_image_index": i, **output})
                  for i in range(partial_images(body.get("partial_images")))]
        done = self.event + b".completed"
        frames.append(sse_event(done, {"type": done.decode(), "b64_json": b64, "created_at": created,
                                       "usage": usage, **output}))
        if not await self.model_fault(model, frames, drop_at=1):
            await self.send_sse(frames)


def partial_images(value) -> int:
    """``partial_images`` (0 to 3) as sent in JSON or as a form field."""
    try:
        return min(3, max(0, int(value or 0)))
    except (TypeError, ValueError):
        return 0


class Edits(Images):
    """Multipart, as the SDK sends it (``image`` or ``image[]`` files), or JSON (``images`` as data URLs)."""

    event = b"image_edit"

    def fields(self) -> dict | None:
        if not self.request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            return self.body_json()
        fields: dict = {name: values[-1].decode() for name, values in self.request.body_arguments.items()}
        if "stream" in fields:
            fields["stream"] = fields["stream"] == "true"
        if "n" in fields:
            fields["n"] = int(fields["n"]) if fields["n"].isdigit() else fields["n"]
        return fields

    def source(self, body: dict) -> tuple[bytes, int] | None:
        files = self.request.files.get("image") or self.request.files.get("image[]")
        if files:
            return files[0].body, len(files)
        images = body.get("images")
        if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
            self.error(400, "Missing required parameter: 'image'.", "image", "missing_required_parameter")
            return None
        url = images[0].get("image_url")
        if isinstance(url, str) and url.startswith("data:") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=True), len(images)
            except binascii.Error:
                pass
        self.error(400, "Invalid image: expected a base64 data URL.", "images", "invalid_image_url")
        return None


ROUTES = [
    (r"/openai/v1/images/generations", Images, {"stat": "openai.images.generations"}),
    (r"/openai/v1/images/edits", Edits, {"stat": "openai.images.edits"}),
]
