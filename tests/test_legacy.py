"""``forge_ref.legacy``: ``/v1/completions`` and ``/v1/images/{generations,edits}`` through ``forge-ref serve``
and the mock provider (real processes), driven by the official ``openai`` SDK and raw HTTP; and the
multipart rewrite and usage-reading stream on their own.

The mock answers exactly ("Mock reply to: <prompt>", tokens are words; a generated image is its 1x1 PNG,
an edit answers the first image it was given) and refuses model names it does not know, so an answer
proves the body reached it with ``model`` rewritten.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time

import httpx
import openai
import pytest
from support import ADMIN, MockProcess, ServerProcess, add_provider, create_user

from forge_mock.images import PNG
from forge_ref.legacy import Form, ImageStream, UsageStream

pytestmark = pytest.mark.timeout(60)

INSTRUCT = "openai/gpt-3.5-turbo-instruct"
# Bytes a naive multipart parser trips on: CRLFs, dashes, a line that looks like a boundary.
IMAGE = b"\x89PNG\r\n\x1a\n" + b"\r\n--\r\n\r\n--boundary-like\r\n" + bytes(range(256))
KINDS = {"anthropic": "anthropic/claude-haiku-4-5", "gemini": "gemini/gemini-2.5-flash"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("legacy")
    mock = MockProcess()
    server = ServerProcess(tmp, "--server-timing", env={"FORGE_USAGE_FLUSH_INTERVAL": "0.1"})
    key = create_user(server.url)
    for provider, path, mapping in (("openai", "/openai/v1", {"instruct": "gpt-3.5-turbo-instruct"}),
                                    ("anthropic", "/anthropic", {}), ("gemini", "/gemini", {})):
        r = add_provider(server.url, key, provider=provider, kind=provider, api_key=f"sk-{provider}-legacy-secret",
                         base_url=mock.url + path, model_mapping=mapping)
        assert r.status_code == 201, r.text
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=10)
    yield server, mock, key, client, tmp / "e2e.db"
    server.stop()
    mock.stop()


def post(server, key, path, **kw) -> httpx.Response:
    return httpx.post(server.url + path, headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})}, **kw)


def usage_rows(db, after: int) -> list[tuple]:
    time.sleep(0.4)  # past the usage flush interval
    return sqlite3.connect(db).execute("SELECT model, status, prompt_tokens, completion_tokens FROM usage "
                                       "WHERE rowid > ? ORDER BY rowid", (after,)).fetchall()


def last_row(db) -> int:
    time.sleep(0.4)
    return sqlite3.connect(db).execute("SELECT coalesce(max(rowid), 0) FROM usage").fetchone()[0]


# --- text completions ---------------------------------------------------------------------------


def test_completion(env):
    _, _, _, client, _ = env
    r = client.completions.create(model=INSTRUCT, prompt="hello legacy")
    assert r.object == "text_completion" and r.model == "gpt-3.5-turbo-instruct"  # the provider's answer, as is
    assert [(c.index, c.text, c.finish_reason, c.logprobs) for c in r.choices] == [(0, "Mock reply to: hello legacy",
                                                                                    "stop", None)]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 5, 7)


def test_completion_by_alias_and_batched_prompts(env):
    _, _, _, client, _ = env
    r = client.completions.create(model="instruct", prompt=["one two", "three"])
    assert [c.text for c in r.choices] == ["Mock reply to: one two", "Mock reply to: three"]
    r = client.completions.create(model="instruct", prompt=[[7, 8], [9]])
    assert [c.text for c in r.choices] == ["Mock reply to: 7 8", "Mock reply to: 9"]


def test_completion_stream_is_the_providers_frame_by_frame(env):
    server, mock, key, client, _ = env
    body = {"prompt": "stream me", "stream": True, "stream_options": {"include_usage": True}}

    def frames(response: httpx.Response) -> list[dict | str]:
        out = []
        for line in response.iter_lines():
            if line.startswith("data: {"):
                frame = json.loads(line[6:])
                assert frame.pop("id").startswith("cmpl-mock-") and isinstance(frame.pop("created"), int)
                out.append(frame)
            elif line:
                out.append(line)
        return out

    with httpx.stream("POST", mock.url + "/openai/v1/completions", json=dict(body, model="gpt-3.5-turbo-instruct"),
                      headers={"Authorization": "Bearer sk-direct"}) as direct:
        expected = frames(direct)
    with httpx.stream("POST", server.url + "/v1/completions", json=dict(body, model=INSTRUCT),
                      headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        assert frames(r) == expected
    assert expected[-1] == "data: [DONE]" and len(expected) == 4 + 1 + 1 + 1  # pieces, finish, usage, [DONE]
    chunks = list(client.completions.create(model=INSTRUCT, prompt="stream me", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Mock reply to: stream me"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 5)


# --- images -------------------------------------------------------------------------------------


def test_image_generation_b64_json_and_url(env):
    _, _, _, client, _ = env
    r = client.images.generate(model="openai/gpt-image-1", prompt="a red cat", quality="low")
    assert base64.b64decode(r.data[0].b64_json) == PNG and r.data[0].url is None
    assert (r.quality, r.size, r.usage.input_tokens, r.usage.output_tokens) == ("low", "1024x1024", 3, 272)
    r = client.images.generate(model="openai/dall-e-2", prompt="a red cat", n=2)
    assert [d.url.startswith("https://images.mock.invalid/") for d in r.data] == [True, True] and r.usage is None
    r = client.images.generate(model="openai/dall-e-3", prompt="a red cat", response_format="b64_json")
    assert base64.b64decode(r.data[0].b64_json) == PNG and r.data[0].revised_prompt == "a red cat"


def test_image_generation_stream(env):
    _, _, _, client, _ = env
    events = list(client.images.generate(model="openai/gpt-image-1", prompt="a red cat", stream=True,
                                         partial_images=2))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert base64.b64decode(events[-1].b64_json) == PNG and events[-1].usage.output_tokens == 1056


def test_image_edit_multipart_passes_the_files_byte_for_byte(env):
    _, _, _, client, _ = env
    r = client.images.edit(model="openai/gpt-image-1", prompt="make it blue",
                           image=[("a.png", IMAGE, "image/png"), ("b.png", PNG, "image/png")],
                           mask=("mask.png", PNG, "image/png"))
    assert base64.b64decode(r.data[0].b64_json) == IMAGE
    assert (r.usage.input_tokens_details.image_tokens, r.usage.input_tokens_details.text_tokens) == (2 * 194, 3)
    events = list(client.images.edit(model="openai/gpt-image-1", prompt="blue", image=("a.png", IMAGE, "image/png"),
                                     stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert base64.b64decode(events[-1].b64_json) == IMAGE


def test_image_edit_as_json(env):
    server, _, key, _, _ = env
    url = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    r = post(server, key, "/v1/images/edits", json={"model": "openai/gpt-image-1", "prompt": "blue",
                                                     "images": [{"image_url": url}]})
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["data"][0]["b64_json"]) == IMAGE


# --- refusals and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("endpoint", ["completions", "images/generations", "images/edits"])
def test_other_kinds_are_a_clear_400_before_any_upstream_call(env, kind, endpoint):
    _, mock, _, client, _ = env
    mock.reset()
    calls = {"completions": lambda: client.completions.create(model=KINDS[kind], prompt="x"),
             "images/generations": lambda: client.images.generate(model=KINDS[kind], prompt="x"),
             "images/edits": lambda: client.images.edit(model=KINDS[kind], prompt="x", image=("a.png", PNG))}
    with pytest.raises(openai.BadRequestError) as info:
        calls[endpoint]()
    name = "legacy completions" if endpoint == "completions" else endpoint
    assert info.value.response.json() == {"error": {
        "message": f"kind {kind!r} has no {name} endpoint", "type": "invalid_request_error", "param": "model",
        "code": "unsupported_operation"}}
    assert sum(mock.stats().values()) == 0


@pytest.mark.parametrize("path,body,status,code", [
    ("/v1/completions", {"model": "openai/fail-500", "prompt": "x"}, 502, "upstream_error"),
    ("/v1/completions", {"model": "openai/bad-json", "prompt": "x"}, 502, "upstream_error"),
    ("/v1/completions", {"model": "openai/fail-429", "prompt": "x"}, 429, "rate_limit_exceeded"),
    ("/v1/completions", {"model": "ghost/x", "prompt": "x"}, 404, "provider_not_found"),
    ("/v1/completions", {"model": INSTRUCT}, 400, "invalid_prompt"),
    ("/v1/completions", {"model": INSTRUCT, "prompt": {"a": 1}}, 400, "invalid_prompt"),
    ("/v1/completions", {"model": INSTRUCT, "prompt": "x", "stream": "yes"}, 400, "invalid_type"),
    ("/v1/completions", {"prompt": "x"}, 400, "missing_model"),
    ("/v1/images/generations", {"model": "openai/gpt-image-1"}, 400, "invalid_prompt"),
    ("/v1/images/generations", {"model": "openai/gpt-4o", "prompt": "x"}, 400, "upstream_rejected"),
    ("/v1/images/generations", {"model": "openai/fail-500", "prompt": "x"}, 502, "upstream_error"),
    ("/v1/images/edits", {"model": "openai/gpt-image-1", "prompt": "x"}, 400, "upstream_rejected"),  # no image
])
def test_errors_are_openai_shaped(env, path, body, status, code):
    server, _, key, _, _ = env
    r = post(server, key, path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and set(r.json()["error"]) == {"message", "type", "param", "code"}
    if status == 429:
        assert r.headers["retry-after"] == "7"


def test_a_scoped_key_may_use_only_its_providers(env):
    server, mock, key, _, _ = env
    r = post(server, key, "/v1/users/me/keys", json={"name": "gemini only", "providers": ["gemini"]})
    assert r.status_code == 201, r.text
    scoped = openai.OpenAI(base_url=server.url + "/v1", api_key=r.json()["key"], max_retries=0, timeout=10)
    mock.reset()
    for call in (lambda: scoped.completions.create(model=INSTRUCT, prompt="x"),
                 lambda: scoped.images.generate(model="openai/gpt-image-1", prompt="x"),
                 lambda: scoped.images.edit(model="openai/gpt-image-1", prompt="x", image=("a.png", PNG))):
        with pytest.raises(openai.PermissionDeniedError) as info:
            call()
        assert info.value.response.json()["error"]["code"] == "provider_not_allowed"
    assert sum(mock.stats().values()) == 0


MULTIPART = "multipart/form-data; boundary=b"
MODEL_PART = b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai/gpt-image-1\r\n'
PROMPT_PART = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nblue\r\n'


@pytest.mark.parametrize("content_type,body,message", [
    ("multipart/form-data", MODEL_PART + b"--b--\r\n", "needs a boundary"),
    (MULTIPART, MODEL_PART + PROMPT_PART, "no closing boundary"),
    (MULTIPART, b"no parts at all", "no closing boundary"),
    (MULTIPART, MODEL_PART + b"--b\r\nX-Other: 1\r\n\r\nv\r\n--b--\r\n", "part 2 has no Content-Disposition name"),
    (MULTIPART, MODEL_PART + b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--\r\n", "part 2 has no"),
    (MULTIPART, MODEL_PART + MODEL_PART + PROMPT_PART + b"--b--\r\n", "'model' is given more than once"),
    (MULTIPART, MODEL_PART + b'--b\r\nContent-Disposition: form-data; name="stream"\r\n\r\nTRUE\r\n--b--\r\n',
     "'stream' must be true or false"),
])
def test_a_malformed_multipart_edit_is_a_400(env, content_type, body, message):
    server, mock, key, _, _ = env
    mock.reset()
    r = post(server, key, "/v1/images/edits", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert message in r.json()["error"]["message"]
    assert sum(mock.stats().values()) == 0


def test_an_oversized_edit_is_a_413(env):
    _, _, _, client, _ = env
    with pytest.raises(openai.APIStatusError) as info:  # the server's limit here is 64 KiB
        client.images.edit(model="openai/gpt-image-1", prompt="x", image=("big.png", b"\0" * 70000, "image/png"))
    assert info.value.status_code == 413 and info.value.response.json()["error"]["code"] == "request_too_large"


def test_a_stream_cut_upstream_ends_with_an_error_event(env):
    server, _, key, client, _ = env
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "openai/drop-mid-stream", "prompt": "x", "stream": True}) as r:
        frames = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]" and json.loads(frames[-2][6:])["error"]["type"] == "upstream_error"
    with pytest.raises(openai.APIError):
        list(client.completions.create(model="openai/drop-mid-stream", prompt="x", stream=True))


# --- costs, tracing, usage ----------------------------------------------------------------------


def test_warm_requests_cost_no_db_query_and_no_decryption(env):
    server, mock, _, client, _ = env
    client.completions.create(model=INSTRUCT, prompt="warm up")
    httpx.delete(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
    mock.reset()
    client.completions.create(model=INSTRUCT, prompt="a")
    client.completions.create(model="instruct", prompt="b")
    list(client.completions.create(model=INSTRUCT, prompt="c", stream=True))
    client.images.generate(model="openai/gpt-image-1", prompt="d")
    list(client.images.generate(model="openai/gpt-image-1", prompt="e", stream=True))
    client.images.edit(model="openai/gpt-image-1", prompt="f", image=("a.png", PNG, "image/png"))
    c = server.stats()["counters"]
    assert (c["requests"], c["db_queries"], c["decryptions"], c["upstream_requests"]) == (6, 0, 0, 6)
    calls = {k: v for k, v in mock.stats().items() if v}
    assert calls == {"openai.completions": 3, "openai.images.generations": 2, "openai.images.edits": 1}


def test_server_timing_names_the_cost_points(env):
    server, _, key, _, _ = env
    for path, body in (("/v1/completions", {"model": INSTRUCT, "prompt": "x"}),
                       ("/v1/images/generations", {"model": "openai/gpt-image-1", "prompt": "x"})):
        timing = post(server, key, path, json=body).headers["server-timing"]
        names = {entry.split(";")[0].strip() for entry in timing.split(",")}
        assert {"user", "service", "key", "upstream"} <= names and 'user;desc="hit"' in timing


def test_usage_rows(env):
    server, _, _, client, db = env
    start = last_row(db)
    client.completions.create(model=INSTRUCT, prompt="one two three")
    list(client.completions.create(model=INSTRUCT, prompt="one two", stream=True,
                                   stream_options={"include_usage": True}))
    list(client.completions.create(model=INSTRUCT, prompt="no usage asked", stream=True))
    client.images.generate(model="openai/gpt-image-1", prompt="a cat", quality="high")
    list(client.images.generate(model="openai/gpt-image-1", prompt="a cat", stream=True))
    client.images.generate(model="openai/dall-e-2", prompt="a cat")
    client.images.edit(model="openai/gpt-image-1", prompt="a cat", image=("a.png", PNG, "image/png"))
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="openai/fail-500", prompt="x")
    assert usage_rows(db, start) == [
        ("gpt-3.5-turbo-instruct", 200, 3, 6), ("gpt-3.5-turbo-instruct", 200, 2, 5),
        ("gpt-3.5-turbo-instruct", 200, None, None), ("gpt-image-1", 200, 2, 4160), ("gpt-image-1", 200, 2, 1056),
        ("dall-e-2", 200, None, None), ("gpt-image-1", 200, 2 + 194, 1056),
        ("fail-500", 500, None, None)]  # a failure's row has the upstream's status


# --- the parts on their own ---------------------------------------------------------------------


def multipart(fields: dict, files: dict, boundary: str = "forge-test-boundary") -> tuple[bytes, str]:
    content_type = f"multipart/form-data; boundary={boundary}"
    request = httpx.Request("POST", "http://x/", data=fields, files=files, headers={"Content-Type": content_type})
    return request.read(), content_type


@pytest.mark.parametrize("order", ["model first", "model last"])
def test_form_rewrites_only_the_model_part(order):
    files = {"image": ("a.png", IMAGE, "image/png"), "mask": ("m.png", PNG, "image/png")}
    fields = {"model": "openai/gpt-image-1", "prompt": "blue", "stream": "true"}
    if order == "model last":
        fields = {"prompt": "blue", "stream": "true", "model": "openai/gpt-image-1"}
    data, content_type = multipart(fields, files)
    form = Form(data, content_type)
    assert form.fields == {"model": "openai/gpt-image-1", "prompt": "blue", "stream": True}
    assert form.with_model("gpt-image-1") == multipart(dict(fields, model="gpt-image-1"), files)[0]


def test_form_keeps_preamble_and_epilogue():
    data = (b"preamble\r\n--zz9\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nold\r\n"
            b"--zz9\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n" + IMAGE
            + b"\r\n--zz9--\r\nepilogue")
    form = Form(data, 'multipart/form-data; boundary="zz9"')
    assert form.with_model("new") == data.replace(b"\r\n\r\nold", b"\r\n\r\nnew")


def test_usage_stream_passes_bytes_as_they_came_in_any_split():
    frames = (b'data: {"choices":[{"text":"a \\"usage\\": {"}],"usage":null}\n\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\ndata: [DONE]\n\n')
    for size in (1, 7, len(frames)):
        stream = UsageStream()
        out = b"".join(b"".join(stream.feed(frames[i:i + size])) for i in range(0, len(frames), size))
        assert out + b"".join(stream.close()) == frames
        assert (stream.result.prompt_tokens, stream.result.completion_tokens) == (3, 4)


def test_streams_without_an_end_get_done_but_image_streams_do_not():
    text = UsageStream()
    assert text.feed(b'data: {"choices":[]}\n\n') and text.close() == [b"data: [DONE]\n\n"]
    image = ImageStream()
    completed = b'event: image_generation.completed\ndata: {"usage":{"input_tokens":5,"output_tokens":9}}\n\n'
    assert image.feed(completed) == [completed] and image.close() == []
    assert (image.result.prompt_tokens, image.result.completion_tokens) == (5, 9)


def test_the_response_cache_never_answers_the_legacy_endpoints(env):
    """It replays chat answers only, and an image edit's cache key would not see its files: bypass."""
    server, mock, key, _, _ = env
    mock.reset()
    for _ in range(2):
        r = post(server, key, "/v1/completions", json={"model": INSTRUCT, "prompt": "again"},
                 headers={"Cache-Control": "max-age=60"})
        assert r.status_code == 200 and r.headers["x-forge-cache"] == "bypass"
    assert mock.stats()["openai.completions"] == 2  # both went upstream
