"""Bounded TTL+LRU caches with hit/miss/eviction stats, single-flight loads, and a null twin.

Storage is ``cachetools.TLRUCache`` (LRU within a per-item time to use, O(1) hits, injectable
timer): well kept, and a hit costs about a microsecond. A per-item TTL is what lets each entry's
TTL be jittered (``jitter``), so entries stored together do not expire together; with no jitter
every entry lives exactly ``ttl``. Around it this module adds what the gateway needs and
cachetools does not have: counted stats, exact invalidation, per-key coalescing of concurrent
misses (and, in ``refresh``, refresh-ahead). A layer that is off gets a ``NullCache`` with
the same interface, so the request path is identical and every lookup is still counted as a miss.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from typing import Any, Awaitable, Callable, Hashable, Protocol

import cachetools

from .tracing import Layer, Tracer

MISSING: Any = object()
Loader = Callable[[], Any]  # returns a value or an awaitable of one


class CacheLayer(Protocol):
    """What every cache layer is, whatever it is made of.

    Five implementations: ``Cache`` (in process, TTL+LRU), ``refresh.RefreshAheadCache`` (the
    same, reloading entries read late in their life in the background), ``NullCache`` (the
    layer is off), and in ``redis_backend`` ``TieredCache`` (an in-process L1 in front of Redis)
    and ``GuardedCache`` (in process, but not served while invalidations cannot arrive).
    """

    name: str
    enabled: bool

    def __len__(self) -> int: ...

    def get(self, key: Hashable) -> Any:
        """The value, or ``MISSING`` (counted as a hit or a miss). Never suspends: the hot path."""

    def set(self, key: Hashable, value: Any) -> None: ...

    async def load(self, key: Hashable, loader: Loader) -> Any:
        """After a miss: the loaded value, stored unless the load was overtaken by an invalidation.

        ``None`` means "not found" and is never stored.
        """

    def invalidate(self, key: Hashable) -> bool: ...

    def invalidate_where(self, predicate: Callable[[Hashable], bool]) -> int: ...

    def clear(self) -> None: ...


async def call_loader(loader: Loader) -> Any:
    """Run a loader that returns a value or an awaitable of one."""
    result = loader()
    return await result if inspect.isawaitable(result) else result


def lifetime(ttl: float, jitter: float) -> float:
    """``ttl`` spread uniformly over +-``jitter`` (a fraction) of itself; exactly ``ttl`` without jitter."""
    return ttl * (1.0 + jitter * (2.0 * random.random() - 1.0)) if jitter else ttl


class _CountingTLRUCache(cachetools.TLRUCache):
    """TLRUCache that reports LRU evictions and TTL expirations as they happen."""

    def __init__(self, maxsize: int, ttu: Callable[[Hashable, Any, float], float], timer: Callable[[], float],
                 meter: Layer) -> None:
        super().__init__(maxsize, ttu, timer=timer)
        self._meter = meter

    def popitem(self):  # cachetools calls this only to make room: an LRU eviction
        item = super().popitem()
        self._meter.evicted()
        return item

    def expire(self, time=None):
        expired = super().expire(time)
        if expired:
            self._meter.expired(len(expired))
        return expired


class Cache:
    """One cache layer. ``get`` is synchronous (the hot path); ``load`` handles a miss."""

    enabled = True

    def __init__(
        self,
        name: str,
        *,
        maxsize: int,
        ttl: float,
        tracer: Tracer,
        coalesce: bool = True,
        jitter: float = 0.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.jitter = jitter  # a fraction of the TTL in [0, 1): checked by Settings
        self.coalesce = coalesce
        self._timer = timer
        self._meter = tracer.layer(name)
        self._data = _CountingTLRUCache(maxsize, self._expires, timer, self._meter)
        # key -> future of the load in flight. A load whose entry was invalidated (popped) while
        # it ran must not store its now-stale result; identity of the future tells.
        self._inflight: dict[Hashable, asyncio.Future] = {}

    def _expires(self, key: Hashable, value: Any, now: float) -> float:
        return now + lifetime(self.ttl, self.jitter)

    def _sync_size(self) -> None:
        self._meter.size(len(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any:
        value = self._data.get(key, MISSING)
        if value is MISSING:
            return self._missed()
        self._meter.hit()
        return value

    def _missed(self) -> Any:
        self._meter.miss()
        self._data.expire()  # expired entries are removed, not only skipped
        self._sync_size()
        return MISSING

    def set(self, key: Hashable, value: Any) -> None:
        self._put(key, value, None)

    def _put(self, key: Hashable, value: Any, loader: Loader | None) -> None:
        """Store ``value``; ``loader`` is how it was loaded (``RefreshAheadCache`` keeps it)."""
        self._data[key] = value
        self._sync_size()

    async def load(self, key: Hashable, loader: Loader) -> Any:
        """After a miss: run ``loader`` once per key however many callers wait, then store."""
        if self.coalesce:
            pending = self._inflight.get(key)
            if pending is not None:  # a load or a refresh of this key is running: share it
                self._meter.coalesced()
                return await asyncio.shield(pending)
        result = loader()
        if not inspect.isawaitable(result):
            # Synchronous loaders (SQLite) cannot interleave with other requests: store directly.
            if result is not None:
                self._put(key, result, loader)
            return result
        fut = asyncio.get_running_loop().create_future()
        if self.coalesce:
            self._inflight[key] = fut
        value, current = await self._settle(key, fut, result)
        # Uncoalesced loads hold no slot, so nothing tells them they were overtaken: they store.
        # None = "not found": never cached (bad keys can't fill it).
        if (current or not self.coalesce) and value is not None:
            self._put(key, value, loader)
        return value

    async def _settle(self, key: Hashable, fut: asyncio.Future, pending: Awaitable) -> tuple[Any, bool]:
        """Await a load for ``fut``'s waiters; (its value, whether ``fut`` still held the key's slot).

        An invalidation pops the slot: a load that lost it was overtaken and must not store.
        """
        try:
            value = await pending
        except BaseException as exc:
            # A failed load is not cached; waiters get the same error, later callers retry.
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            current = self._inflight.get(key) is fut
            if current:
                del self._inflight[key]
        fut.set_result(value)
        return value, current

    def invalidate(self, key: Hashable) -> bool:
        self._inflight.pop(key, None)
        found = self._data.pop(key, MISSING) is not MISSING
        self._sync_size()
        return found

    def invalidate_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key matches. O(entries): only writes pay it, never reads."""
        for key in [k for k in self._inflight if predicate(k)]:
            del self._inflight[key]
        doomed = [k for k in list(self._data.keys()) if predicate(k)]
        for key in doomed:
            self._data.pop(key, None)
        self._sync_size()
        return len(doomed)

    def clear(self) -> None:
        self._inflight.clear()
        self._data.clear()
        self._sync_size()


class NullCache:
    """A layer that is off: same interface, never stores, every lookup a counted miss."""

    enabled = False
    coalesce = False

    def __init__(self, name: str, *, tracer: Tracer) -> None:
        self.name = name
        self._meter = tracer.layer(name)

    def __len__(self) -> int:
        return 0

    def get(self, key: Hashable) -> Any:
        self._meter.miss()
        return MISSING

    def set(self, key: Hashable, value: Any) -> None:
        pass

    async def load(self, key: Hashable, loader: Loader) -> Any:
        return await call_loader(loader)

    def invalidate(self, key: Hashable) -> bool:
        return False

    def invalidate_where(self, predicate: Callable[[Hashable], bool]) -> int:
        return 0

    def clear(self) -> None:
        pass


def make_cache(name: str, *, enabled: bool, maxsize: int, ttl: float, tracer: Tracer, coalesce: bool = True,
               refresh_ahead: float = 0.0, jitter: float = 0.0,
               timer: Callable[[], float] = time.monotonic) -> CacheLayer:
    """``enabled`` is the layer's resolved toggle (``Settings.layers``: a TTL or bound of 0 is off).

    ``refresh_ahead`` and ``jitter`` are fractions of the TTL; 0 turns each off.
    """
    if not enabled:
        return NullCache(name, tracer=tracer)
    kw = dict(maxsize=maxsize, ttl=ttl, tracer=tracer, coalesce=coalesce, jitter=jitter, timer=timer)
    if refresh_ahead:
        from .refresh import RefreshAheadCache  # it builds on Cache: imported here, where no cycle forms

        return RefreshAheadCache(name, refresh_ahead=refresh_ahead, **kw)
    return Cache(name, **kw)

