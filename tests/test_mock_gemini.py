"""forge_mock.gemini, driven through the official ``google-genai`` SDK against a real mock process."""

from __future__ import annotations

import httpx
import httpx2  # google-genai's HTTP stack (a fork of httpx)
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from mock_sdk import GEMINI_TOOLS, PROMPT, REPLY, TOOL_ARGS, TOOL_PROMPT, cut_mid_body, gem, is_unit

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_gemini_generate(mock_url):
    c = gem(mock_url)  # keep a reference: a dropped genai.Client closes its HTTP client
    r = c.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT,
        config=types.GenerateContentConfig(system_instruction="be brief"))
    assert r.text == REPLY
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (5, 6, 11)


def test_gemini_stream(mock_url):
    c = gem(mock_url)
    chunks = list(c.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT))
    assert len(chunks) == 4 and "".join(c.text for c in chunks) == REPLY
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 6


def test_gemini_function_call(mock_url):
    c = gem(mock_url)
    r = c.models.generate_content(
        model="gemini-2.5-flash", contents=TOOL_PROMPT,
        config=types.GenerateContentConfig(
            tools=GEMINI_TOOLS,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    call = r.function_calls[0]
    assert call.name == "lookup" and call.args == TOOL_ARGS


def test_gemini_embed(mock_url):
    c = gem(mock_url)
    r = c.models.embed_content(model="text-embedding-004", contents=["alpha", "beta"])
    assert len(r.embeddings) == 2 and all(len(e.values) == 8 for e in r.embeddings)
    assert is_unit(r.embeddings[0].values)
    r2 = c.models.embed_content(model="text-embedding-004", contents="alpha",
                                config=types.EmbedContentConfig(output_dimensionality=16))
    assert len(r2.embeddings[0].values) == 16
    # The SDK always uses batchEmbedContents; check embedContent raw.
    raw = httpx.post(f"{mock_url}/gemini/v1beta/models/text-embedding-004:embedContent?key=g-test",
                     json={"content": {"parts": [{"text": "alpha"}]}})
    assert raw.status_code == 200
    assert raw.json()["embedding"]["values"] == pytest.approx(r.embeddings[0].values)


def test_gemini_models(mock_url):
    c = gem(mock_url)
    names = [m.name for m in c.models.list()]
    assert {"models/gemini-2.5-flash", "models/gemini-2.5-pro", "models/text-embedding-004"} <= set(names)


def test_gemini_faults(mock_url):
    c = gem(mock_url)
    with pytest.raises(genai_errors.ClientError) as e:
        c.models.generate_content(model="fail-429", contents=PROMPT)
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError):
        c.models.embed_content(model="fail-500", contents="x")
    slow = gem(mock_url, timeout_ms=500)
    with pytest.raises(httpx2.TimeoutException):
        slow.models.generate_content(model="hang", contents=PROMPT)
    got = []
    with pytest.raises(Exception) as e:
        for chunk in c.models.generate_content_stream(model="drop-mid-stream", contents=PROMPT):
            got.append(chunk.text)
    assert len(got) == 2 and cut_mid_body(e.value)


def test_gemini_stream_without_alt_sse_is_a_json_array(mock_url):
    r = httpx.post(f"{mock_url}/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                   headers={"x-goog-api-key": "k"}, json={"contents": [{"parts": [{"text": PROMPT}]}]})
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) == 4
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == REPLY
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 9
