"""forge_mock.anthropic, driven through the official ``anthropic`` SDK against a real mock process."""

from __future__ import annotations

import anthropic
import pytest
from mock_sdk import ANTHROPIC_TOOLS, PROMPT, REPLY, TOOL_ARGS, TOOL_PROMPT, ant, cut_mid_body

pytestmark = [
    pytest.mark.timeout(30),
    # anthropic-python warns that the (mock) claude-*-4-5 model ids are deprecated.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_anthropic_message_plain(mock_url):
    m = ant(mock_url).messages.create(model="claude-sonnet-4-5", max_tokens=64, system="be brief",
                                  messages=[{"role": "user", "content": PROMPT}])
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-sonnet-4-5"
    assert m.content[0].type == "text" and m.content[0].text == REPLY
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 6)


def test_anthropic_content_blocks(mock_url):
    m = ant(mock_url).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[
        {"role": "user", "content": [{"type": "text", "text": "block a"},
                                     {"type": "text", "text": "block b"}]}])
    assert m.content[0].text == "Mock reply to: block a block b"


def test_anthropic_stream(mock_url):
    with ant(mock_url).messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                   messages=[{"role": "user", "content": PROMPT}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) == 4 and "".join(pieces) == REPLY
    assert final.content[0].text == REPLY and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 6)


def test_anthropic_tool_use(mock_url):
    m = ant(mock_url).messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                  messages=[{"role": "user", "content": TOOL_PROMPT}])
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.id.startswith("toolu_mock_")
    assert block.name == "lookup" and block.input == TOOL_ARGS
    # Feeding the tool result back gets a text answer.
    m2 = ant(mock_url).messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                   messages=[
        {"role": "user", "content": TOOL_PROMPT},
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": "42"}]}])
    assert m2.stop_reason == "end_turn" and m2.content[0].text == "Mock reply to: " + TOOL_PROMPT


def test_anthropic_stream_tool_use(mock_url):
    with ant(mock_url).messages.stream(model="claude-sonnet-4-5", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                   messages=[{"role": "user", "content": TOOL_PROMPT}]) as s:
        events = list(s)
        final = s.get_final_message()
    partials = [e.delta.partial_json for e in events
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(partials) == 2
    assert final.stop_reason == "tool_use"
    assert final.content[0].name == "lookup" and final.content[0].input == TOOL_ARGS


def test_anthropic_count_tokens_matches_the_answers_usage(mock_url):
    kw = dict(model="claude-sonnet-4-5", system="be brief", messages=[{"role": "user", "content": PROMPT}])
    counted = ant(mock_url).messages.count_tokens(**kw)
    assert counted.input_tokens == 5
    assert ant(mock_url).messages.create(max_tokens=64, **kw).usage.input_tokens == counted.input_tokens
    with pytest.raises(anthropic.BadRequestError) as e:
        ant(mock_url).messages.count_tokens(model="claude-sonnet-4-5", messages=[])
    assert e.value.body["error"]["type"] == "invalid_request_error"


def test_anthropic_beta_header_known_values_pass_unknown_are_400(mock_url):
    kw = dict(model="claude-sonnet-4-5", max_tokens=16, messages=[{"role": "user", "content": PROMPT}])
    known = {"anthropic-beta": "claude-code-20250219, interleaved-thinking-2025-05-14"}
    assert ant(mock_url).messages.create(extra_headers=known, **kw).content[0].text == REPLY
    with pytest.raises(anthropic.BadRequestError) as e:
        ant(mock_url).messages.create(extra_headers={"anthropic-beta": "claude-code-20250219,no-such-beta"}, **kw)
    assert "`no-such-beta`" in e.value.message and "claude-code" not in e.value.message


def test_anthropic_models(mock_url):
    page = ant(mock_url).models.list()
    ids = [m.id for m in page]
    assert {"claude-sonnet-4-5", "claude-haiku-4-5"} <= set(ids)
    assert page.data[0].type == "model" and page.data[0].display_name


def test_anthropic_faults(mock_url):
    kw = dict(max_tokens=16, messages=[{"role": "user", "content": PROMPT}])
    with pytest.raises(anthropic.InternalServerError) as e:
        ant(mock_url).messages.create(model="fail-500", **kw)
    assert e.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.RateLimitError) as e:
        ant(mock_url).messages.create(model="fail-429", **kw)
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APITimeoutError):
        ant(mock_url, timeout=0.5).messages.create(model="hang", **kw)
    pieces = []
    with pytest.raises(Exception) as e:
        with ant(mock_url).messages.stream(model="drop-mid-stream", **kw) as s:
            for t in s.text_stream:
                pieces.append(t)
    assert len(pieces) == 2 and cut_mid_body(e.value)
