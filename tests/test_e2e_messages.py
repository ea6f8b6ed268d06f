"""The official ``anthropic`` SDK against ``forge-ref serve`` (a real process) and the mock provider
(another): ``/v1/messages`` to each provider kind, the anthropic pass-through and the openai and
gemini translations alike. Plain, streaming (``messages.stream``: text_stream, final message),
tools, and an agent's tool loop; count_tokens; errors as the SDK raises them.

The mock's replies are exact ("Mock reply to: <last user text>", tokens are words), so every
kind must give the same answer, with the same usage, streamed or not.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest
from mock_sdk import ANTHROPIC_TOOLS, PROMPT, REPLY, TOOL_ARGS, TOOL_PROMPT
from support import ServerProcess, add_provider, create_user

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MODELS = {"anthropic": "anthropic/claude-haiku-4-5", "openai": "openai/gpt-4o-mini",
          "gemini": "gemini/gemini-2.5-flash", "alias to gemini": "claude-sonnet-4-5-20250929"}
ECHOED = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini", "gemini": "gemini/gemini-2.5-flash",
          "alias to gemini": "claude-sonnet-4-5-20250929"}  # pass-throughs echo the upstream's name
KINDS = list(MODELS)
SYSTEM = "be brief"  # 2 words: prompts below are PROMPT's 3 + 2


@pytest.fixture(scope="module")
def server(mock, tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("messages"), "--server-timing")
    key = create_user(srv.url)
    for provider, path, mapping in (("anthropic", "/anthropic", {}), ("openai", "/openai/v1", {}),
                                    ("gemini", "/gemini", {"claude-sonnet-4-5-20250929": "gemini-2.5-flash"})):
        r = add_provider(srv.url, key, provider=provider, kind=provider, api_key=f"key-{provider}",
                         base_url=mock.url + path, model_mapping=mapping)
        assert r.status_code == 201, r.text
    yield srv, key
    srv.stop()


@pytest.fixture(scope="module")
def client(server) -> anthropic.Anthropic:
    srv, key = server
    return anthropic.Anthropic(base_url=srv.url, api_key=key, max_retries=0, timeout=10)


def ask(content: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("kind", KINDS)
def test_create(client, kind):
    m = client.messages.create(model=MODELS[kind], max_tokens=64, system=SYSTEM, messages=ask())
    assert m.type == "message" and m.role == "assistant" and m.model == ECHOED[kind]
    assert [(b.type, b.text) for b in m.content] == [("text", REPLY)]
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 6)


@pytest.mark.parametrize("kind", KINDS)
def test_stream(client, kind):
    with client.messages.stream(model=MODELS[kind], max_tokens=64, system=SYSTEM, messages=ask()) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == REPLY
    assert [(b.type, b.text) for b in final.content] == [("text", REPLY)]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (5, 6)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_tool_use(client, kind, stream):
    kw = dict(model=MODELS[kind], max_tokens=64, tools=ANTHROPIC_TOOLS, messages=ask(TOOL_PROMPT))
    if stream:
        with client.messages.stream(**kw) as s:
            events = list(s)
            m = s.get_final_message()
        assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    else:
        m = client.messages.create(**kw)
    assert m.stop_reason == "tool_use"
    [use] = m.content
    assert (use.type, use.name, use.input) == ("tool_use", "lookup", TOOL_ARGS) and use.id


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_agent_tool_loop(client, kind, stream):
    """As an agent runs it: the model calls a tool, the client answers with a tool_result, the model
    answers; then the conversation, tool turns included, goes on."""

    def turn(messages):
        kw = dict(model=MODELS[kind], max_tokens=64, system=SYSTEM, tools=ANTHROPIC_TOOLS, messages=messages)
        if not stream:
            return client.messages.create(**kw)
        with client.messages.stream(**kw) as s:
            return s.get_final_message()

    messages = ask(TOOL_PROMPT)
    first = turn(messages)
    assert first.stop_reason == "tool_use"
    messages += [{"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                               "content": [{"type": "text", "text": "cats purr"}]}]}]
    second = turn(messages)
    assert second.stop_reason == "end_turn"
    assert [b.text for b in second.content] == ["Mock reply to: " + TOOL_PROMPT]  # the tool turn asks no new tool
    messages += [{"role": "assistant", "content": second.content}, *ask("thanks, summarise")]
    third = turn(messages)
    assert [b.text for b in third.content] == ["Mock reply to: thanks, summarise"]


def test_count_tokens(client):
    kw = dict(model=MODELS["anthropic"], system=SYSTEM, messages=ask())
    assert client.messages.count_tokens(**kw).input_tokens == 5
    assert client.messages.create(max_tokens=64, **kw).usage.input_tokens == 5


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_count_tokens_is_a_clear_400_for_other_kinds(client, kind):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.count_tokens(model=MODELS[kind], messages=ask())
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert f"of kind '{kind}', which cannot count tokens" in info.value.body["error"]["message"]


def test_anthropic_beta_reaches_anthropic_kinds_only(client):
    """The mock refuses betas it does not know, as the real API does: its 400 proves the header arrived."""
    kw = dict(max_tokens=16, messages=ask())
    known = {"anthropic-beta": "claude-code-20250219,fine-grained-tool-streaming-2025-05-14"}
    assert client.messages.create(model=MODELS["anthropic"], extra_headers=known, **kw).content[0].text == REPLY
    unknown = {"anthropic-beta": "no-such-beta"}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODELS["anthropic"], extra_headers=unknown, **kw)
    assert "`no-such-beta`" in info.value.body["error"]["message"]
    assert client.messages.create(model=MODELS["openai"], extra_headers=unknown, **kw).content[0].text == REPLY


@pytest.mark.parametrize(("model", "error", "status", "kind"), [
    ("ghost/claude", anthropic.NotFoundError, 404, "not_found_error"),
    ("anthropic/fail-429", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("gemini/fail-429", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("openai/fail-500", anthropic.InternalServerError, 502, "api_error"),
    ("anthropic/hang", anthropic.InternalServerError, 504, "api_error"),  # FORGE_READ_TIMEOUT=2 in ServerProcess
])
def test_errors_as_the_sdk_raises_them(client, model, error, status, kind):
    with pytest.raises(error) as info:
        client.messages.create(model=model, max_tokens=16, messages=ask())
    assert info.value.status_code == status
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == kind
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


def test_wrong_forge_key_is_an_authentication_error(server):
    srv, _ = server
    bad = anthropic.Anthropic(base_url=srv.url, api_key="forge-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=MODELS["openai"], max_tokens=16, messages=ask())
    assert info.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini"])
def test_failure_mid_stream_is_an_error_event(client, kind):
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model=f"{kind}/drop-mid-stream", max_tokens=16, messages=ask()) as s:
            pieces.extend(s.text_stream)
    assert pieces and REPLY.startswith("".join(pieces))
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "api_error"


def test_key_in_x_api_key_or_authorization(server):
    srv, key = server
    body = {"model": MODELS["openai"], "max_tokens": 16, "messages": ask()}
    for headers in ({"x-api-key": key, "anthropic-version": "2023-06-01"}, {"Authorization": f"Bearer {key}"}):
        r = httpx.post(srv.url + "/v1/messages", json=body, headers=headers)
        assert r.status_code == 200 and r.json()["content"][0]["text"] == REPLY
        timing = r.headers["server-timing"]
        assert 'user;desc="hit"' in timing and "upstream;dur=" in timing
