"""Validation of everything a client sends: clear 400s, never a 500.

Each function takes the parsed JSON body and returns clean values or
raises ``BadRequest`` naming the offending field. The SSRF guard lives here too: a provider ``base_url`` that
resolves to a private, loopback, link-local or reserved address is refused unless
``FORGE_ALLOW_PRIVATE_UPSTREAMS`` is set.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import ssrf
from .adapters import DEFAULT_BASE_URLS, KINDS
from .errors import BadRequest
from .store import ProviderRow

PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_KEY_LEN = 4096
MAX_URL_LEN = 2048
MAX_MAPPING = 256
MAX_CACHE_TTL = 365 * 86400  # a provider key's default response-cache TTL (the server caps it again)


def _str(body: dict, name: str, *, max_len: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name, code="missing_field")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string", param=name, code="invalid_type")
    value = value.strip()
    if not value:
        raise BadRequest(f"'{name}' must not be empty", param=name, code="invalid_value")
    if len(value) > max_len:
        raise BadRequest(f"'{name}' is longer than {max_len} characters", param=name, code="too_long")
    return value


def user_name(body: dict) -> str:
    name = _str(body, "name", max_len=128)
    if any(ord(c) < 32 for c in name):
        raise BadRequest("'name' must not contain control characters", param="name", code="invalid_value")
    return name


def _messages(body: dict, role_ok, roles: str) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages", code="invalid_messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not role_ok(message.get("role")):
            raise BadRequest(f"messages[{i}] must be an object with {roles}", param=f"messages[{i}]",
                             code="invalid_messages")


def _stream(body: dict) -> None:
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean", param="stream", code="invalid_type")


def chat_body(body: dict) -> dict:
    _messages(body, lambda role: isinstance(role, str), "a string 'role'")
    _stream(body)
    return body


def count_tokens_body(body: dict) -> dict:
    """Anthropic's Messages API, what every kind needs before routing (the provider checks the rest)."""
    _messages(body, lambda role: role in ("user", "assistant"),
              "role 'user' or 'assistant' (the system prompt is the top-level 'system')")
    if body.get("system") is not None and not isinstance(body["system"], (str, list)):
        raise BadRequest("'system' must be a string or an array of text blocks", param="system", code="invalid_type")
    return body


def messages_body(body: dict) -> dict:
    count_tokens_body(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("'max_tokens' is required: a positive integer", param="max_tokens", code="invalid_value")
    _stream(body)
    return body


def _texts_or_tokens(value) -> bool:
    """A non-empty string, or a non-empty array of strings, of tokens or of token arrays."""
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, list):
        # A bool is an int to Python, not a token to JSON ([false] is no token array).
        return bool(value) and (all(isinstance(v, str) for v in value)
                                or all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                                or all(isinstance(v, list) for v in value))
    return False


def embeddings_body(body: dict) -> dict:
    if not _texts_or_tokens(body.get("input")):
        raise BadRequest("'input' must be a non-empty string or array", param="input", code="invalid_input")
    return body


def completions_body(body: dict) -> dict:
    """OpenAI's legacy completions: ``prompt`` is required; null asks for the provider's default."""
    if "prompt" not in body or not (body["prompt"] is None or _texts_or_tokens(body["prompt"])):
        raise BadRequest("'prompt' is required: a non-empty string, or an array of strings, of tokens or of "
                         "token arrays", param="prompt", code="invalid_prompt")
    _stream(body)
    return body


def images_body(body: dict) -> dict:
    """OpenAI's image generations and edits (a multipart edit's text fields included)."""
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise BadRequest("'prompt' is required: a non-empty string", param="prompt", code="invalid_prompt")
    _stream(body)
    return body


@dataclass(frozen=True, slots=True)
class ProviderKeySpec:
    provider: str
    kind: str
    api_key: str
    base_url: str
    model_mapping: dict[str, str]
    cache_ttl: float | None = None


def _kind(body: dict, default: str) -> str:
    kind = body.get("kind", default)
    if not isinstance(kind, str) or kind not in KINDS:  # a dict or list is unhashable: check the type first
        raise BadRequest(f"'kind' must be one of {', '.join(KINDS)}", param="kind", code="invalid_value")
    return kind


def _api_key(body: dict, required: bool) -> str | None:
    key = _str(body, "api_key", max_len=MAX_KEY_LEN, required=required)
    if key is not None and any(c.isspace() or ord(c) < 32 for c in key):
        raise BadRequest("'api_key' must not contain whitespace", param="api_key", code="invalid_value")
    return key


def _mapping(body: dict) -> dict[str, str] | None:
    mapping = body.get("model_mapping")
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or len(mapping) > MAX_MAPPING:
        raise BadRequest(f"'model_mapping' must be an object of at most {MAX_MAPPING} aliases",
                         param="model_mapping", code="invalid_value")
    for alias, target in mapping.items():
        if not (isinstance(target, str) and 0 < len(alias) <= 128 and 0 < len(target) <= 256):
            raise BadRequest("'model_mapping' maps alias strings (<= 128 chars) to model strings",
                             param="model_mapping", code="invalid_value")
    return dict(mapping)


def _cache_ttl(body: dict) -> float | None:
    """A provider key's default TTL for the response cache: seconds, or null (0 too) for none."""
    ttl = body.get("cache_ttl")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= MAX_CACHE_TTL:
        raise BadRequest(f"'cache_ttl' must be a number of seconds from 0 to {MAX_CACHE_TTL}, or null",
                         param="cache_ttl", code="invalid_value")
    return float(ttl) or None


async def _base_url(body: dict, allow_private: bool, required: bool) -> str | None:
    url = _str(body, "base_url", max_len=MAX_URL_LEN, required=required)
    if url is None:
        return None
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        # urlsplit silently drops tabs/newlines that curl would not: both must see one URL.
        raise BadRequest("'base_url' must not contain whitespace, control characters or backslashes",
                         param="base_url", code="invalid_url")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        raise BadRequest("'base_url' is not a valid URL", param="base_url", code="invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("'base_url' must be an http(s) URL", param="base_url", code="invalid_url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadRequest("'base_url' must not carry credentials, a query or a fragment", param="base_url",
                         code="invalid_url")
    if not allow_private:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port or 443,
                                                                 type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise BadRequest(f"cannot resolve host {parts.hostname!r}", param="base_url", code="invalid_url") from None
        for info in infos:
            if ssrf.blocked(info[4][0]):
                raise BadRequest("'base_url' points at a private, loopback or link-local address; refused "
                                 "(FORGE_ALLOW_PRIVATE_UPSTREAMS=1 allows it)", param="base_url", code="private_upstream")
    return url.rstrip("/")


async def new_provider_key(body: dict, allow_private: bool) -> ProviderKeySpec:
    provider = _str(body, "provider", max_len=64)
    provider = provider.lower()
    if not PROVIDER_NAME.match(provider):
        raise BadRequest("'provider' may hold a-z, 0-9, '.', '_' and '-' (64 at most), starting with a letter "
                         "or digit", param="provider", code="invalid_value")
    kind = _kind(body, provider if provider in KINDS else "openai")
    api_key = _api_key(body, True)
    base_url = await _base_url(body, allow_private, required=False)
    if base_url is None:
        if provider not in DEFAULT_BASE_URLS:
            raise BadRequest(f"'base_url' is required for provider {provider!r}", param="base_url",
                             code="missing_field")
        base_url = DEFAULT_BASE_URLS[kind]
    return ProviderKeySpec(provider, kind, api_key, base_url, _mapping(body) or {}, _cache_ttl(body))


async def provider_key_changes(body: dict, allow_private: bool) -> tuple[dict[str, Any], str | None]:
    """Only the fields given change (PUT keeps the others). Returns (column changes, new plaintext key)."""
    unknown = set(body) - {"api_key", "base_url", "kind", "model_mapping", "provider", "cache_ttl"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}", code="unknown_field")
    changes: dict[str, Any] = {}
    if "kind" in body:
        changes["kind"] = _kind(body, "openai")
    if "base_url" in body:
        changes["base_url"] = await _base_url(body, allow_private, required=True)
    mapping = _mapping(body)
    if mapping is not None:
        changes["model_mapping"] = mapping
    if "cache_ttl" in body:
        changes["cache_ttl"] = _cache_ttl(body)
    api_key = _api_key(body, False) if "api_key" in body else None
    if not changes and api_key is None:
        raise BadRequest("nothing to update: give api_key, base_url, kind or model_mapping", code="empty_update")
    return changes, api_key


def provider_json(row: ProviderRow, masked_key: str) -> dict:
    out = {"provider": row.provider, "kind": row.kind, "base_url": row.base_url, "api_key": masked_key,
           "model_mapping": row.model_mapping}
    if row.cache_ttl is not None:
        out["cache_ttl"] = row.cache_ttl
    return out


# --- Forge keys ------------------------------------------------------------------------------------

MAX_SCOPE = 64


def _providers(body: dict) -> list[str] | None:
    """A key's scope: null (every provider) or a list of provider names, kept sorted and unique."""
    value = body.get("providers")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SCOPE or not all(isinstance(p, str) for p in value):
        raise BadRequest(f"'providers' must be null (every provider) or a list of at most {MAX_SCOPE} provider names",
                         param="providers", code="invalid_value")
    names = sorted({p.strip().lower() for p in value})
    if not all(PROVIDER_NAME.match(name) for name in names):
        raise BadRequest("'providers' must hold provider names: a-z, 0-9, '.', '_' and '-' (64 at most)",
                         param="providers", code="invalid_value")
    return names


def _known_fields(body: dict, known: set[str]) -> None:
    unknown = set(body) - known
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))[:200]}", code="unknown_field")


def new_forge_key(body: dict) -> tuple[str, list[str] | None]:
    """(name, providers) of a new Forge key; its name follows a user's rules."""
    _known_fields(body, {"name", "providers"})
    return user_name(body), _providers(body)


def forge_key_changes(body: dict) -> dict[str, Any]:
    _known_fields(body, {"name", "providers"})
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = user_name(body)
    if "providers" in body:
        changes["providers"] = _providers(body)
    if not changes:
        raise BadRequest("nothing to update: give name or providers", code="empty_update")
    return changes
