"""The OpenAPI 3 description of forge-ref's HTTP API, served at ``GET /openapi.json`` (no auth).

Written by hand, as data: every route of ``handlers.routes`` (a test checks none is missing),
its auth, its request body schema, and its error responses, which all share the OpenAI
error shape except on Anthropic's Messages API (``/v1/messages``), which answers in Anthropic's.
``tests/test_fuzz.py`` drives generated requests at every operation listed here, and
``tests/test_schemathesis.py`` holds every answer to what this document declares (statuses,
headers, bodies, stream events), so declare the real statuses and shapes, never looser ones.
Proxy bodies are deliberately open (``additionalProperties``): forge-ref forwards fields it
does not know, as OpenAI's API would accept them. A field it forwards unchecked has no type
here (``_passed``): the provider checks it, and stating a type would claim a check forge-ref
does not make.
"""

from __future__ import annotations

from functools import lru_cache

import orjson

ERROR = {"$ref": "#/components/responses/Error"}
ANTHROPIC_ERROR = {"$ref": "#/components/responses/AnthropicError"}
FORGE_KEY = [{"forgeKey": []}, {"forgeKeyHeader": []}]
ADMIN = [{"adminToken": []}]


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


# Errors whose headers RFC 9110 requires: a 401's challenge, a 405's list of allowed methods.
_WITH_HEADERS = {401: "Unauthorized", 405: "MethodNotAllowed"}


def _error(status: int, error: dict) -> dict:
    if status not in _WITH_HEADERS:
        return error
    name = _WITH_HEADERS[status]
    return {"$ref": f"#/components/responses/{'Anthropic' if error is ANTHROPIC_ERROR else ''}{name}"}


def _op(summary: str, ok: dict, *, errors: tuple[int, ...], security: list | None = FORGE_KEY,
        body: str | None = None, params: list | None = None, error: dict = ERROR) -> dict:
    op: dict = {"summary": summary, "responses": dict(ok)}
    for status in errors:
        op["responses"][str(status)] = _error(status, error)
    op["security"] = security if security is not None else []
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(body))}
    if params:
        op["parameters"] = params
    return op


# One server-sent event (the schema applies per event, as OpenAPI 3.2 reads text/event-stream):
# ``data`` is a JSON chunk in the operation's own streaming shape, or ``[DONE]`` to end an
# OpenAI-style stream; Anthropic's events name their type in ``event``.
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"event": {"type": "string"}, "data": {"type": "string", "minLength": 1},
                             "id": {"type": "string"}, "retry": {"type": "integer"}}}


def _ok(schema: str | None, status: int = 200, description: str = "success", stream: bool = False) -> dict:
    if schema is None:
        return {str(status): {"description": description}}
    content = _json(_ref(schema))
    ok = {"description": description, "content": content}
    if stream:  # the chat paths: streams, and the response cache
        content["text/event-stream"] = {"schema": _SSE_EVENT}
        ok["headers"] = {"X-Forge-Cache": {"description": "the response cache: hit, miss or bypass",
                                           "schema": {"enum": ["hit", "miss", "bypass"]}}}
    return {str(status): ok}


def _multipart(op: dict, schema: str) -> dict:
    """``op`` also taking a ``multipart/form-data`` body."""
    op["requestBody"]["content"]["multipart/form-data"] = {"schema": _ref(schema)}
    return op


_USER_ERRORS = (400, 401, 404, 405, 413)
_OWNER_ERRORS = (400, 401, 403, 404, 405, 413)  # 403: a scoped key does not manage the account
_PROXY_ERRORS = (400, 401, 403, 404, 405, 413, 422, 429, 502, 503, 504)  # 403: outside the key's scope
_MESSAGES_ERRORS = (*_PROXY_ERRORS, 529)
_PROVIDER = [{"name": "provider", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}]
_KEY_ID = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]
_INSTANT = {"type": "string", "description": "ISO 8601 date or time; UTC unless it names an offset"}
_USAGE_QUERY = [
    {"name": "since", "in": "query", "schema": _INSTANT, "description": "inclusive; default: the beginning"},
    {"name": "until", "in": "query", "schema": _INSTANT, "description": "exclusive; default: no end"},
    {"name": "group_by", "in": "query", "schema": {"type": "string", "default": "provider,model"},
     "description": "comma-separated: provider, model, day (and user, for the admin)"},
]
_ADMIN_USAGE_QUERY = [*_USAGE_QUERY, {"name": "user", "in": "query", "schema": {"type": "integer"},
                                      "description": "one user's usage; default: every user's"}]
_SCOPE = {"type": ["array", "null"], "maxItems": 64, "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
          "description": "provider names the key may use; null: every provider"}
# The response cache's opt-in: the header, or the body's ``cache`` object (LiteLLM's spelling).
_CACHE_CONTROL = [{"name": "Cache-Control", "in": "header", "required": False, "schema": {"type": "string"},
                   "description": "max-age=SECONDS: answer from (and keep in) the response cache; no-cache: do not "
                                  "look up; no-store: do not keep"}]
_CACHE_SPEC = {"type": ["object", "null"], "additionalProperties": False,
               "description": "the response cache, per request (null: as if absent)",
               "properties": {"ttl": {"type": "number", "minimum": 0}, "s-maxage": {"type": "number", "minimum": 0},
                              "no-cache": {"type": "boolean"}, "no-store": {"type": "boolean"}}}

# A field forge-ref passes on unchecked: the provider checks it, and its 400 passes through. Its
# type is the provider's to state; declaring one here would claim a check forge-ref does not make.
_PASSED = "passed to the provider, which checks it (its 400 passes through)"


def _passed(what: str) -> dict:
    return {"description": f"{what}; {_PASSED}"}


_CACHE_TTL = {"type": ["number", "null"], "minimum": 0, "maximum": 31536000,
              "description": "default response-cache TTL of this key's chat requests, seconds (null: none)"}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "code", "param"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "code": {"type": ["string", "null"]}, "param": {"type": ["string", "null"]}}}},
    },
    "UserName": {"type": "object", "required": ["name"], "additionalProperties": True,
                 "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128}}},
    "User": {"type": "object", "required": ["id", "name", "key_prefix"],
             "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "key_prefix": {"type": "string"}}},
    "UserWithKey": {"allOf": [_ref("User"), {"type": "object", "required": ["api_key"],
                                             "properties": {"api_key": {"type": "string"}}}]},
    "ProviderKeyCreate": {
        "type": "object", "required": ["provider", "api_key"], "additionalProperties": True,
        "properties": {
            "provider": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$"},
            "api_key": {"type": "string", "minLength": 1, "maxLength": 4096},
            "base_url": {"type": "string", "format": "uri", "maxLength": 2048},
            "kind": {"type": "string", "enum": ["openai", "anthropic", "gemini"]},
            "model_mapping": {"type": "object", "maxProperties": 256,
                              "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}},
            "cache_ttl": _CACHE_TTL,
        },
    },
    "ProviderKeyUpdate": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {
            "api_key": {"type": "string", "minLength": 1, "maxLength": 4096},
            "base_url": {"type": "string", "format": "uri", "maxLength": 2048},
            "kind": {"type": "string", "enum": ["openai", "anthropic", "gemini"]},
            "model_mapping": {"type": "object", "maxProperties": 256,
                              "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}},
            "cache_ttl": _CACHE_TTL,
            "provider": {"type": "string"},
        },
    },
    "ProviderKey": {
        "type": "object", "required": ["provider", "kind", "base_url", "api_key", "model_mapping"],
        "properties": {"provider": {"type": "string"}, "kind": {"type": "string"}, "base_url": {"type": "string"},
                       "api_key": {"type": "string", "description": "masked: sk-...1234"},
                       "model_mapping": {"type": "object", "additionalProperties": {"type": "string"}},
                       "cache_ttl": {"type": ["number", "null"]}},
    },
    "ProviderKeyList": {"type": "object", "required": ["object", "data"],
                        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("ProviderKey")}}},
    "ForgeKeyCreate": {"type": "object", "required": ["name"], "additionalProperties": False,
                       "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128}, "providers": _SCOPE}},
    "ForgeKeyUpdate": {"type": "object", "additionalProperties": False, "minProperties": 1,
                       "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128}, "providers": _SCOPE}},
    "ForgeKey": {"type": "object", "required": ["id", "name", "key_prefix", "providers", "created_at"],
                 "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                "key_prefix": {"type": "string", "description": "the key's first 12 characters"},
                                "providers": _SCOPE, "created_at": {"type": "integer"}}},
    "ForgeKeyWithSecret": {"allOf": [_ref("ForgeKey"), {"type": "object", "required": ["key"],
                                                        "properties": {"key": {"type": "string",
                                                                               "description": "shown once"}}}]},
    "ForgeKeyList": {"type": "object", "required": ["object", "data"],
                     "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("ForgeKey")}}},
    "UsageList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["requests", "errors", "prompt_tokens", "completion_tokens", "latency_p50_ms"],
            "description": "one row per group; the grouped fields (user, provider, model, day) are present when asked",
            "properties": {"user": {"type": "integer"}, "provider": {"type": "string"}, "model": {"type": "string"},
                           "day": {"type": "string", "format": "date"}, "requests": {"type": "integer"},
                           "errors": {"type": "integer", "description": "status 400 or more"},
                           "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                           "latency_p50_ms": {"type": "number"}}}}}},
    "Message": {"type": "object", "required": ["role"], "additionalProperties": True,
                "properties": {"role": {"type": "string"}, "content": _passed("a string or an array of parts")}},
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1, "description": "provider/model or an alias"},
                       "messages": {"type": "array", "minItems": 1, "items": _ref("Message")},
                       "stream": {"type": "boolean"}, "max_tokens": _passed("an integer"),
                       "temperature": _passed("a number"), "cache": _CACHE_SPEC},
    },
    "ChatCompletion": {"type": "object", "additionalProperties": True,
                       "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                      "choices": {"type": "array"}, "usage": {"type": "object"}}},
    "EmbeddingsRequest": {
        "type": "object", "required": ["model", "input"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1},
                       "input": {"oneOf": [{"type": "string", "minLength": 1},
                                           {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                           {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                                           {"type": "array", "minItems": 1, "items": {"type": "array"}}]}},
    },
    "CompletionRequest": {
        "type": "object", "required": ["model", "prompt"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1, "description": "provider/model or an alias "
                                 "(openai kinds only)"},
                       "prompt": {"oneOf": [{"type": "string", "minLength": 1},
                                            {"type": "array", "minItems": 1, "items": {"type": "string"}},
                                            {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                                            {"type": "array", "minItems": 1, "items": {"type": "array"}},
                                            {"type": "null"}]},
                       "stream": {"type": "boolean"}, "max_tokens": _passed("an integer")},
    },
    "Completion": {"type": "object", "additionalProperties": True, "description": "the provider's answer, as it came",
                   "properties": {"id": {"type": "string"}, "object": {"const": "text_completion"},
                                  "choices": {"type": "array"}, "usage": {"type": "object"}}},
    "ImagesRequest": {
        "type": "object", "required": ["model", "prompt"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1, "description": "provider/model or an alias "
                                 "(openai kinds only)"},
                       "prompt": {"type": "string", "minLength": 1}, "n": _passed("an integer"),
                       "response_format": _passed("url or b64_json"), "stream": {"type": "boolean"}},
    },
    "ImageEditForm": {
        "type": "object", "required": ["model", "prompt", "image"], "additionalProperties": True,
        "description": "passed through byte for byte but for the model part",
        "properties": {"model": {"type": "string", "minLength": 1}, "prompt": {"type": "string", "minLength": 1},
                       "image": {"type": "string", "format": "binary"}, "stream": {"enum": ["true", "false"]}},
    },
    "Images": {"type": "object", "additionalProperties": True, "description": "the provider's answer, as it came",
               "properties": {"created": {"type": "integer"}, "data": {"type": "array", "items": {
                   "type": "object", "properties": {"b64_json": {"type": "string"}, "url": {"type": "string"}}}},
                   "usage": {"type": "object"}}},
    "AnthropicError": {
        "type": "object", "required": ["type", "error"],
        "properties": {"type": {"const": "error"}, "error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string", "description": "invalid_request_error, authentication_error, "
                                    "permission_error, not_found_error, request_too_large, rate_limit_error, "
                                    "api_error, overloaded_error"},
                           "message": {"type": "string"}}}},
    },
    "MessagesTurn": {"type": "object", "required": ["role"], "additionalProperties": True,
                     "properties": {"role": {"enum": ["user", "assistant"]},
                                    "content": _passed("a string or an array of content blocks")}},
    "MessagesRequest": {
        "type": "object", "required": ["model", "max_tokens", "messages"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1, "description": "provider/model or an alias"},
                       "max_tokens": {"type": "integer", "minimum": 1},
                       "messages": {"type": "array", "minItems": 1, "items": _ref("MessagesTurn")},
                       "system": {"type": ["string", "array", "null"], "description": "null: none"},
                       "stream": {"type": "boolean"}, "cache": _CACHE_SPEC},
    },
    "CountTokensRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "properties": {"model": {"type": "string", "minLength": 1},
                       "messages": {"type": "array", "minItems": 1, "items": _ref("MessagesTurn")},
                       "system": {"type": ["string", "array", "null"], "description": "null: none"}},
    },
    "MessagesResponse": {"type": "object", "additionalProperties": True,
                         "properties": {"id": {"type": "string"}, "type": {"const": "message"},
                                        "role": {"const": "assistant"}, "content": {"type": "array"},
                                        "stop_reason": {"type": ["string", "null"]}, "usage": {"type": "object"}}},
    "TokenCount": {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}},
    "Embeddings": {"type": "object", "additionalProperties": True,
                   "properties": {"object": {"type": "string"}, "data": {"type": "array"}}},
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
                      "type": "object", "required": ["id", "object"],
                      "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                                     "owned_by": {"type": "string"}}}}}},
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
    "Ready": {"type": "object", "properties": {"status": {"const": "ready"}}},
    "Stats": {"type": "object", "required": ["caches_enabled", "counters", "caches"], "additionalProperties": True},
}

PATHS = {
    "/v1/users": {"post": _op("create a user; returns its Forge key once", _ok("UserWithKey", 201),
                              errors=(400, 401, 403, 405, 413), security=ADMIN, body="UserName")},
    "/v1/users/me": {
        "get": _op("read the user of this key", _ok("User"), errors=_USER_ERRORS),
        "patch": _op("rename the user", _ok("User"), errors=_OWNER_ERRORS, body="UserName"),
        "delete": _op("delete the user, its keys and provider keys", _ok(None, 204), errors=_OWNER_ERRORS),
    },
    "/v1/users/me/reset-key": {"post": _op("a new secret for the calling key (name and scope kept); the old one is "
                                           "refused at once, in every process", _ok("UserWithKey"), errors=_USER_ERRORS)},
    "/v1/users/me/keys": {
        "get": _op("the user's Forge keys, masked (prefix only)", _ok("ForgeKeyList"), errors=_USER_ERRORS),
        "post": _op("a new Forge key, scoped to some providers or not; the key is shown once",
                    _ok("ForgeKeyWithSecret", 201), errors=_OWNER_ERRORS, body="ForgeKeyCreate"),
    },
    "/v1/users/me/keys/{key_id}": {
        "patch": _op("rename a key or change its scope (at once, in every process)", _ok("ForgeKey"),
                     errors=_OWNER_ERRORS, body="ForgeKeyUpdate", params=_KEY_ID),
        "delete": _op("revoke a key (refused at once, in every process)", _ok(None, 204), errors=_OWNER_ERRORS,
                      params=_KEY_ID),
    },
    "/v1/usage": {"get": _op("the caller's usage, summed per group", _ok("UsageList"), errors=(400, 401, 405),
                             params=_USAGE_QUERY)},
    "/v1/admin/usage": {"get": _op("every user's usage (or one's), summed per group", _ok("UsageList"),
                                   errors=(400, 401, 403, 405), security=ADMIN, params=_ADMIN_USAGE_QUERY)},
    "/v1/provider-keys": {
        "get": _op("the user's provider keys, secrets masked", _ok("ProviderKeyList"), errors=_USER_ERRORS),
        "post": _op("add a provider key (a private base_url is refused)", _ok("ProviderKey", 201),
                    errors=(*_OWNER_ERRORS, 409), body="ProviderKeyCreate"),
    },
    "/v1/provider-keys/{provider}": {
        "put": _op("change the fields given, keep the others", _ok("ProviderKey"), errors=_OWNER_ERRORS,
                   body="ProviderKeyUpdate", params=_PROVIDER),
        "delete": _op("delete a provider key", _ok(None, 204), errors=_OWNER_ERRORS, params=_PROVIDER),
    },
    "/v1/chat/completions": {"post": _op("proxy a chat completion; stream: true answers SSE",
                                         _ok("ChatCompletion", stream=True), errors=_PROXY_ERRORS,
                                         body="ChatCompletionRequest", params=_CACHE_CONTROL)},
    "/v1/messages": {"post": _op("Anthropic's Messages API: passed through to anthropic kinds, translated for the "
                                 "others; stream: true answers Anthropic's SSE events",
                                 _ok("MessagesResponse", stream=True), errors=_MESSAGES_ERRORS,
                                 body="MessagesRequest", error=ANTHROPIC_ERROR, params=_CACHE_CONTROL)},
    "/v1/messages/count_tokens": {"post": _op("count a Messages request's input tokens (anthropic kinds only)",
                                              _ok("TokenCount"), errors=_MESSAGES_ERRORS, body="CountTokensRequest",
                                              error=ANTHROPIC_ERROR)},
    "/v1/embeddings": {"post": _op("proxy embeddings", _ok("Embeddings"), errors=_PROXY_ERRORS, body="EmbeddingsRequest")},
    "/v1/completions": {"post": _op("legacy text completions, passed through to openai kinds (a 400 for the "
                                    "others); stream: true answers the provider's SSE as it comes",
                                    _ok("Completion", stream=True), errors=_PROXY_ERRORS, body="CompletionRequest")},
    "/v1/images/generations": {"post": _op("image generation, passed through to openai kinds (a 400 for the others);"
                                           " stream: true answers the provider's SSE events as they come",
                                           _ok("Images", stream=True), errors=_PROXY_ERRORS, body="ImagesRequest")},
    "/v1/images/edits": {"post": _multipart(_op("image edits, passed through to openai kinds (a 400 for the others): "
                                                "JSON as generations, or a multipart form whose model part alone is "
                                                "rewritten", _ok("Images", stream=True), errors=_PROXY_ERRORS,
                                                body="ImagesRequest"), "ImageEditForm")},
    "/v1/models": {"get": _op("every model of every provider the key may use, as provider/model, plus aliases",
                              _ok("ModelList"), errors=(401, 405))},
    "/health": {"get": _op("liveness", _ok("Health"), errors=(405,), security=None)},
    "/ready": {"get": _op("readiness: 503 while draining or while the database (or Redis) does not answer",
                          _ok("Ready"), errors=(405, 503), security=None)},
    "/_stats": {
        "get": _op("cost counters, summed over processes", _ok("Stats"), errors=(401, 403, 405), security=ADMIN),
        "delete": _op("reset the counters", _ok("Stats"), errors=(401, 403, 405), security=ADMIN),
    },
    "/metrics": {"get": _op("the counters in Prometheus text format",
                            {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                            errors=(401, 403, 405), security=ADMIN)},
    "/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI 3 document",
                                                           "content": _json({"type": "object"})}},
                                 errors=(405,), security=None)},
}


def _link(path: str, method: str, **parameters: str) -> dict:
    """An OpenAPI link: what a response gives the next call (schemathesis' stateful phase follows them)."""
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
    return {"operationRef": ref, "parameters": parameters}


# Created resources, followed to the calls that change and delete them.
_LINKS = {
    ("/v1/provider-keys", "post", "201"): {
        "UpdateProviderKey": _link("/v1/provider-keys/{provider}", "put", provider="$response.body#/provider"),
        "DeleteProviderKey": _link("/v1/provider-keys/{provider}", "delete", provider="$response.body#/provider")},
    ("/v1/provider-keys/{provider}", "put", "200"): {
        "DeleteProviderKey": _link("/v1/provider-keys/{provider}", "delete", provider="$response.body#/provider")},
    ("/v1/users/me/keys", "post", "201"): {
        "UpdateForgeKey": _link("/v1/users/me/keys/{key_id}", "patch", key_id="$response.body#/id"),
        "DeleteForgeKey": _link("/v1/users/me/keys/{key_id}", "delete", key_id="$response.body#/id")},
    ("/v1/users/me/keys/{key_id}", "patch", "200"): {
        "DeleteForgeKey": _link("/v1/users/me/keys/{key_id}", "delete", key_id="$response.body#/id")},
}
for (_path, _method, _status), _links in _LINKS.items():
    PATHS[_path][_method]["responses"][_status]["links"] = _links


_ERROR_HEADERS = {
    "Unauthorized": {"WWW-Authenticate": {"required": True, "description": "the challenge (RFC 9110)",
                                          "schema": {"const": "Bearer"}}},
    "MethodNotAllowed": {"Allow": {"required": True, "description": "the methods this path implements (RFC 9110)",
                                   "schema": {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}}},
}


# One working request per proxy operation, for readers and for schemathesis' explicit phase (so
# its cases reach a provider, and the answers' shapes are checked, not only the errors').
_EXAMPLES = {
    "ChatCompletionRequest": {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
    "EmbeddingsRequest": {"model": "openai/text-embedding-3-small", "input": "Hello"},
    "CompletionRequest": {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hello", "max_tokens": 16},
    "ImagesRequest": {"model": "openai/gpt-image-1", "prompt": "a red circle"},
    "MessagesRequest": {"model": "anthropic/claude-haiku-4-5", "max_tokens": 64,
                        "messages": [{"role": "user", "content": "Hello"}]},
    "CountTokensRequest": {"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "Hello"}]},
}
for _name, _example in _EXAMPLES.items():
    SCHEMAS[_name]["examples"] = [_example]


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "forge-ref", "version": "1",
                 "description": "OpenAI-compatible LLM API gateway. Every error has the OpenAI shape "
                                "{\"error\": {\"message\", \"type\", \"param\", \"code\"}}, except on "
                                "/v1/messages (Anthropic's API): {\"type\": \"error\", \"error\": {\"type\", "
                                "\"message\"}}."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": {"Error": {"description": "an error, OpenAI-shaped", "content": _json(_ref("Error"))},
                          "AnthropicError": {"description": "an error, Anthropic-shaped",
                                             "content": _json(_ref("AnthropicError"))},
                          **{f"{prefix}{name}": {"description": f"an error, {shape}-shaped, with its header",
                                                 "content": _json(_ref(f"{prefix}Error")),
                                                 "headers": _ERROR_HEADERS[name]}
                             for prefix, shape in (("", "OpenAI"), ("Anthropic", "Anthropic"))
                             for name in _WITH_HEADERS.values()}},
            "securitySchemes": {
                "forgeKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer forge-..."},
                "forgeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "FORGE_ADMIN_TOKEN"},
            },
        },
    }


@lru_cache(maxsize=1)
def document_bytes() -> bytes:
    return orjson.dumps(document())
