"""forge_mock.base: the flow every API shares (auth, key faults, body checks), seen through each API's shapes."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as genai_errors
from mock_sdk import PROMPT, ant, cut_mid_body, gem, oai

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_fault_by_api_key_takes_whole_provider_down(mock_url):
    with pytest.raises(openai.InternalServerError):
        oai(mock_url, key="fail-500-openai").models.list()
    with pytest.raises(anthropic.RateLimitError) as e:
        ant(mock_url, key="fail-429").models.list()
    assert e.value.response.headers["retry-after"] == "7"
    g = gem(mock_url, key="fail-500")
    with pytest.raises(genai_errors.ServerError) as ge:
        g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert ge.value.code == 500 and ge.value.status == "INTERNAL"
    with pytest.raises(anthropic.APITimeoutError):
        ant(mock_url, key="hang", timeout=0.5).models.list()
    with pytest.raises(json.JSONDecodeError):
        oai(mock_url, key="bad-json").models.list()
    # A key's drop-mid-stream still cuts a streaming call mid-way, not before it starts.
    got = []
    with pytest.raises(openai.APIConnectionError) as e:
        for c in oai(mock_url, key="drop-mid-stream").chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True):
            got.append(c)
    assert len(got) == 3 and cut_mid_body(e.value)


def test_auth_errors_in_each_shape(mock_url):
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{mock_url}/openai/v1/chat/completions", json=chat)
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{mock_url}/openai/v1/chat/completions", json=chat,
                   headers={"Authorization": "Bearer sk-invalid-123"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    msg = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{mock_url}/anthropic/v1/messages", json=msg, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {"type": "authentication_error",
                                                    "message": "x-api-key header is required"}}
    r = httpx.post(f"{mock_url}/anthropic/v1/messages", json=msg, headers={"x-api-key": "k"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"

    r = httpx.get(f"{mock_url}/gemini/v1beta/models")
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    r = httpx.get(f"{mock_url}/gemini/v1beta/models?key=invalid")
    assert r.status_code == 401 and r.json()["error"]["code"] == 401
    assert httpx.get(f"{mock_url}/gemini/v1beta/models?key=ok").status_code == 200

    with pytest.raises(openai.AuthenticationError):
        oai(mock_url, key="invalid").models.list()
    with pytest.raises(anthropic.AuthenticationError):
        ant(mock_url, key="sk-invalid").models.list()


def test_required_fields(mock_url):
    hdr = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    r = httpx.post(f"{mock_url}/anthropic/v1/messages", headers=hdr,
                   json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "max_tokens: Field required"}}
    r = httpx.post(f"{mock_url}/openai/v1/chat/completions", headers={"Authorization": "Bearer k"},
                   json={"model": "gpt-4o"})
    assert r.status_code == 400
    assert r.json()["error"] == {"message": "Missing required parameter: 'messages'.",
                                 "type": "invalid_request_error", "param": "messages",
                                 "code": "missing_required_parameter"}
    r = httpx.post(f"{mock_url}/openai/v1/chat/completions", headers={"Authorization": "Bearer k"},
                   content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{mock_url}/gemini/v1beta/models/gemini-2.5-flash:generateContent",
                   headers={"x-goog-api-key": "k"}, json={})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(anthropic.BadRequestError):
        ant(mock_url).messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=[])
    r = httpx.get(f"{mock_url}/openai/v1/nope", headers={"Authorization": "Bearer k"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    # Parseable JSON with wrong field types: 400 in the API's shape, not an HTML 500.
    r = httpx.post(f"{mock_url}/anthropic/v1/messages", headers=hdr, json={
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "a tool"}],
        "tools": ["not-an-object"]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(f"{mock_url}/gemini/v1beta/models/m:batchEmbedContents?key=k", json={
        "requests": [{"content": {"parts": [{"text": "a"}]}, "outputDimensionality": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
