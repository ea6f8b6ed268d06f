"""Refresh-ahead: an entry read late in its life is served as is and reloaded in the background.

Without it a hot entry expires, and the request that finds it expired pays a synchronous reload
(a DB query, a service build with its decryptions, a model-list call of hundreds of ms). With
``refresh_ahead`` = 0.8, the first read after 80% of an entry's TTL starts one reload in its own
task, the entry is replaced when it lands, and a hot entry never expires under load.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Hashable

from .cache import MISSING, Cache, Loader, call_loader, lifetime
from .tracing import background_task

log = logging.getLogger("forge_ref.cache")

NEVER = float("inf")


class _Entry:
    """A stored value, when it is due for a refresh, when it expires, and how it was loaded.

    The loader holds what the load needs (a model list's: the ProviderService whose key it
    sends), so it keeps that alive with the entry; every write that makes it stale invalidates
    the entry with it.
    """

    __slots__ = ("value", "due", "expires", "loader")

    def __init__(self, value: Any, due: float, expires: float, loader: Loader | None) -> None:
        self.value, self.due, self.expires, self.loader = value, due, expires, loader


class RefreshAheadCache(Cache):
    """A ``Cache`` whose entries, read after ``refresh_ahead`` of their TTL, are reloaded in the background.

    The read that finds an entry due is served at once and starts one refresh in its own task
    (``tracing.background_task``: the request neither waits for it nor pays its costs). A
    refresh holds the key's in-flight slot like a miss's load does, so a miss that arrives
    meanwhile (the entry expired) waits for it, and an invalidation overtakes it the same way:
    its result is not stored. An entry is refreshed at most once: after a failure (logged once
    per run of failures, counted) it is not retried but expires at its TTL, so a failing source
    is not called on every read. A hot entry is thus reloaded once per ``refresh_ahead * ttl``
    and never expires under load.
    """

    def __init__(self, name: str, *, refresh_ahead: float, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.refresh_ahead = refresh_ahead  # a fraction of the TTL in (0, 1): checked by Settings
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self._failing = False

    def _expires(self, key: Hashable, entry: _Entry, now: float) -> float:
        return entry.expires

    def get(self, key: Hashable) -> Any:
        entry = self._data.get(key, MISSING)
        if entry is MISSING:
            return self._missed()
        self._meter.hit()
        if entry.due <= self._timer():
            self._refresh(key, entry)
        return entry.value

    def _put(self, key: Hashable, value: Any, loader: Loader | None) -> None:
        now = self._timer()
        life = lifetime(self.ttl, self.jitter)
        # An entry stored without its loader (``set``) cannot be refreshed: it just expires.
        due = NEVER if loader is None else now + self.refresh_ahead * life
        self._data[key] = _Entry(value, due, now + life, loader)
        self._sync_size()

    def _refresh(self, key: Hashable, entry: _Entry) -> None:
        entry.due = NEVER
        if key in self._inflight:  # a load of this key is running and will store a fresh entry
            return
        self._meter.refresh_started()
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        task = background_task(self._run_refresh(key, entry.loader, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_refresh(self, key: Hashable, loader: Loader, fut: asyncio.Future) -> None:
        try:
            value, current = await self._settle(key, fut, call_loader(loader))
        except Exception as exc:
            self._meter.refresh_failed()
            if not self._failing:  # once per run of failures: a source that is down fails every refresh
                self._failing = True
                log.warning("refreshing %s cache entries failed (%s); they expire and load as usual",
                            self.name, type(exc).__name__)
            return
        self._failing = False
        if not current:
            self._meter.refresh_discarded()
            return
        if value is None:  # "not found": the source no longer has it (a key reset elsewhere)
            self._data.pop(key, None)
            self._sync_size()
        else:
            self._put(key, value, loader)
        self._meter.refresh_stored()
