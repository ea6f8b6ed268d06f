"""Answers both ways, without a server: OpenAI chunks added up to a chat.completion and played back,
Anthropic events added up to a message and played back; what may be kept and what may not."""

from __future__ import annotations

import orjson
import pytest

from forge_ref.adapters.base import SSEParser, sse_frame
from forge_ref.errors import UpstreamError
from forge_ref.replay import CHAT, ChatAssembler
from forge_ref.replay_anthropic import MESSAGES, MessagesAssembler

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "system_fingerprint": "fp"}


def chunk(delta=None, finish=None, index=0, **extra) -> bytes:
    choices = [] if delta is None else [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return sse_frame(dict(HEAD, choices=choices, **extra))


TOOL_STREAM = [
    chunk({"role": "assistant", "content": None,
           "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "f", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    b"data: [DONE]\n\n",
]
TOOL_ANSWER = {"id": "chatcmpl-1", "created": 1, "model": "gpt-4o", "system_fingerprint": "fp",
               "object": "chat.completion",
               "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": None, "tool_calls": [
                                {"id": "call_1", "type": "function",
                                 "function": {"name": "f", "arguments": '{"q": "x"}'}}]}}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def assemble(assembler, frames: list[bytes], split: int) -> tuple[list[bytes], tuple]:
    raw = b"".join(frames)
    out = []
    for i in range(0, len(raw), split):  # any split of the bytes
        out += assembler.feed([raw[i:i + split]])
    return out, assembler.result()


@pytest.mark.parametrize("split", [1, 7, 10_000])
def test_a_stream_adds_up_to_its_answer_and_passes_frames_on_one_by_one(split):
    a = ChatAssembler()
    frames, (answer, cacheable) = assemble(a, TOOL_STREAM, split)
    assert frames == TOOL_STREAM  # the same frames, each alone
    assert orjson.loads(answer) == TOOL_ANSWER and cacheable
    assert a.usage_frame is frames[4] and a.tokens() == (3, 4)


def test_an_answer_replays_as_the_stream_that_adds_up_to_it():
    for usage in (True, False):
        replayed = CHAT.replay(orjson.dumps(TOOL_ANSWER), usage)
        a = ChatAssembler()
        a.feed([replayed])
        answer, cacheable = a.result()
        expected = dict(TOOL_ANSWER) if usage else {k: v for k, v in TOOL_ANSWER.items() if k != "usage"}
        assert orjson.loads(answer) == expected and cacheable
        assert replayed.endswith(b"data: [DONE]\n\n") and (b'"usage"' in replayed) is usage


def test_text_refusal_and_several_choices_add_up():
    frames = [chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}, index=0),
              chunk({"role": "assistant", "refusal": "no"}, index=1), chunk({}, "stop"), chunk({}, "stop", index=1),
              b"data: [DONE]\n\n"]
    answer, cacheable = assemble(ChatAssembler(), frames, 10_000)[1]
    choices = orjson.loads(answer)["choices"]
    assert [c["message"] for c in choices] == [{"role": "assistant", "content": "Hello"},
                                               {"role": "assistant", "content": None, "refusal": "no"}]
    assert cacheable


@pytest.mark.parametrize("frames, has_answer", [
    (TOOL_STREAM[:-1], False),  # no [DONE]: truncated
    ([chunk({"content": "x"}), sse_frame({"error": {"message": "boom"}}), b"data: [DONE]\n\n"], False),
    ([chunk({"content": "x"}), b"data: {not json\n\n", b"data: [DONE]\n\n"], False),
    ([chunk({"content": "x"}, "content_filter"), b"data: [DONE]\n\n"], True),  # whole, but not the answer's own end
    ([chunk({"audio": {"id": "a1", "data": "..."}}, "stop"), b"data: [DONE]\n\n"], False),  # not assembled
    ([sse_frame(dict(HEAD, choices=[{"index": 0, "delta": {"content": "x"}, "logprobs": {"content": []},
                                     "finish_reason": "stop"}])), b"data: [DONE]\n\n"], False),
])
def test_what_is_never_kept(frames, has_answer):
    answer, cacheable = assemble(ChatAssembler(), frames, 10_000)[1]
    assert (answer is not None, cacheable) == (has_answer, False)


def test_an_answer_of_an_unexpected_shape_is_an_upstream_error_not_a_500():
    for codec, answer in ((CHAT, {"choices": ["x"]}), (CHAT, {"choices": [{"message": "x"}]}),
                          (MESSAGES, {"content": ["x"]}), (MESSAGES, {"content": 5})):
        with pytest.raises(UpstreamError):
            codec.replay(orjson.dumps(answer), True)


def test_chat_codec_asks_the_provider_for_usage_on_streams_only():
    body = {"stream": True, "stream_options": {"foo": 1}}
    assert CHAT.prepare(body) == {"stream": True, "stream_options": {"foo": 1, "include_usage": True}}
    assert body == {"stream": True, "stream_options": {"foo": 1}}  # the client's own is left as it was
    assert CHAT.prepare({"stream": False}) == {"stream": False}
    assert CHAT.prepare({"stream": True, "stream_options": 5}) == {"stream": True, "stream_options": 5}  # its 400
    assert (CHAT.wants_usage(body), CHAT.wants_usage({"stream_options": {"include_usage": True}})) == (False, True)
    assert CHAT.failure(UpstreamError("x")).endswith(b"data: [DONE]\n\n")


# --- Anthropic -------------------------------------------------------------------------------------

MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_sequence": None,
           "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 9},
           "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                       {"type": "text", "text": "Let me look."},
                       {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": "x"}}]}


def native_events(message: dict) -> list[bytes]:
    """What Anthropic itself streams for ``message``, with several deltas per block and a ping."""
    def ev(name, obj):
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(dict(obj, type=name)) + b"\n\n"

    out = [ev("message_start", {"message": dict(message, content=[], stop_reason=None,
                                                usage={"input_tokens": 5, "output_tokens": 1})}), ev("ping", {})]
    for i, block in enumerate(message["content"]):
        empty = {k: ("" if k in ("text", "thinking", "signature") else {} if k == "input" else v)
                 for k, v in block.items()}
        out.append(ev("content_block_start", {"index": i, "content_block": empty}))
        if block["type"] == "thinking":
            out.append(ev("content_block_delta", {"index": i, "delta": {"type": "thinking_delta", "thinking": "hm"}}))
            out.append(ev("content_block_delta", {"index": i, "delta": {"type": "thinking_delta", "thinking": "m"}}))
            out.append(ev("content_block_delta", {"index": i,
                                                  "delta": {"type": "signature_delta", "signature": "sig"}}))
        elif block["type"] == "text":
            out += [ev("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": t}})
                    for t in ("Let me", " look.")]
        else:
            out += [ev("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": p}})
                    for p in ('{"q"', ': "x"}')]
        out.append(ev("content_block_stop", {"index": i}))
    out.append(ev("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                    "usage": {"output_tokens": 9}}))
    out.append(ev("message_stop", {}))
    return out


@pytest.mark.parametrize("split", [3, 10_000])
def test_anthropic_events_add_up_to_the_message_and_replay_to_it(split):
    frames, (answer, cacheable) = assemble(MessagesAssembler(), native_events(MESSAGE), split)
    assert frames == native_events(MESSAGE)
    assert orjson.loads(answer) == MESSAGE and cacheable
    replayed = MESSAGES.replay(answer, True)
    again, cacheable = assemble(MessagesAssembler(), [replayed], 10_000)[1]
    assert orjson.loads(again) == MESSAGE and cacheable
    names = [name for name, _ in SSEParser().feed(replayed)]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]


@pytest.mark.parametrize("change, has_answer", [
    (lambda ev: ev[:-1], False),  # no message_stop
    (lambda ev: ev[:3] + [b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error"}}\n\n'], False),
    (lambda ev: [e.replace(b'"stop_reason":"tool_use"', b'"stop_reason":"refusal"') for e in ev], True),
    (lambda ev: ev[:4] + [b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
                          b'"delta": {"type": "citations_delta", "citation": {}}}\n\n'] + ev[4:], False),
])
def test_anthropic_streams_never_kept(change, has_answer):
    answer, cacheable = assemble(MessagesAssembler(), change(native_events(MESSAGE)), 10_000)[1]
    assert (answer is not None, cacheable) == (has_answer, False)
    assert MESSAGES.cacheable(orjson.dumps(dict(MESSAGE, stop_reason="pause_turn"))) is False
