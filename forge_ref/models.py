"""``GET /v1/models``: every provider of the user, fetched concurrently, cached, resilient.

One cache entry per user + provider + configuration (kind, base URL, mapping), so a changed
configuration can never be served an old list. Calls fan out concurrently, at most
``concurrency`` at a time, each with its own timeout; a provider that fails is left out of the
answer, logged without secrets, and remembered as failed for a short TTL so that a provider
that is down is not called on every request. Concurrent misses of one entry share one upstream
call (the cache's single-flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import orjson

from .adapters import AdapterRegistry
from .cache import MISSING, CacheLayer
from .errors import UpstreamError
from .services import ProviderService
from .store import ProviderRow

log = logging.getLogger("forge_ref.models")


def cache_key(user_id: int, row: ProviderRow) -> str:
    config = orjson.dumps([row.kind, row.base_url, row.model_mapping], option=orjson.OPT_SORT_KEYS)
    return f"{user_id}:{row.provider}:{hashlib.sha256(config).hexdigest()[:16]}"


def user_prefix(user_id: int) -> str:
    return f"{user_id}:"


class ModelLister:
    def __init__(self, cache: CacheLayer, failures: CacheLayer, adapters: AdapterRegistry,
                 *, timeout: float, concurrency: int) -> None:
        self.cache = cache
        self.failures = failures
        self._adapters = adapters
        self._timeout = timeout
        self._concurrency = max(1, concurrency)

    async def _fetch(self, service: ProviderService, row: ProviderRow) -> list[str]:
        adapter, client, owned = self._adapters.get(row.kind)
        try:
            req = adapter.models_request(row.base_url, service.key(row).reveal())
            resp = await client.send(req, timeout=self._timeout)
            if resp.status >= 300:  # redirects are not followed, nor taken as a list
                raise adapter.error(resp.status, resp.body, resp.headers)
            return adapter.models_response(resp.body)
        finally:
            if owned:
                client.close()

    async def _one(self, service: ProviderService, row: ProviderRow, gate: asyncio.Semaphore) -> list[str] | None:
        key = cache_key(service.user_id, row)
        ids = self.cache.get(key)
        if ids is not MISSING:
            return ids
        if self.failures.get(key) is not MISSING:
            return None
        try:
            async with gate:
                # The upstream client enforces the timeout (asyncio.wait_for would cancel a curl
                # fetch that Tornado then completes anyway, logging "exception after cancel").
                return await self.cache.load(key, lambda: self._fetch(service, row))
        except Exception as exc:  # any provider failure, even an odd answer, must not take the list down
            reason = exc.message if isinstance(exc, UpstreamError) else type(exc).__name__
            log.warning("model list of provider %r (user %d) failed: %s", row.provider, service.user_id, reason)
            self.failures.set(key, True)
            return None

    async def list(self, service: ProviderService, providers: frozenset[str] | None = None) -> list[dict]:
        """Every provider of the user, or only those named in ``providers`` (a scoped key's)."""
        rows = service.rows if providers is None else [row for row in service.rows if row.provider in providers]
        gate = asyncio.Semaphore(self._concurrency)
        results = await asyncio.gather(*(self._one(service, row, gate) for row in rows))
        data = []
        for row, ids in zip(rows, results):
            for model_id in ids or ():
                data.append({"id": f"{row.provider}/{model_id}", "object": "model", "created": 0,
                             "owned_by": row.provider})
            for alias in row.model_mapping:
                data.append({"id": alias, "object": "model", "created": 0, "owned_by": row.provider})
        return data

    def invalidate_user(self, user_id: int) -> int:
        prefix = user_prefix(user_id)
        self.failures.invalidate_where(lambda k: k.startswith(prefix))
        return self.cache.invalidate_where(lambda k: k.startswith(prefix))
