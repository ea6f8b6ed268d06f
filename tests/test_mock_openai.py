"""forge_mock.openai, driven through the official ``openai`` SDK against a real mock process."""

from __future__ import annotations

import json

import openai
import pytest
from mock_sdk import OPENAI_TOOLS, PROMPT, REPLY, TOOL_ARGS, TOOL_PROMPT, cut_mid_body, is_unit, oai

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_openai_chat_plain(mock_url):
    r = oai(mock_url).chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": PROMPT}])
    assert r.object == "chat.completion" and r.model == "gpt-4o"
    assert r.choices[0].message.content == REPLY
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 6, 11)


def test_openai_chat_content_parts(mock_url):
    r = oai(mock_url).chat.completions.create(model="gpt-4o", messages=[
        {"role": "user", "content": "first turn"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "part one"},
                                     {"type": "text", "text": "part two"}]}])
    assert r.choices[0].message.content == "Mock reply to: part one part two"


def test_openai_chat_stream_with_usage(mock_url):
    chunks = list(oai(mock_url).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}],
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(texts) == 4 and "".join(texts) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == 3


def test_openai_stream_without_usage(mock_url):
    chunks = list(oai(mock_url).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


def test_openai_tool_call(mock_url):
    r = oai(mock_url).chat.completions.create(
        model="gpt-4o", tools=OPENAI_TOOLS, messages=[{"role": "user", "content": TOOL_PROMPT}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_mock_") and call.type == "function"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == TOOL_ARGS


def test_openai_tool_not_called_without_keyword_or_after_result(mock_url):
    c = oai(mock_url)
    r = c.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS,
                                  messages=[{"role": "user", "content": PROMPT}])
    assert r.choices[0].message.content == REPLY and not r.choices[0].message.tool_calls
    # After the tool result comes back the mock answers with text (no loop).
    r = c.chat.completions.create(model="gpt-4o", tools=OPENAI_TOOLS, messages=[
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"}])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "Mock reply to: " + TOOL_PROMPT


def test_openai_stream_tool_call(mock_url):
    chunks = list(oai(mock_url).chat.completions.create(
        model="gpt-4o", tools=OPENAI_TOOLS, stream=True,
        messages=[{"role": "user", "content": TOOL_PROMPT}]))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_mock_") and deltas[0].function.name == "lookup"
    pieces = [d.function.arguments for d in deltas[1:]]
    assert len(pieces) == 2 and json.loads("".join(pieces)) == TOOL_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_embeddings(mock_url):
    c = oai(mock_url)
    r = c.embeddings.create(model="text-embedding-3-small", input="alpha")  # SDK asks base64
    assert r.object == "list" and r.model == "text-embedding-3-small"
    vec = r.data[0].embedding
    assert len(vec) == 8 and is_unit(vec)
    r2 = c.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"],
                             encoding_format="float", dimensions=16)
    assert [d.index for d in r2.data] == [0, 1] and len(r2.data[1].embedding) == 16
    assert r2.usage.prompt_tokens == 3 and r2.usage.total_tokens == 3
    again = c.embeddings.create(model="text-embedding-3-small", input="alpha",
                                encoding_format="float").data[0].embedding
    assert again == pytest.approx(vec, abs=1e-6)   # deterministic; base64 == float32 of float
    assert r2.data[0].embedding != r2.data[1].embedding


def test_openai_completions(mock_url):
    c = oai(mock_url)
    r = c.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    assert (r.object, r.model, r.id[:10]) == ("text_completion", "gpt-3.5-turbo-instruct", "cmpl-mock-")
    assert [(ch.index, ch.text, ch.logprobs, ch.finish_reason) for ch in r.choices] == [(0, REPLY, None, "stop")]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 6, 9)
    r = c.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", [5, 6, 7]])
    assert [ch.text for ch in r.choices] == ["Mock reply to: a b", "Mock reply to: 5 6 7"]
    assert r.usage.prompt_tokens == 5
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="gpt-3.5-turbo-instruct", prompt=[])
    assert e.value.body["param"] == "prompt"


def test_openai_completions_stream(mock_url):
    chunks = list(oai(mock_url).completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c"],
                                                   stream=True, stream_options={"include_usage": True}))
    for i, text in enumerate(["Mock reply to: a b", "Mock reply to: c"]):
        mine = [ch.choices[0] for ch in chunks if ch.choices and ch.choices[0].index == i]
        assert "".join(ch.text for ch in mine) == text and [ch.finish_reason for ch in mine][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9
    assert all(ch.usage is None for ch in chunks[:-1])
    with pytest.raises(openai.InternalServerError):
        list(oai(mock_url).completions.create(model="fail-500", prompt="x", stream=True))


def test_openai_models(mock_url):
    ids = [m.id for m in oai(mock_url).models.list()]
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} <= set(ids)


def test_openai_faults(mock_url):
    msgs = [{"role": "user", "content": PROMPT}]
    with pytest.raises(openai.InternalServerError) as e:
        oai(mock_url).chat.completions.create(model="fail-500", messages=msgs)
    assert e.value.status_code == 500 and e.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError) as e:
        oai(mock_url).chat.completions.create(model="fail-429", messages=msgs)
    assert e.value.response.headers["retry-after"] == "7"
    assert e.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.APITimeoutError):
        oai(mock_url, timeout=0.5).chat.completions.create(model="hang", messages=msgs)
    with pytest.raises(openai.APIConnectionError):   # non-streaming drop: no response at all
        oai(mock_url).chat.completions.create(model="drop-mid-stream", messages=msgs)
    got = []
    with pytest.raises(openai.APIConnectionError) as e:   # the SDK wraps the httpx error
        for c in oai(mock_url).chat.completions.create(model="drop-mid-stream", messages=msgs,
                                                   stream=True):
            got.append(c)
    assert len(got) == 3   # role chunk + 2 content chunks, then the cut
    assert cut_mid_body(e.value)
    with pytest.raises(json.JSONDecodeError):   # the SDK lets the decode error through
        oai(mock_url).chat.completions.create(model="bad-json", messages=msgs)
    with pytest.raises(json.JSONDecodeError):
        list(oai(mock_url).chat.completions.create(model="bad-json", messages=msgs, stream=True))
    with pytest.raises(openai.InternalServerError):
        oai(mock_url).embeddings.create(model="fail-500", input="x")
