"""Forge key -> user and the key's scope, through the ``user`` cache layer.

Keys are looked up by their SHA-256 hash, which is also the cache key: no raw secret is ever a
cache key, and the hash is stable across processes (unlike Python's ``hash()``). An unknown key
is not cached, so guessing keys cannot fill the cache. One look-up (one SQL join) gives the user
and the provider names the key may use, so a scoped key's warm request costs what any key's does.
"""

from __future__ import annotations

import hashlib
import secrets

from .cache import MISSING, CacheLayer
from .errors import Unauthorized
from .store import Store, User

KEY_PREFIX = "forge-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)  # 32 random bytes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:12]


class Authenticator:
    def __init__(self, store: Store, cache: CacheLayer) -> None:
        self._store = store
        self.cache = cache

    async def user(self, key: str | None) -> User:
        if not key:
            raise Unauthorized("missing API key: send 'Authorization: Bearer forge-...'", code="missing_api_key")
        key_hash = hash_key(key)
        user = self.cache.get(key_hash)
        if user is MISSING:
            user = await self.cache.load(key_hash, lambda: self._store.user_by_key_hash(key_hash))
        if user is None:
            raise Unauthorized("invalid API key")
        return user
