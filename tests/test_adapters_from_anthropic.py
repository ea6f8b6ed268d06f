"""Golden tests for Anthropic Messages requests as OpenAI chat requests (``from_anthropic``).

Every input is checked against the ``anthropic`` SDK's request params and every output against
the ``openai`` SDK's, so neither side of a golden can drift into a shape the real clients would
not send. The round-trip tests use the existing OpenAI -> Anthropic adapter as the oracle: a
request taken to OpenAI's shape and back by it must be the request the client sent.
"""

from __future__ import annotations

import anthropic.types as at
import orjson
import pydantic
import pytest
from openai.types.chat import completion_create_params
from sdk_shapes import assert_params, drain

from forge_ref.adapters.anthropic import AnthropicAdapter
from forge_ref.adapters.base import Target
from forge_ref.adapters.from_anthropic import to_openai
from forge_ref.errors import BadRequest

ANTHROPIC_PARAMS = pydantic.TypeAdapter(at.MessageCreateParams)
OPENAI_PARAMS = pydantic.TypeAdapter(completion_create_params.CompletionCreateParams)
MODEL = "openai/gpt-4o"


def body(messages, **extra) -> dict:
    return {"model": MODEL, "max_tokens": 256, "messages": messages, **extra}


def user(content) -> dict:
    return {"role": "user", "content": content}


def assistant(content) -> dict:
    return {"role": "assistant", "content": content}


def openai(messages, **extra) -> dict:
    return {"model": MODEL, "messages": messages, "max_completion_tokens": 256, **extra}


def text(t: str, **extra) -> dict:
    return {"type": "text", "text": t, **extra}


def tool_use(id_: str, name: str, input_: dict) -> dict:
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def call(id_: str, name: str, arguments: str) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OPENAI_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                                   "parameters": WEATHER["input_schema"]}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
EPHEMERAL = {"type": "ephemeral"}

CASES = [
    ("plain user message", body([user("Hi")]), openai([user("Hi")])),
    ("system string becomes the first message", body([user("Hi")], system="Be brief."),
     openai([{"role": "system", "content": "Be brief."}, user("Hi")])),
    ("system blocks are joined; cache_control is dropped",
     body([user("Hi")], system=[text("You are a coding agent."), text("Be brief.", cache_control=EPHEMERAL)]),
     openai([{"role": "system", "content": "You are a coding agent.\n\nBe brief."}, user("Hi")])),
    ("one text block is a string, several are parts",
     body([user([text("only")]), assistant("ok"), user([text("one"), text("two", cache_control=EPHEMERAL)])]),
     openai([user("only"), {"role": "assistant", "content": "ok"},
             user([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])])),
    ("images: base64 to a data URL, url to a url",
     body([user([text("Compare"), {"type": "image", "source": PNG},
                 {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}])]),
     openai([user([{"type": "text", "text": "Compare"},
                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                   {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}])])),
    ("an agent's tool loop: calls, then results (first, as tool messages), then the user again",
     body([user("Weather in Paris and Oslo?"),
           assistant([text("Checking."), tool_use("toolu_01", "get_weather", {"city": "Paris"}),
                      tool_use("toolu_02", "get_weather", {"city": "Oslo"})]),
           user([{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                 {"type": "tool_result", "tool_use_id": "toolu_02", "content": [text("-3C")], "is_error": False},
                 text("Which is warmer?")]),
           assistant("Paris.")], tools=[WEATHER]),
     openai([user("Weather in Paris and Oslo?"),
             {"role": "assistant", "content": "Checking.", "tool_calls": [
                 call("toolu_01", "get_weather", '{"city":"Paris"}'),
                 call("toolu_02", "get_weather", '{"city":"Oslo"}')]},
             {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
             {"role": "tool", "tool_call_id": "toolu_02", "content": [{"type": "text", "text": "-3C"}]},
             user("Which is warmer?"), {"role": "assistant", "content": "Paris."}], tools=[OPENAI_WEATHER])),
    ("only tool calls: content is null; a result without content is empty; no user text, no user message",
     body([user("Ping it"), assistant([tool_use("toolu_9", "ping", {})]),
           user([{"type": "tool_result", "tool_use_id": "toolu_9"}])]),
     openai([user("Ping it"), {"role": "assistant", "content": None, "tool_calls": [call("toolu_9", "ping", "{}")]},
             {"role": "tool", "tool_call_id": "toolu_9", "content": ""}])),
    ("thinking of earlier turns is dropped, a turn of nothing else too",
     body([user("a"), assistant([{"type": "thinking", "thinking": "hmm", "signature": "sig"}, text("b")]),
           user("c"), assistant([{"type": "redacted_thinking", "data": "xyz"}])]),
     openai([user("a"), {"role": "assistant", "content": "b"}, user("c")])),
    *[
        (f"tool_choice {name}", body([user("Weather?")], tools=[WEATHER], tool_choice=choice),
         openai([user("Weather?")], tools=[OPENAI_WEATHER], **expected))
        for name, choice, expected in [
            ("auto", {"type": "auto"}, {"tool_choice": "auto"}),
            ("any", {"type": "any"}, {"tool_choice": "required"}),
            ("none", {"type": "none"}, {"tool_choice": "none"}),
            ("tool", {"type": "tool", "name": "get_weather"},
             {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
            ("auto without parallel tool use", {"type": "auto", "disable_parallel_tool_use": True},
             {"tool_choice": "auto", "parallel_tool_calls": False}),
        ]
    ],
    ("a custom tool without description", body([user("x")], tools=[{"type": "custom", "name": "ping",
                                                                   "input_schema": {"type": "object"}}]),
     openai([user("x")], tools=[{"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}])),
    ("tool_choice without tools is dropped", body([user("Hi")], tool_choice={"type": "auto"}), openai([user("Hi")])),
    ("sampling, stop sequences, user id, stream; top_k and thinking dropped",
     body([user("Hi")], temperature=0, top_p=0.9, top_k=40, stop_sequences=["END", "STOP"],
          metadata={"user_id": "u-42"}, stream=True, thinking={"type": "enabled", "budget_tokens": 1024}),
     openai([user("Hi")], temperature=0, top_p=0.9, stop=["END", "STOP"], user="u-42", stream=True,
            stream_options={"include_usage": True})),
]


@pytest.mark.parametrize(("name", "anthropic_body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_request_translation(name, anthropic_body, expected):
    drain(ANTHROPIC_PARAMS.validate_python(anthropic_body))
    out = to_openai(anthropic_body)
    assert out == expected
    assert_params(OPENAI_PARAMS, out)


REJECTS = [
    ("a document block", body([user([{"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}])]), "unsupported_content"),
    ("an image in a tool result", body([user([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "image", "source": PNG}]}])]), "unsupported_content"),
    ("an image by file id", body([user([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}])]),
     "unsupported_content"),
    ("a server tool", body([user("x")], tools=[{"type": "web_search_20250305", "name": "web_search"}]),
     "unsupported_tool"),
    ("an image in the system prompt", body([user("x")], system=[{"type": "image", "source": PNG}]), None),
    ("an unknown tool_choice", body([user("x")], tools=[WEATHER], tool_choice={"type": "sometimes"}), None),
    ("content that is neither string nor blocks", body([user(5)]), None),
]


@pytest.mark.parametrize(("name", "anthropic_body", "code"), REJECTS, ids=[c[0] for c in REJECTS])
def test_request_rejects(name, anthropic_body, code):
    with pytest.raises(BadRequest) as info:
        to_openai(anthropic_body)
    assert info.value.status == 400 and info.value.code == code


# --- the way back: the existing OpenAI -> Anthropic adapter returns the request as sent ------------

TARGET = Target(base_url="https://api.anthropic.com", api_key="sk-ant-test", model="claude-sonnet-4-5", label=MODEL)

ROUND_TRIPS = [
    ("plain", body([user("Hi")])),
    ("everything the OpenAI side has a place for",
     body([user([text("Compare"), {"type": "image", "source": PNG},
                 {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]),
           assistant([text("Checking."), tool_use("toolu_01", "get_weather", {"city": "Paris"}),
                      tool_use("toolu_02", "get_weather", {"city": "Oslo"})]),
           user([{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                 {"type": "tool_result", "tool_use_id": "toolu_02", "content": [text("-3C")]},
                 text("Which is warmer?")])],
          system="Be brief.", temperature=0.2, top_p=0.9, stop_sequences=["END"], tools=[WEATHER],
          tool_choice={"type": "any", "disable_parallel_tool_use": True}, metadata={"user_id": "u-42"}, stream=True)),
    *[(f"tool_choice {kind}", body([user("x")], tools=[WEATHER], tool_choice=choice))
      for kind, choice in [("auto", {"type": "auto"}), ("none", {"type": "none"}),
                           ("tool", {"type": "tool", "name": "get_weather"})]],
]


@pytest.mark.parametrize(("name", "anthropic_body"), ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_round_trip_through_the_anthropic_adapter(name, anthropic_body):
    back = orjson.loads(AnthropicAdapter().chat_request(TARGET, to_openai(anthropic_body)).body)
    assert back == dict(anthropic_body, model=TARGET.model)
