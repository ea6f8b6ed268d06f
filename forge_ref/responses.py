"""The ``responses`` layer: whole chat answers, cached per user, only for requests that ask.

LLM output is not deterministic, so caching is never silent: a request opts in with
``Cache-Control: max-age=N`` (or a body ``cache`` object as LiteLLM spells it, or its provider key's
``cache_ttl``), and every chat response says ``X-Forge-Cache: hit``, ``miss`` or ``bypass``.

An entry's key is the SHA-256 of the canonical JSON of the user, the provider key and its version,
the upstream model and the body without the fields that do not change the answer: entries are
never shared across users and a changed key never serves an old answer. The value is the answer
as the client's non-streaming body (bytes, stored as sent): a non-streaming hit writes it as it is,
a streaming hit is replayed from it (``replay``). Two stores, one interface:

* ``MemoryAnswers``: cachetools' ``TLRUCache`` bounded by bytes, each entry with its own TTL.
* ``responses_redis.RedisAnswers``: JSON under ``<prefix>resp:<user>:<generation>:<hash>`` with a TTL; dropping a
  user's entries is one INCR of the generation (``invalidation``), in every process and node.

Concurrent identical requests share one upstream call (``dedup.Flights``): a flight stores the
answer once it is whole, unless the user's entries were dropped meanwhile.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Callable, NamedTuple

import cachetools
import orjson

from .dedup import Flights
from .errors import BadRequest
from .store import ProviderRow
from .tracing import Layer, Tracer

HIT, MISS, BYPASS = "hit", "miss", "bypass"  # X-Forge-Cache
# Fields that never change the answer: how it is delivered, who it is for, and this layer's own.
IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "cache"})
SPEC_FIELDS = {"ttl": "number", "s-maxage": "number", "no-cache": "boolean", "no-store": "boolean"}
# Bytes an entry costs besides its answer's: measured with tracemalloc, about 350 of cachetools'
# bookkeeping and the entry, 120 of key, 33 of the bytes object's header.
ENTRY_OVERHEAD = 500

Key = tuple[int, bytes]  # (user id, SHA-256 digest)


class Directive(NamedTuple):
    """What one request asked of the layer."""

    lookup: bool  # may be served from the cache or by a call in flight
    max_age: float  # the oldest entry it accepts, seconds (inf: any within its TTL)
    ttl: float  # how long its answer is kept (0: not stored)


def take_spec(body: dict) -> dict | None:
    """Remove the body's ``cache`` object (it never goes upstream) and check it."""
    spec = body.pop("cache", None)
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BadRequest("'cache' must be an object such as {\"ttl\": 600}", param="cache", code="invalid_cache")
    for name, value in spec.items():
        kind = SPEC_FIELDS.get(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf
        if kind is None or (kind == "number" and not number) or (kind == "boolean" and not isinstance(value, bool)):
            raise BadRequest(f"'cache' takes ttl and s-maxage (seconds, >= 0), no-cache and no-store (booleans); "
                             f"not {name!r} = {str(value)[:40]!r}", param="cache", code="invalid_cache")
    return spec


def _max_age(header: str) -> tuple[float | None, bool, bool]:
    """``Cache-Control``'s max-age (None: absent or malformed, ignored as HTTP caches do), no-cache, no-store."""
    max_age, no_cache, no_store = None, False, False
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age" and value.strip().strip('"').isdigit():
            max_age = float(value.strip().strip('"'))
    return max_age, no_cache, no_store


def directive(header: str | None, spec: dict | None, default_ttl: float | None, max_ttl: float) -> Directive | None:
    """A request's directive, or None (bypass) when it did not opt in or asked for neither look-up nor store."""
    max_age, no_cache, no_store = _max_age(header) if header else (None, False, False)
    ttl = None
    if spec:
        no_cache = no_cache or spec.get("no-cache") is True
        no_store = no_store or spec.get("no-store") is True
        if max_age is None and "s-maxage" in spec:
            max_age = float(spec["s-maxage"])
        if "ttl" in spec:
            ttl = float(spec["ttl"])
    if ttl is None:  # the request's own ttl, else its max-age, else its provider key's default
        ttl = max_age if max_age is not None else default_ttl or None
    if ttl is None and max_age is None:
        return None  # no opt-in: caching is never silent
    lookup = not (no_cache or no_store) and (max_age is None or max_age > 0)
    ttl = 0.0 if no_store else min(ttl or 0.0, max_ttl)
    if not lookup and ttl <= 0:
        return None
    return Directive(lookup, math.inf if max_age is None else max_age, ttl)


def cache_key(scope: Any, user_id: int, row: ProviderRow, model: str, body: dict) -> Key:
    """One hash of the canonical body; the key names no secret (the provider key by id and version)."""
    rest = {k: v for k, v in body.items() if k not in IGNORED}
    raw = orjson.dumps([scope, user_id, row.id, row.updated_at, model, rest], option=orjson.OPT_SORT_KEYS)
    return user_id, hashlib.sha256(raw).digest()


# --- the in-process store -------------------------------------------------------------------------


class Entry(NamedTuple):
    at: float  # when it was stored (the store's clock)
    ttl: float
    answer: bytes


def _expires(key: Key, entry: Entry, now: float) -> float:
    return entry.at + entry.ttl


def _size(entry: Entry) -> int:
    return len(entry.answer) + ENTRY_OVERHEAD


class _Entries(cachetools.TLRUCache):
    """TLRUCache that reports LRU evictions and TTL expirations as they happen."""

    def __init__(self, max_bytes: int, timer: Callable[[], float], meter: Layer) -> None:
        super().__init__(max_bytes, _expires, timer=timer, getsizeof=_size)
        self._meter = meter

    def popitem(self):  # cachetools calls this only to make room: an eviction by size
        item = super().popitem()
        self._meter.evicted()
        return item

    def expire(self, time=None):
        expired = super().expire(time)
        if expired:
            self._meter.expired(len(expired))
        return expired


class MemoryAnswers:
    """Answers in this process, bounded by bytes (``FORGE_RESPONSES_MAX_BYTES``), each with its TTL."""

    def __init__(self, *, max_bytes: int, meter: Layer, timer: Callable[[], float] = time.monotonic) -> None:
        self._data = _Entries(max_bytes, timer, meter)
        self._meter = meter

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Key) -> bool:
        return key in self._data

    def _held(self) -> None:
        self._meter.held(len(self._data), self._data.currsize)

    async def get(self, key: Key, max_age: float) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            self._data.expire()  # expired entries are removed, not only skipped
            self._held()
            return None
        if self._data.timer() - entry.at > max_age:
            return None
        return entry.answer

    async def put(self, key: Key, answer: bytes, ttl: float) -> None:
        try:
            self._data[key] = Entry(self._data.timer(), ttl, answer)
        except ValueError:  # larger than the whole bound: not cached
            pass
        self._held()

    def drop_user(self, user_id: int) -> None:
        """O(entries): only provider-key writes pay it, never reads."""
        for key in [k for k in list(self._data.keys()) if k[0] == user_id]:
            self._data.pop(key, None)
        self._held()

    def clear(self) -> None:
        self._data.clear()
        self._held()


# --- the layer --------------------------------------------------------------------------------------


class Responses:
    """The layer as handlers see it: the policy, the key, the store, the flights, the counts."""

    def __init__(self, store, *, tracer: Tracer, max_ttl: float) -> None:
        """``store``: ``MemoryAnswers``, or ``responses_redis.RedisAnswers``."""
        self.store = store
        self.max_ttl = max_ttl
        self.flights = Flights()
        self.meter = tracer.layer("responses")
        self._tracer = tracer

    def policy(self, header: str | None, spec: dict | None, row: ProviderRow) -> Directive | None:
        return directive(header, spec, row.cache_ttl, self.max_ttl)

    key = staticmethod(cache_key)

    async def lookup(self, key: Key, max_age: float) -> bytes | None:
        return await self.store.get(key, max_age)

    def saver(self, key: Key, ttl: float):
        """What a flight calls with its whole, cacheable answer (None: it is not stored)."""
        if ttl <= 0:
            return None
        return lambda answer: self.store.put(key, answer, ttl)

    def joined(self) -> None:
        self.meter.hit()  # a hit spares the upstream call, whether the answer was stored or in flight
        self._tracer.count("dedup_joins")

    def drop_user(self, user_id: int) -> None:
        self.store.drop_user(user_id)
        self.flights.drop_user(user_id)

    def clear(self) -> None:
        self.store.clear()
