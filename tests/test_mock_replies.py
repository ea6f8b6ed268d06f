"""forge_mock.replies: what the mock answers, and how a reply is cut into timed stream pieces."""

from __future__ import annotations

import pytest

from forge_mock.config import MockConfig
from forge_mock.replies import answer, make_reply, words
from forge_mock.timing import Timing


def test_without_the_timing_model_replies_are_split_into_chunks_and_not_timed():
    r = make_reply(Timing(MockConfig()), "hello mock world", None, 4)
    assert r.text == "Mock reply to: hello mock world" and r.tokens == 6
    assert len(r.pieces) == 4 and "".join(r.pieces) == r.text
    assert r.due is None and r.latency == 0.0 and r.schedule(1, 2) is None


def test_a_drawn_length_pads_the_reply_and_streams_tokens_per_chunk():
    timing = Timing(MockConfig(ttft_ms=200, token_rate=10, output_tokens=50, tokens_per_chunk=7))
    r = make_reply(timing, "hello mock world", None, 4)
    assert r.text.startswith("Mock reply to: hello mock world ") and words(r.text) == r.tokens == 50
    assert "".join(r.pieces) == r.text
    assert [words(p) for p in r.pieces] == [7] * 7 + [1]
    assert r.due == pytest.approx([0.2 + (7 * (i + 1) - 1) / 10 for i in range(7)] + [0.2 + 49 / 10])
    assert r.latency == pytest.approx(5.1)
    assert r.schedule(1, 2) == pytest.approx([0.8] + r.due + [5.1, 5.1])


def test_a_whole_answer_is_one_piece_due_with_its_last_token():
    r = make_reply(Timing(MockConfig(ttft_ms=200, token_rate=10, output_tokens=7)), "hi", None, 1)
    assert r.pieces == [r.text] and r.tokens == 7 and r.due == pytest.approx([0.8])


def test_the_reply_keeps_the_user_text_when_the_drawn_length_is_shorter():
    r = make_reply(Timing(MockConfig(output_tokens=2, tokens_per_chunk=2)), "one two three", None, 4)
    assert r.text == "Mock reply to: one two three" and r.tokens == 6
    assert r.pieces == ["Mock reply", " to: one", " two three"] and r.due == [0.0, 0.0, 0.0]


def test_tool_call_arguments_are_never_padded():
    r = make_reply(Timing(MockConfig(output_tokens=300, tokens_per_chunk=2)), "use the tool", "lookup", 2)
    assert r.text == '{"query":"use the tool"}' and r.tokens == 3 == words(r.text)
    assert "".join(r.pieces) == r.text and len(r.pieces) == 2


def test_answer_counts_whitespace_words():
    assert answer("a b", None) == ("Mock reply to: a b", 5)
    assert answer("a b", None, 8) == ("Mock reply to: a b lorem ipsum dolor", 8)
