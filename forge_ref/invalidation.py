"""Exact invalidation after writes, in this process and in every other one.

A write names what it made stale: the user entry (by key hash), the user's service, the
user's model lists, the user's cached answers (the ``responses`` layer). ``Invalidator`` drops
exactly those locally at once. With several processes, it also appends the events to a small log table in the shared SQLite file, which
every process polls every ``invalidation_poll`` seconds (100 ms by default) on its own
connection, counted as ``db_background_queries`` so request costs stay exact. No external
service is needed; the Redis backend replaces this with pub/sub.
"""

from __future__ import annotations

import logging
import time

from .auth import Authenticator
from .models import ModelLister
from .services import ServiceRegistry
from .store import Store
from .tracing import Tracer

log = logging.getLogger("forge_ref.invalidation")

USER, SERVICE, MODELS, RESPONSES = "user", "service", "models", "responses"


class Broadcast:
    """How a write's invalidations reach the other processes. One process: nowhere."""

    async def send(self, events: list[tuple[str, str]]) -> None:
        return None


class SqliteLogBroadcast(Broadcast):
    """Append to the shared SQLite log; every process's ``InvalidationPoller`` picks it up."""

    def __init__(self, store: Store) -> None:
        self._store = store  # the request connection: appending is a counted write
        self.own_ids: set[int] = set()

    async def send(self, events: list[tuple[str, str]]) -> None:
        self.own_ids.update(await self._store.append_invalidations(events))


class Invalidator:
    def __init__(self, auth: Authenticator, services: ServiceRegistry, models: ModelLister,
                 tracer: Tracer, *, broadcast: Broadcast | None = None, responses=None) -> None:
        self._auth = auth
        self._services = services
        self._models = models
        self._responses = responses  # responses.Responses, or None with the layer off
        self._tracer = tracer
        self.broadcast = broadcast or Broadcast()

    def apply(self, kind: str, key: str) -> None:
        """Drop one stale thing from this process's caches (own writes and other processes')."""
        self._tracer.count("invalidations")
        if kind == USER:
            self._auth.cache.invalidate(key)
        elif kind == SERVICE:
            self._services.cache.invalidate(int(key))
        elif kind == MODELS:
            self._models.invalidate_user(int(key))
        elif kind == RESPONSES and self._responses is not None:
            self._responses.drop_user(int(key))

    def clear_local(self) -> None:
        """Forget everything cached in this process (after missing invalidations, e.g. Redis outage)."""
        self._auth.cache.clear()
        self._services.cache.clear()
        self._models.cache.clear()
        if self._responses is not None:
            self._responses.clear()

    async def publish(self, events: list[tuple[str, str]]) -> None:
        for kind, key in events:
            self.apply(kind, key)
        await self.broadcast.send(events)

    # the write paths, each naming exactly what it makes stale

    async def user_updated(self, user_id: int, *key_hashes: str) -> None:
        """Every key of the user: each one's entry holds the user's name."""
        await self.publish([*((USER, h) for h in key_hashes), (SERVICE, str(user_id))])

    async def forge_key_changed(self, key_hash: str) -> None:
        """One key reset, revoked or given a new scope: that key's entry, no other."""
        await self.publish([(USER, key_hash)])

    async def user_deleted(self, user_id: int, *key_hashes: str) -> None:
        await self.publish([*((USER, h) for h in key_hashes), (SERVICE, str(user_id)), (MODELS, str(user_id)),
                            (RESPONSES, str(user_id))])

    async def provider_keys_changed(self, user_id: int) -> None:
        await self.publish([(SERVICE, str(user_id)), (MODELS, str(user_id)), (RESPONSES, str(user_id))])

    # the poller (multi-process, SQLite log)

    async def poll_once(self, background: Store, last_id: int) -> int:
        own = self.broadcast.own_ids if isinstance(self.broadcast, SqliteLogBroadcast) else set()
        for event_id, kind, key in await background.invalidations_after(last_id):
            last_id = event_id
            if event_id in own:
                own.discard(event_id)
                continue
            self.apply(kind, key)
        return last_id


class InvalidationPoller:
    """Runs ``Invalidator.poll_once`` on a timer with its own (background-counted) connection."""

    PRUNE_AFTER = 3600.0

    def __init__(self, invalidator: Invalidator, background: Store, interval: float) -> None:
        self._inv = invalidator
        self.background = background
        self.interval = interval
        self.last_id = 0
        self._last_prune = time.monotonic()
        self._timer = None

    async def init(self) -> None:
        self.last_id = await self.background.last_invalidation_id()

    async def tick(self) -> None:
        try:
            self.last_id = await self._inv.poll_once(self.background, self.last_id)
            if time.monotonic() - self._last_prune > 600:
                self._last_prune = time.monotonic()
                await self.background.prune_invalidations(time.time() - self.PRUNE_AFTER)
        except Exception:
            log.exception("invalidation poll failed; retrying")

    def start(self) -> None:
        from tornado.ioloop import PeriodicCallback

        self._timer = PeriodicCallback(self.tick, self.interval * 1000)
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
