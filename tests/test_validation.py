"""Validation: every rule answers a ``BadRequest`` (400) that names its field, and nothing a client
can send makes a validator raise anything else (which the handlers would turn into a 500).

The SSRF rules for private ``base_url`` addresses are tested in ``test_security.py``; these tests
run with private upstreams allowed, so no name is resolved.
"""

from __future__ import annotations

import asyncio

import pytest

from forge_ref import validation
from forge_ref.adapters import DEFAULT_BASE_URLS
from forge_ref.errors import BadRequest
from forge_ref.store import ProviderRow
from forge_ref.validation import ProviderKeySpec

JUNK = {"object": {}, "array": [], "array of junk": [{}], "int": 5, "float": 1.5, "bool": True, "null": None,
        "string": "x", "empty string": "", "huge int": 2**70}
ABSENT = object()
VALID_KEY = {"provider": "groq", "api_key": "sk-groq-0123456789", "base_url": "https://api.groq.com/openai/v1"}


def new_key(body: dict) -> ProviderKeySpec:
    return asyncio.run(validation.new_provider_key(body, allow_private=True))


def changes(body: dict):
    return asyncio.run(validation.provider_key_changes(body, allow_private=True))


def refused(fn, body: dict) -> tuple[str | None, str | None, str]:
    with pytest.raises(BadRequest) as info:
        fn(body)
    err = info.value
    assert err.status == 400 and err.type == "invalid_request_error"
    return err.code, err.param, err.message


# --- user names -----------------------------------------------------------------------------------


def test_user_name_is_stripped():
    assert validation.user_name({"name": "  Alice Smith "}) == "Alice Smith"


@pytest.mark.parametrize(("body", "expected"), [
    ({}, ("missing_field", "name", "'name' is required")),
    ({"name": None}, ("missing_field", "name", "'name' is required")),
    ({"name": 7}, ("invalid_type", "name", "'name' must be a string")),
    ({"name": ["a"]}, ("invalid_type", "name", "'name' must be a string")),
    ({"name": "   "}, ("invalid_value", "name", "'name' must not be empty")),
    ({"name": "x" * 129}, ("too_long", "name", "'name' is longer than 128 characters")),
    ({"name": "bad\x07name"}, ("invalid_value", "name", "'name' must not contain control characters")),
], ids=["absent", "null", "int", "list", "blank", "129 chars", "control character"])
def test_user_name_rules(body, expected):
    assert refused(validation.user_name, body) == expected


def test_user_name_of_128_characters_is_accepted():
    assert validation.user_name({"name": "x" * 128}) == "x" * 128


# --- chat and embeddings bodies -------------------------------------------------------------------


def test_chat_body_is_returned_as_is():
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "temperature": {"not": "checked here"}}
    assert validation.chat_body(body) is body  # fields the adapters translate are checked there


@pytest.mark.parametrize(("body", "expected"), [
    ({}, ("invalid_messages", "messages", "'messages' must be a non-empty array")),
    ({"messages": []}, ("invalid_messages", "messages", "'messages' must be a non-empty array")),
    ({"messages": "hi"}, ("invalid_messages", "messages", "'messages' must be a non-empty array")),
    ({"messages": {"role": "user"}}, ("invalid_messages", "messages", "'messages' must be a non-empty array")),
    ({"messages": [{"role": "user"}, "hi"]},
     ("invalid_messages", "messages[1]", "messages[1] must be an object with a string 'role'")),
    ({"messages": [{"content": "x"}]},
     ("invalid_messages", "messages[0]", "messages[0] must be an object with a string 'role'")),
    ({"messages": [{"role": 1}]},
     ("invalid_messages", "messages[0]", "messages[0] must be an object with a string 'role'")),
    ({"messages": [{"role": "user"}], "stream": "yes"}, ("invalid_type", "stream", "'stream' must be a boolean")),
    ({"messages": [{"role": "user"}], "stream": None}, ("invalid_type", "stream", "'stream' must be a boolean")),
    ({"messages": [{"role": "user"}], "stream": 1}, ("invalid_type", "stream", "'stream' must be a boolean")),
], ids=["no messages", "empty", "string", "object", "second not an object", "no role", "role not a string",
        "stream string", "stream null", "stream 1"])
def test_chat_body_rules(body, expected):
    assert refused(validation.chat_body, body) == expected


MESSAGES = {"model": "anthropic/x", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
ROLES = "role 'user' or 'assistant' (the system prompt is the top-level 'system')"


@pytest.mark.parametrize(("body", "expected"), [
    ({"max_tokens": 8}, ("invalid_messages", "messages", "'messages' must be a non-empty array")),
    (dict(MESSAGES, messages=[{"role": "system", "content": "x"}]),
     ("invalid_messages", "messages[0]", f"messages[0] must be an object with {ROLES}")),
    (dict(MESSAGES, messages=[{"role": "user"}, {"role": {}}]),
     ("invalid_messages", "messages[1]", f"messages[1] must be an object with {ROLES}")),
    (dict(MESSAGES, system=5), ("invalid_type", "system", "'system' must be a string or an array of text blocks")),
    *[({k: v for k, v in MESSAGES.items() if k != "max_tokens"} | extra,
       ("invalid_value", "max_tokens", "'max_tokens' is required: a positive integer"))
      for extra in ({}, {"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": 1.5}, {"max_tokens": "8"})],
    (dict(MESSAGES, stream="yes"), ("invalid_type", "stream", "'stream' must be a boolean")),
], ids=["no messages", "a system turn", "role not a string", "system a number", "no max_tokens", "max_tokens 0",
        "max_tokens true", "max_tokens float", "max_tokens string", "stream string"])
def test_messages_body_rules(body, expected):
    assert refused(validation.messages_body, body) == expected


def test_count_tokens_body_needs_no_max_tokens_and_both_return_the_body_as_is():
    body = {k: v for k, v in MESSAGES.items() if k != "max_tokens"} | {"system": [{"type": "text", "text": "s"}]}
    assert validation.count_tokens_body(body) is body
    assert validation.messages_body(MESSAGES) is MESSAGES


@pytest.mark.parametrize("value", ["hello", ["a", "b"], [1, 2, 3], [[1, 2], [3]]],
                         ids=["string", "strings", "tokens", "token arrays"])
def test_embeddings_inputs_accepted(value):
    body = {"model": "openai/text-embedding-3-small", "input": value}
    assert validation.embeddings_body(body) is body


@pytest.mark.parametrize("value", [None, "", [], ["a", 1], [1, [2]], {"text": "a"}, 5, True, [False], [1, True]],
                         ids=["absent", "empty string", "empty array", "mixed", "tokens and arrays", "object",
                              "int", "bool", "bools, once taken for tokens", "a bool among tokens"])
def test_embeddings_inputs_refused(value):
    body = {"model": "openai/x"} if value is None else {"model": "openai/x", "input": value}
    assert refused(validation.embeddings_body, body) == (
        "invalid_input", "input", "'input' must be a non-empty string or array")


# --- new provider keys ----------------------------------------------------------------------------


def test_new_provider_key_cleans_every_field():
    spec = new_key({"provider": " My-Groq ", "api_key": " sk-groq-0123456789 ",
                    "base_url": "https://api.groq.com/openai/v1/", "model_mapping": {"fast": "llama-3-8b"}})
    assert spec == ProviderKeySpec(provider="my-groq", kind="openai", api_key="sk-groq-0123456789",
                                   base_url="https://api.groq.com/openai/v1", model_mapping={"fast": "llama-3-8b"})


@pytest.mark.parametrize(("provider", "kind", "base_url"), [
    ("openai", "openai", "https://api.openai.com/v1"),
    ("anthropic", "anthropic", "https://api.anthropic.com"),
    ("gemini", "gemini", "https://generativelanguage.googleapis.com"),
])
def test_known_provider_names_default_their_kind_and_base_url(provider, kind, base_url):
    spec = new_key({"provider": provider, "api_key": "sk-0123456789"})
    assert (spec.kind, spec.base_url, spec.model_mapping) == (kind, base_url, {})
    assert DEFAULT_BASE_URLS[kind] == base_url


def test_an_explicit_kind_picks_the_adapter_whatever_the_name():
    spec = new_key(dict(VALID_KEY, provider="my-claude", kind="anthropic"))
    assert (spec.provider, spec.kind) == ("my-claude", "anthropic")


def test_a_known_name_with_another_kind_defaults_to_that_kinds_base_url():
    assert new_key({"provider": "openai", "kind": "gemini", "api_key": "k"}).base_url == DEFAULT_BASE_URLS["gemini"]


NAME_RULE = "'provider' may hold a-z, 0-9, '.', '_' and '-' (64 at most), starting with a letter or digit"
KIND_RULE = "'kind' must be one of openai, anthropic, gemini"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("provider", ABSENT, ("missing_field", "provider", "'provider' is required")),
    ("provider", 5, ("invalid_type", "provider", "'provider' must be a string")),
    ("provider", "Bad Name!", ("invalid_value", "provider", NAME_RULE)),
    ("provider", "-dash-first", ("invalid_value", "provider", NAME_RULE)),
    ("provider", "x" * 65, ("too_long", "provider", "'provider' is longer than 64 characters")),
    ("kind", "cohere", ("invalid_value", "kind", KIND_RULE)),
    ("kind", None, ("invalid_value", "kind", KIND_RULE)),
    ("kind", {}, ("invalid_value", "kind", KIND_RULE)),  # was a 500: unhashable type: 'dict'
    ("kind", ["openai"], ("invalid_value", "kind", KIND_RULE)),
    ("kind", 1, ("invalid_value", "kind", KIND_RULE)),
    ("api_key", ABSENT, ("missing_field", "api_key", "'api_key' is required")),
    ("api_key", ["sk"], ("invalid_type", "api_key", "'api_key' must be a string")),
    ("api_key", "sk 123", ("invalid_value", "api_key", "'api_key' must not contain whitespace")),
    ("api_key", "sk\x00123", ("invalid_value", "api_key", "'api_key' must not contain whitespace")),
    ("api_key", "k" * 4097, ("too_long", "api_key", "'api_key' is longer than 4096 characters")),
    ("base_url", ABSENT, ("missing_field", "base_url", "'base_url' is required for provider 'groq'")),
], ids=["provider absent", "provider int", "provider chars", "provider leading dash", "provider 65 chars",
        "kind unknown", "kind null", "kind object", "kind array", "kind int", "api_key absent", "api_key array",
        "api_key space", "api_key NUL", "api_key 4097 chars", "base_url absent for an unknown name"])
def test_new_provider_key_rules(field, value, expected):
    body = dict(VALID_KEY, **{field: value})
    if value is ABSENT:
        del body[field]
    assert refused(new_key, body) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://files.example.com", "'base_url' must be an http(s) URL"),
    ("https://", "'base_url' must be an http(s) URL"),
    ("api.example.com/v1", "'base_url' must be an http(s) URL"),
    ("https://api.example.com:99999/v1", "'base_url' is not a valid URL"),
    ("https://api.example.com:port/v1", "'base_url' is not a valid URL"),
    ("https://[::1/v1", "'base_url' is not a valid URL"),
    ("https://user:pw@api.example.com/v1", "'base_url' must not carry credentials, a query or a fragment"),
    ("https://api.example.com/v1?key=sk", "'base_url' must not carry credentials, a query or a fragment"),
    ("https://api.example.com/v1#frag", "'base_url' must not carry credentials, a query or a fragment"),
    ("https://api.exa\tmple.com/v1", "'base_url' must not contain whitespace, control characters or backslashes"),
    ("https://api.example.com\\@evil/v1",
     "'base_url' must not contain whitespace, control characters or backslashes"),
    ("https://api.example.com/" + "v" * 2048, "'base_url' is longer than 2048 characters"),
])
def test_base_url_rules(url, message):
    code, param, got = refused(new_key, dict(VALID_KEY, base_url=url))
    assert (param, got) == ("base_url", message)
    assert code == ("too_long" if "longer" in message else "invalid_url")


def test_base_url_trailing_slashes_are_dropped():
    assert new_key(dict(VALID_KEY, base_url="http://127.0.0.1:8001/openai/v1//")).base_url == \
        "http://127.0.0.1:8001/openai/v1"


@pytest.mark.parametrize("mapping", [
    "fast", ["fast"], {"fast": 5}, {"fast": None}, {"fast": ""}, {"": "gpt-4o"}, {"a" * 129: "gpt-4o"},
    {"fast": "m" * 257}, {f"a{i}": "m" for i in range(257)},
], ids=["string", "array", "int target", "null target", "empty target", "empty alias", "alias 129 chars",
        "target 257 chars", "257 aliases"])
def test_model_mapping_rules(mapping):
    code, param, _ = refused(new_key, dict(VALID_KEY, model_mapping=mapping))
    assert (code, param) == ("invalid_value", "model_mapping")


def test_model_mapping_at_its_bounds_is_a_copy():
    mapping = {f"a{i}": "m" * 256 for i in range(255)} | {"a" * 128: "gpt-4o"}
    spec = new_key(dict(VALID_KEY, model_mapping=mapping))
    assert spec.model_mapping == mapping and spec.model_mapping is not mapping
    assert new_key(dict(VALID_KEY, model_mapping=None)).model_mapping == {}


# --- provider key updates -------------------------------------------------------------------------


def test_update_changes_only_the_fields_given():
    assert changes({"api_key": "sk-new-0123456789"}) == ({}, "sk-new-0123456789")
    assert changes({"kind": "anthropic", "base_url": "https://example.com/", "model_mapping": {"a": "b"}}) == (
        {"kind": "anthropic", "base_url": "https://example.com", "model_mapping": {"a": "b"}}, None)
    assert changes({"provider": "ignored", "model_mapping": {}}) == ({"model_mapping": {}}, None)


@pytest.mark.parametrize(("body", "expected"), [
    ({}, ("empty_update", None, "nothing to update: give api_key, base_url, kind or model_mapping")),
    ({"provider": "x"}, ("empty_update", None, "nothing to update: give api_key, base_url, kind or model_mapping")),
    ({"api_key": None}, ("empty_update", None, "nothing to update: give api_key, base_url, kind or model_mapping")),
    ({"name": "x", "api_key": "k", "zeta": 1}, ("unknown_field", None, "unknown field(s): name, zeta")),
    ({"base_url": None}, ("missing_field", "base_url", "'base_url' is required")),
    ({"base_url": "ftp://x"}, ("invalid_url", "base_url", "'base_url' must be an http(s) URL")),
    ({"kind": "cohere"}, ("invalid_value", "kind", KIND_RULE)),
    ({"kind": {}}, ("invalid_value", "kind", KIND_RULE)),
    ({"api_key": "a b"}, ("invalid_value", "api_key", "'api_key' must not contain whitespace")),
    ({"model_mapping": []}, ("invalid_value", "model_mapping",
                             "'model_mapping' must be an object of at most 256 aliases")),
], ids=["empty", "only provider", "null api_key", "unknown fields", "base_url null", "base_url ftp", "kind unknown",
        "kind object", "api_key space", "mapping array"])
def test_update_rules(body, expected):
    assert refused(changes, body) == expected


# --- Forge keys -----------------------------------------------------------------------------------


def test_a_scope_is_kept_lower_case_sorted_and_once():
    assert validation.new_forge_key({"name": " ci ", "providers": ["OpenAI", "groq ", "openai"]}) == (
        "ci", ["groq", "openai"])
    assert validation.new_forge_key({"name": "all", "providers": None}) == ("all", None)
    assert validation.new_forge_key({"name": "all"}) == ("all", None)
    assert validation.new_forge_key({"name": "none", "providers": []}) == ("none", [])


def test_forge_key_changes_only_the_fields_given():
    assert validation.forge_key_changes({"providers": None}) == {"providers": None}
    assert validation.forge_key_changes({"name": "x"}) == {"name": "x"}


SCOPE_ERROR = ("invalid_value", "providers")


@pytest.mark.parametrize(("fn", "body", "expected"), [
    (validation.new_forge_key, {"providers": ["openai"]}, ("missing_field", "name", "'name' is required")),
    (validation.new_forge_key, {"name": "x", "providers": "openai"},
     (*SCOPE_ERROR, "'providers' must be null (every provider) or a list of at most 64 provider names")),
    (validation.new_forge_key, {"name": "x", "providers": [5]},
     (*SCOPE_ERROR, "'providers' must be null (every provider) or a list of at most 64 provider names")),
    (validation.new_forge_key, {"name": "x", "providers": [f"p{i}" for i in range(65)]},
     (*SCOPE_ERROR, "'providers' must be null (every provider) or a list of at most 64 provider names")),
    (validation.new_forge_key, {"name": "x", "providers": ["my groq"]},
     (*SCOPE_ERROR, "'providers' must hold provider names: a-z, 0-9, '.', '_' and '-' (64 at most)")),
    (validation.new_forge_key, {"name": "x", "providers": [""]},
     (*SCOPE_ERROR, "'providers' must hold provider names: a-z, 0-9, '.', '_' and '-' (64 at most)")),
    (validation.new_forge_key, {"name": "x", "key": "forge-mine"}, ("unknown_field", None, "unknown field(s): key")),
    (validation.forge_key_changes, {}, ("empty_update", None, "nothing to update: give name or providers")),
    (validation.forge_key_changes, {"name": None}, ("missing_field", "name", "'name' is required")),
])
def test_forge_key_rules(fn, body, expected):
    assert refused(fn, body) == expected


# --- no wrong type escapes as anything but a 400 -------------------------------------------------

VALIDATORS = {
    "user_name": (validation.user_name, {"name": "alice"}),
    "chat_body": (validation.chat_body, {"model": "openai/x", "messages": [{"role": "user", "content": "x"}],
                                         "stream": True}),
    "embeddings_body": (validation.embeddings_body, {"model": "openai/x", "input": ["a"]}),
    "messages_body": (validation.messages_body, dict(MESSAGES, system="s", stream=True)),
    "new_provider_key": (new_key, dict(VALID_KEY, kind="openai", model_mapping={"fast": "x"})),
    "provider_key_changes": (changes, {k: v for k, v in VALID_KEY.items() if k != "provider"}
                             | {"kind": "openai", "model_mapping": {"fast": "x"}}),
    "new_forge_key": (validation.new_forge_key, {"name": "ci", "providers": ["openai"]}),
    "forge_key_changes": (validation.forge_key_changes, {"name": "ci", "providers": ["openai"]}),
}
SWEEP = [(name, field, junk) for name, (_, body) in VALIDATORS.items() for field in body for junk in JUNK]


@pytest.mark.parametrize(("validator", "field", "junk"), SWEEP)
def test_a_wrong_type_in_any_field_is_a_400_never_an_exception(validator, field, junk):
    """Each field of a valid body replaced by each JSON type: refused with a 400, or accepted (a name
    of "x" is a fine name), but never another exception, which would reach the client as a 500."""
    fn, body = VALIDATORS[validator]
    try:
        fn(dict(body, **{field: JUNK[junk]}))
    except BadRequest as err:
        assert err.status == 400 and err.message


def test_a_message_of_any_type_is_a_400():
    for junk in JUNK.values():
        with pytest.raises(BadRequest):
            validation.chat_body({"messages": [junk]})


# --- listing --------------------------------------------------------------------------------------


def test_provider_json_shows_only_the_masked_key():
    row = ProviderRow(3, "groq", "openai", "gAAAA-ciphertext", "https://api.groq.com/openai/v1", {"fast": "llama"}, 1.0)
    assert validation.provider_json(row, "sk-...6789") == {
        "provider": "groq", "kind": "openai", "base_url": "https://api.groq.com/openai/v1", "api_key": "sk-...6789",
        "model_mapping": {"fast": "llama"}}
