"""ProviderService: one user's provider keys, routing and (lazily) decrypted secrets.

A service is built from one DB read of the user's provider keys and cached per user (the
``service`` layer). With the ``keys`` layer on it decrypts a provider key only when a request
needs it, once, and keeps it; with it off it decrypts every key of the user at build time
(the eager behaviour being measured against). The service holds no per-request state, so one
instance can serve every concurrent request of that user.
"""

from __future__ import annotations

from .cache import MISSING, CacheLayer
from .crypto import Crypto, Secret
from .errors import NotFound
from .store import ProviderRow, Store
from .tracing import Tracer


class ProviderService:
    __slots__ = ("user_id", "rows", "_by_name", "_prefixes", "_aliases", "_keys", "_crypto")

    def __init__(self, user_id: int, rows: list[ProviderRow], crypto: Crypto, *, lazy_keys: bool) -> None:
        self.user_id = user_id
        self.rows = rows
        self._crypto = crypto
        self._by_name = {row.provider.lower(): row for row in rows}
        # Longest name first, so "my-groq/x" is not taken by a provider named "my".
        self._prefixes = sorted(((name + "/", row) for name, row in self._by_name.items()), key=lambda p: -len(p[0]))
        self._aliases: dict[str, tuple[ProviderRow, str]] = {}
        for row in rows:
            for alias, target in row.model_mapping.items():
                self._aliases.setdefault(alias, (row, target))
        self._keys: dict[str, Secret] = {}
        if not lazy_keys:
            for row in rows:
                self._keys[row.provider] = crypto.decrypt(row.encrypted_key)

    def route(self, model: str) -> tuple[ProviderRow, str]:
        """``provider/model`` (case-insensitive provider, longest prefix) or a mapped alias."""
        hit = self._aliases.get(model)
        if hit is not None:
            return hit
        lowered = model.lower()
        for prefix, row in self._prefixes:
            if lowered.startswith(prefix):
                rest = model[len(prefix):]
                if not rest:
                    break
                return row, row.model_mapping.get(rest, rest)
        if "/" in model:
            provider = model.split("/", 1)[0]
            raise NotFound(f"no provider key named {provider!r} for this user; add one with POST /v1/provider-keys",
                           code="provider_not_found", param="model")
        raise NotFound(f"model {model!r} is not an alias; use the form provider/model",
                       code="model_not_found", param="model")

    def key(self, row: ProviderRow) -> Secret:
        secret = self._keys.get(row.provider)
        if secret is None:
            secret = self._keys[row.provider] = self._crypto.decrypt(row.encrypted_key)
        return secret


class ServiceRegistry:
    """user id -> ProviderService, through the ``service`` cache layer."""

    def __init__(self, store: Store, crypto: Crypto, cache: CacheLayer, tracer: Tracer, *, lazy_keys: bool) -> None:
        self._store = store
        self._crypto = crypto
        self.cache = cache
        self._tracer = tracer
        self._lazy = lazy_keys

    async def _build(self, user_id: int) -> ProviderService:
        rows = await self._store.provider_keys(user_id)
        self._tracer.count("services_built")
        return ProviderService(user_id, rows, self._crypto, lazy_keys=self._lazy)

    async def get(self, user_id: int) -> ProviderService:
        service = self.cache.get(user_id)
        if service is MISSING:
            service = await self.cache.load(user_id, lambda: self._build(user_id))
        return service

