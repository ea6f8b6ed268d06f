"""The Redis cache backend: shared ``user`` and ``models`` layers, pub/sub invalidation.

With ``--cache-backend redis`` the ``user`` and ``models`` layers live in Redis, shared by every
process and node, behind a small bounded in-process L1 (``FORGE_REDIS_L1_TTL``). ProviderService
objects and decrypted provider keys never leave the process: Redis holds only user rows (id,
name, the key's *hash*, prefix and scope) and model-id lists, as JSON (never pickle), under namespaced keys that hold no
secret.

Invalidation: the writer deletes the Redis entries, bumps their generation counter, and
publishes the events; every process applies them to its L1 and its in-process service cache. A
reader reads the generation with the value (one round trip) and stores its loaded value only if
the generation is unchanged, so a reader that loaded the old row before a write cannot put it
back, with no time window; when the guard refuses, the reader (a miss's load or an L1 refresh)
keeps it out of its L1 too, without waiting for the write's message. Measured bound: a reset
key is refused by every process within a few milliseconds (tested at 50 ms).

Outage: any Redis error marks the link down (logged once). While it is down every layer that
relies on invalidation (L1, services) stops serving from cache, so requests go to the DB
(counted) and stay correct; the subscriber reconnects in the background and, once back,
clears local caches (invalidations may have been missed) and resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Callable, Hashable

import orjson

from .cache import MISSING, CacheLayer, Loader, call_loader, lifetime
from .invalidation import MODELS, USER, Broadcast, Invalidator
from .store import User
from .tracing import Tracer

log = logging.getLogger("forge_ref.redis")

GENERATION_TTL = 86400  # an expired generation reads as '0': a reader holding another one won't store

# The value (plain key or hash field) and its generation, in one round trip.
_GET_WITH_GEN = """
local v
if ARGV[1] == '' then v = redis.call('GET', KEYS[1]) else v = redis.call('HGET', KEYS[1], ARGV[1]) end
return {v or false, redis.call('GET', KEYS[2]) or '0'}
"""

# Store only if no write bumped the generation since the reader's look-up.
_SET_GUARDED = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[4] then return 0 end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


class RedisLink:
    """One bounded connection pool, counted round trips, and the up/down state of the link."""

    def __init__(self, url: str, *, prefix: str, max_connections: int, timeout: float,
                 tracer: Tracer) -> None:
        import redis.asyncio as aioredis

        self.errors = (aioredis.ConnectionError, aioredis.TimeoutError, OSError, asyncio.TimeoutError)
        # BlockingConnectionPool waits (up to ``timeout``) for a free connection instead of
        # raising at once as the default pool does when it is exhausted.
        self.pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout)
        self.client = aioredis.Redis(connection_pool=self.pool)
        self.prefix = prefix
        self.channel = prefix + "invalidations"
        self.tracer = tracer
        self.up = True
        self._guarded = self.client.register_script(_SET_GUARDED)
        self._get = self.client.register_script(_GET_WITH_GEN)
        self.on_down: Callable[[], None] | None = None

    def trip(self) -> None:
        self.tracer.count("redis_round_trips")

    def mark_down(self, exc: BaseException) -> None:
        self.tracer.count("redis_errors")
        if self.up:
            self.up = False
            log.warning("redis unavailable (%s); serving from the database until it returns", type(exc).__name__)
            if self.on_down is not None:
                self.on_down()

    async def get(self, key: str, field: str | None, gen: str) -> tuple[bytes | None, bytes | None]:
        """(value or None, generation); (None, None) when Redis is unavailable."""
        if not self.up:
            return None, None
        self.trip()
        try:
            value, generation = await self._get(keys=[key, gen], args=[field or ""])
            return value, generation
        except self.errors as exc:
            self.mark_down(exc)
            return None, None

    async def set_guarded(self, key: str, gen: str, generation: bytes, field: str | None, payload: bytes,
                          ttl: float) -> bool | None:
        """True: stored; False: a write moved the generation since ``generation`` was read; None: no Redis."""
        if not self.up:
            return None
        self.trip()
        try:
            return bool(await self._guarded(keys=[key, gen], args=[field or "", payload, max(1, int(ttl)), generation]))
        except self.errors as exc:
            self.mark_down(exc)
            return None

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.disconnect()


class TieredCache:
    """L1 (in-process, short TTL) in front of Redis (shared, the layer's TTL), then the loader."""

    enabled = True

    def __init__(self, name: str, l1: CacheLayer, link: RedisLink, *, ttl: float, jitter: float = 0.0,
                 locate: Callable[[Hashable], tuple[str, str | None, str]],
                 encode: Callable[[Any], Any], decode: Callable[[Any], Any], tracer: Tracer) -> None:
        self.name = name
        self.ttl = ttl
        self.jitter = jitter
        self.l1 = l1
        self.link = link
        self._locate = locate  # cache key -> (redis key, hash field or None, generation key)
        self._encode = encode
        self._decode = decode
        self._tracer = tracer
        self._meter = tracer.layer(name)

    def __len__(self) -> int:
        return len(self.l1)

    def get(self, key: Hashable) -> Any:
        if not self.link.up:
            self._meter.miss()
            return MISSING
        return self.l1.get(key)

    def set(self, key: Hashable, value: Any) -> None:
        self.l1.set(key, value)

    async def _from_redis_or_load(self, key: Hashable, loader: Loader) -> Any:
        rkey, field, gen = self._locate(key)
        raw, generation = await self.link.get(rkey, field, gen)
        if raw is not None:
            envelope = orjson.loads(raw)
            if envelope["exp"] > time.time():
                self._tracer.count("redis_hits")
                self._meter.second_tier_hit()
                return self._decode(envelope["v"])
        self._tracer.count("redis_misses")
        value = await call_loader(loader)
        if value is not None and generation is not None:
            ttl = lifetime(self.ttl, self.jitter)
            payload = orjson.dumps({"v": self._encode(value), "exp": time.time() + ttl})
            if await self.link.set_guarded(rkey, gen, generation, field, payload, ttl) is False:
                # A write overtook this load (a miss's or an L1 refresh's): what it read is stale
                # here too. Dropping the key's L1 slot now, before the write's message arrives,
                # keeps the L1 from storing it.
                self.l1.invalidate(key)
        return value

    async def load(self, key: Hashable, loader: Loader) -> Any:
        if not self.link.up:
            return await call_loader(loader)
        return await self.l1.load(key, lambda: self._from_redis_or_load(key, loader))

    def invalidate(self, key: Hashable) -> bool:
        return self.l1.invalidate(key)

    def invalidate_where(self, predicate: Callable[[Hashable], bool]) -> int:
        return self.l1.invalidate_where(predicate)

    def clear(self) -> None:
        self.l1.clear()


class GuardedCache:
    """An in-process layer that must not serve while invalidations cannot reach it (link down)."""

    def __init__(self, inner: CacheLayer, link: RedisLink, tracer: Tracer) -> None:
        self.inner = inner
        self.link = link
        self.name = inner.name
        self.enabled = inner.enabled
        self._meter = tracer.layer(inner.name)

    def __len__(self) -> int:
        return len(self.inner)

    def get(self, key: Hashable) -> Any:
        if not self.link.up:
            self._meter.miss()
            return MISSING
        return self.inner.get(key)

    def set(self, key: Hashable, value: Any) -> None:
        if self.link.up:
            self.inner.set(key, value)

    async def load(self, key: Hashable, loader: Loader) -> Any:
        if not self.link.up:
            return await call_loader(loader)
        return await self.inner.load(key, loader)

    def invalidate(self, key: Hashable) -> bool:
        return self.inner.invalidate(key)

    def invalidate_where(self, predicate: Callable[[Hashable], bool]) -> int:
        return self.inner.invalidate_where(predicate)

    def clear(self) -> None:
        self.inner.clear()


# --- what the two shared layers store ------------------------------------------------------------


def user_locator(prefix: str) -> Callable[[Hashable], tuple[str, str | None, str]]:
    return lambda key_hash: (f"{prefix}user:{key_hash}", None, f"{prefix}gen:user:{key_hash}")


def models_locator(prefix: str) -> Callable[[Hashable], tuple[str, str | None, str]]:
    def locate(key: Hashable) -> tuple[str, str | None, str]:
        user_id, _, rest = str(key).partition(":")
        # One hash per user: invalidating a user's model lists is one DEL, exact.
        return f"{prefix}models:{user_id}", rest, f"{prefix}gen:models:{user_id}"

    return locate


def encode_user(user: User) -> dict:
    providers = None if user.providers is None else sorted(user.providers)
    return {"id": user.id, "name": user.name, "key_hash": user.key_hash, "key_prefix": user.key_prefix,
            "providers": providers}


def decode_user(data: dict) -> User:
    # An entry without "providers" was written before keys had scopes, when every key had all.
    providers = data.get("providers")
    return User(data["id"], data["name"], data["key_hash"], data["key_prefix"],
                None if providers is None else frozenset(providers))


def identity(value: Any) -> Any:
    return value


# --- invalidation over pub/sub -------------------------------------------------------------------


class RedisBroadcast(Broadcast):
    """Delete + bump generation + publish, in one pipelined round trip."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.origin = uuid.uuid4().hex  # our own messages come back to us: skip them

    async def send(self, events: list[tuple[str, str]]) -> None:
        p = self.link.prefix
        pipe = self.link.client.pipeline(transaction=False)
        for kind, key in events:
            if kind in (USER, MODELS):
                pipe.delete(f"{p}{kind}:{key}")
                pipe.incr(f"{p}gen:{kind}:{key}")
                pipe.expire(f"{p}gen:{kind}:{key}", GENERATION_TTL)
        pipe.publish(self.link.channel, orjson.dumps({"origin": self.origin, "events": events}))
        self.link.trip()
        try:
            await pipe.execute()
        except self.link.errors as exc:
            # Other processes may not hear of this write: the outage handling makes them stop
            # serving from cache until the link is back (and then clear).
            self.link.mark_down(exc)


class Subscriber:
    """Applies other processes' invalidations; watches and restores the link."""

    RETRY = 0.25

    def __init__(self, link: RedisLink, broadcast: RedisBroadcast, invalidator: Invalidator) -> None:
        self.link = link
        self.broadcast = broadcast
        self.invalidator = invalidator
        self._task: asyncio.Task | None = None
        link.on_down = invalidator.clear_local

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.link.channel)
                if not self.link.up:
                    # Pooled connections from before the outage are dead sockets: drop them all.
                    await self.link.pool.disconnect(inuse_connections=False)
                    self.invalidator.clear_local()  # we may have missed invalidations while down
                    self.link.up = True
                    log.warning("redis is back; caches resumed")
                idle = 0
                # A failed command elsewhere marks the link down: leave, resubscribe, clear.
                while self.link.up:
                    msg = await pubsub.get_message(timeout=0.25)
                    if msg is not None:
                        idle = 0
                        self._apply(msg["data"])
                        continue
                    idle += 1
                    if idle % 4 == 0:
                        await pubsub.ping()  # notice a dead connection even when nobody writes
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except self.link.errors as exc:
                self.link.mark_down(exc)
            except Exception:
                log.exception("invalidation subscriber failed; restarting")
                self.link.mark_down(RuntimeError("subscriber"))
            try:
                await pubsub.aclose()
            except Exception:
                pass
            await asyncio.sleep(self.RETRY)

    def _apply(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed invalidation message")
            return
        if message.get("origin") == self.broadcast.origin:
            return
        for kind, key in message.get("events", ()):
            self.invalidator.apply(kind, key)
