"""forge_mock.images, driven through the official ``openai`` SDK against a real mock process."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from mock_sdk import oai

from forge_mock.images import PNG

pytestmark = pytest.mark.timeout(30)


def test_generations_answer_as_the_model_does(mock_url):
    c = oai(mock_url)
    r = c.images.generate(model="gpt-image-1", prompt="a red cat", n=2, quality="high")
    assert [base64.b64decode(d.b64_json) for d in r.data] == [PNG, PNG]
    assert (r.size, r.quality, r.background, r.output_format) == ("1024x1024", "high", "opaque", "png")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (3, 2 * 4160, 3 + 2 * 4160)
    assert (r.usage.input_tokens_details.text_tokens, r.usage.input_tokens_details.image_tokens) == (3, 0)
    r = c.images.generate(model="dall-e-2", prompt="a red cat")
    assert r.data[0].url.startswith("https://images.mock.invalid/") and r.usage is None and r.size is None
    r = c.images.generate(model="dall-e-3", prompt="a red cat", response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == PNG and r.data[0].revised_prompt == "a red cat"


def test_generation_stream(mock_url):
    events = list(oai(mock_url).images.generate(model="gpt-image-1-mini", prompt="cat", stream=True, partial_images=3))
    assert [(e.type, getattr(e, "partial_image_index", None)) for e in events] == [
        ("image_generation.partial_image", 0), ("image_generation.partial_image", 1),
        ("image_generation.partial_image", 2), ("image_generation.completed", None)]
    assert events[-1].usage.output_tokens == 1056
    with httpx.stream("POST", mock_url + "/openai/v1/images/generations", headers={"Authorization": "Bearer k"},
                      json={"model": "gpt-image-1", "prompt": "cat", "stream": True}) as r:
        assert r.read().startswith(b"event: image_generation.completed\ndata: {")  # no [DONE]
        assert not r.read().endswith(b"[DONE]\n\n")


def test_edits_answer_the_first_image(mock_url):
    c = oai(mock_url)
    image = b"\r\n--not-a-boundary\r\n" + bytes(range(256))
    r = c.images.edit(model="gpt-image-1", prompt="blue", image=[("a.png", image, "image/png"), ("b.png", PNG)])
    assert base64.b64decode(r.data[0].b64_json) == image and r.usage.input_tokens_details.image_tokens == 2 * 194
    events = list(c.images.edit(model="gpt-image-1", prompt="blue", image=("a.png", image), stream=True,
                                partial_images=1))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    r = httpx.post(mock_url + "/openai/v1/images/edits", headers={"Authorization": "Bearer k"},
                   json={"model": "gpt-image-1", "prompt": "blue", "images": [{"image_url": url}]})
    assert base64.b64decode(r.json()["data"][0]["b64_json"]) == image


@pytest.mark.parametrize("call,param", [
    (lambda c: c.images.generate(model="openai/gpt-image-1", prompt="x"), "model"),
    (lambda c: c.images.generate(model="gpt-image-1", prompt="x", n=11), "n"),
    (lambda c: c.images.generate(model="dall-e-2", prompt="x", stream=True), "stream"),
    (lambda c: c.images.edit(model="gpt-image-1", prompt="x", image=[]), "image"),
])
def test_bad_requests_are_400s_in_openais_shape(mock_url, call, param):
    with pytest.raises(openai.BadRequestError) as e:
        call(oai(mock_url))
    assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error"


def test_faults(mock_url):
    c = oai(mock_url)
    with pytest.raises(openai.RateLimitError) as e:
        c.images.generate(model="fail-429", prompt="x")
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        c.images.edit(model="fail-500", prompt="x", image=("a.png", PNG))
    with pytest.raises(openai.APIConnectionError):
        list(c.images.generate(model="drop-mid-stream", prompt="x", stream=True))
