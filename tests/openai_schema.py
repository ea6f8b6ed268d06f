"""What OpenAI's published OpenAPI schema demands of the responses forge-ref builds, as JSON Schema.

Vendored by hand (only what is needed) from github.com/openai/openai-openapi, ``openapi.yaml`` at commit
f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (2026-08-21), ``components.schemas``:
CreateChatCompletionResponse, CreateChatCompletionStreamResponse, ChatCompletionResponseMessage,
ChatCompletionStreamResponseDelta, ChatCompletionMessageToolCall, ChatCompletionMessageToolCallChunk,
CompletionUsage, ServiceTier, CreateEmbeddingResponse, Embedding, ListModelsResponse, Model, ErrorResponse,
Error, CreateCompletionResponse, ImagesResponse, Image, ImageGenUsage.

Every ``required`` list is the schema's, whole. Of the optional properties, only those someone here
builds are kept, with the schema's types and enums; OpenAPI's ``nullable: true`` and ``anyOf [X, null]``
are written as a ``"null"`` type. Other properties stay allowed (the schema leaves objects open).
Two things the schema says that its own API does not always do: ``system_fingerprint`` is a plain
(not nullable) string, and ``Embedding.embedding`` is only an array of floats, though
``encoding_format: base64`` makes the API answer a string (``EMBEDDING_BASE64`` below allows it).
"""

from __future__ import annotations

import jsonschema

STR = {"type": "string"}
INT = {"type": "integer"}
NULLABLE_STR = {"type": ["string", "null"]}
FINISH_REASONS = ["stop", "length", "tool_calls", "content_filter", "function_call"]
SERVICE_TIER = {"enum": ["auto", "default", "flex", "scale", "priority", "fast", None]}
LOGPROBS = {"type": ["object", "null"], "required": ["content", "refusal"]}

USAGE = {
    "type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT,
                   "completion_tokens_details": {"type": "object", "properties": {"reasoning_tokens": INT}},
                   "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": INT}}},
}
TOOL_CALL = {
    "type": "object", "required": ["id", "type", "function"],
    "properties": {"id": STR, "type": {"enum": ["function"]},
                   "function": {"type": "object", "required": ["name", "arguments"],
                                "properties": {"name": STR, "arguments": STR}}},
}
TOOL_CALL_CHUNK = {
    "type": "object", "required": ["index"],
    "properties": {"index": INT, "id": STR, "type": {"enum": ["function"]},
                   "function": {"type": "object", "properties": {"name": STR, "arguments": STR}}},
}
# Present on every chat answer (whole or streamed).
_CHAT = {"id": STR, "created": INT, "model": STR, "system_fingerprint": STR, "service_tier": SERVICE_TIER}

CHAT_COMPLETION = {
    "type": "object", "required": ["choices", "created", "id", "model", "object"],
    "properties": {**_CHAT, "object": {"enum": ["chat.completion"]}, "usage": USAGE, "choices": {
        "type": "array", "items": {
            "type": "object", "required": ["finish_reason", "index", "message", "logprobs"],
            "properties": {"finish_reason": {"enum": FINISH_REASONS}, "index": INT, "logprobs": LOGPROBS,
                           "message": {"type": "object", "required": ["role", "content", "refusal"],
                                       "properties": {"role": {"enum": ["assistant"]}, "content": NULLABLE_STR,
                                                      "refusal": NULLABLE_STR,
                                                      "tool_calls": {"type": "array", "items": TOOL_CALL}}}}}}},
}
CHAT_CHUNK = {
    "type": "object", "required": ["choices", "created", "id", "model", "object"],
    "properties": {**_CHAT, "object": {"enum": ["chat.completion.chunk"]},
                   "usage": {"anyOf": [USAGE, {"type": "null"}]},
                   "choices": {"type": "array", "items": {
                       "type": "object", "required": ["delta", "finish_reason", "index"],
                       "properties": {"finish_reason": {"enum": [*FINISH_REASONS, None]}, "index": INT,
                                      "logprobs": LOGPROBS,
                                      "delta": {"type": "object", "properties": {
                                          "role": {"enum": ["developer", "system", "user", "assistant", "tool"]},
                                          "content": NULLABLE_STR, "refusal": NULLABLE_STR,
                                          "tool_calls": {"type": "array", "items": TOOL_CALL_CHUNK}}}}}}},
}
EMBEDDING = {"type": "object", "required": ["index", "object", "embedding"],
             "properties": {"index": INT, "object": {"enum": ["embedding"]},
                            "embedding": {"type": "array", "items": {"type": "number"}}}}
EMBEDDING_BASE64 = dict(EMBEDDING, properties=dict(EMBEDDING["properties"], embedding=STR))


def embeddings(item: dict) -> dict:
    return {"type": "object", "required": ["object", "model", "data", "usage"],
            "properties": {"object": {"enum": ["list"]}, "model": STR, "data": {"type": "array", "items": item},
                           "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                                     "properties": {"prompt_tokens": INT, "total_tokens": INT}}}}


EMBEDDINGS = embeddings(EMBEDDING)
MODEL_LIST = {
    "type": "object", "required": ["object", "data"],
    "properties": {"object": {"enum": ["list"]}, "data": {"type": "array", "items": {
        "type": "object", "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": STR, "created": INT, "object": {"enum": ["model"]}, "owned_by": STR}}}},
}
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message", "param", "code"],
                             "properties": {"type": STR, "message": STR, "param": NULLABLE_STR, "code": NULLABLE_STR}}},
}
# The provider's own answers, passed through: held to the schema here to keep the mock honest.
COMPLETION = {
    "type": "object", "required": ["id", "object", "created", "model", "choices"],
    "properties": {"id": STR, "created": INT, "model": STR, "system_fingerprint": STR, "usage": USAGE,
                   "object": {"enum": ["text_completion"]}, "choices": {"type": "array", "items": {
                       "type": "object", "required": ["finish_reason", "index", "logprobs", "text"],
                       "properties": {"finish_reason": {"enum": ["stop", "length", "content_filter"]}, "index": INT,
                                      "logprobs": {"type": ["object", "null"]}, "text": STR}}}},
}
IMAGES = {
    "type": "object", "required": ["created"],
    "properties": {"created": INT,
                   "data": {"type": "array", "items": {"type": "object", "properties": {
                       "b64_json": STR, "url": STR, "revised_prompt": STR}}},
                   "background": {"enum": ["transparent", "opaque"]},
                   "output_format": {"enum": ["png", "webp", "jpeg"]},
                   "size": {"enum": ["1024x1024", "1024x1536", "1536x1024"]},
                   "quality": {"enum": ["low", "medium", "high"]},
                   "usage": {"type": "object",
                             "required": ["input_tokens", "total_tokens", "output_tokens", "input_tokens_details"],
                             "properties": {"input_tokens": INT, "total_tokens": INT, "output_tokens": INT}}},
}


def validate(schema: dict, value) -> None:
    """Raise ``jsonschema.ValidationError`` naming what ``value`` lacks or has wrong."""
    jsonschema.Draft202012Validator(schema).validate(value)
