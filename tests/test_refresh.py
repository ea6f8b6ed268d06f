"""Refresh-ahead (forge_ref/refresh.py): fake clock, loaders the test controls, exact counts, no sleeping."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from support import FakeClock, Source, get_or_load, settle_refreshes

from forge_ref.cache import MISSING, Cache, make_cache
from forge_ref.refresh import RefreshAheadCache
from forge_ref.tracing import Tracer

TTL = 100.0


@pytest.fixture
def w() -> SimpleNamespace:
    """A refresh-ahead cache (TTL 100 s, refreshes from 80 s) on a fake clock, and its source."""
    clock, tracer = FakeClock(), Tracer()
    cache = RefreshAheadCache("user", maxsize=1000, ttl=TTL, tracer=tracer, timer=clock, refresh_ahead=0.8)
    return SimpleNamespace(clock=clock, tracer=tracer, cache=cache, source=Source(clock, "v1"))


async def loaded_then_held(w, age: float) -> None:
    """Entry "k" loaded at 0 s; then the source answers only when released, and ``age`` s pass."""
    await w.cache.load("k", w.source)
    w.source.hold()
    w.clock.now += age


def stats(tracer: Tracer) -> dict[str, int]:
    layer = tracer.snapshot({})["caches"]["user"]
    return {k: layer[k] for k in ("hits", "misses", "expirations", "refreshes", "refreshes_stored",
                                  "refreshes_discarded", "refresh_failures")}


def test_a_hot_entry_never_expires_and_is_refreshed_once_per_window(w):
    async def main():
        assert await get_or_load(w.cache, "k", w.source) == "v1"
        for _ in range(500):  # a read every second for five TTLs
            w.clock.now += 1
            assert w.cache.get("k") == "v1"  # never MISSING: no request waits for a reload
            await settle_refreshes(w.cache)

    asyncio.run(main())
    # The first load, then one refresh per entry, each at 80% of that entry's life.
    assert w.source.calls == [0, 80, 160, 240, 320, 400, 480]
    assert stats(w.tracer) == {"hits": 500, "misses": 1, "expirations": 0, "refreshes": 6,
                               "refreshes_stored": 6, "refreshes_discarded": 0, "refresh_failures": 0}


def test_the_read_that_starts_a_refresh_is_served_at_once_and_concurrent_readers_start_one(w):
    async def main():
        await loaded_then_held(w, 80)
        assert [w.cache.get("k") for _ in range(100)] == ["v1"] * 100
        assert w.source.calls == [0]  # the reads returned before the refresh even began
        await asyncio.sleep(0)
        assert w.source.calls == [0, 80] and stats(w.tracer)["refreshes"] == 1  # one, and it waits
        assert [w.cache.get("k") for _ in range(100)] == ["v1"] * 100
        w.source.release("v2")
        await settle_refreshes(w.cache)
        assert w.cache.get("k") == "v2"

    asyncio.run(main())
    assert w.source.calls == [0, 80]
    assert stats(w.tracer)["refreshes"] == stats(w.tracer)["refreshes_stored"] == 1


def test_a_miss_during_a_refresh_waits_for_it_instead_of_loading_again(w):
    async def main():
        await loaded_then_held(w, 99)
        assert w.cache.get("k") == "v1"  # starts the refresh, which hangs
        w.clock.now += 2  # the entry expires while the refresh is in flight
        other = Source(w.clock, "from-the-miss")
        waiter = asyncio.ensure_future(get_or_load(w.cache, "k", other))
        await asyncio.sleep(0)
        w.source.release("v2")
        assert await waiter == "v2"
        assert other.calls == []
        assert w.cache.get("k") == "v2"

    asyncio.run(main())
    assert w.tracer.total("coalesced_waits") == 1
    assert stats(w.tracer)["refreshes_stored"] == 1 and stats(w.tracer)["misses"] == 1  # the read after expiry


@pytest.mark.parametrize("invalidate", [
    lambda cache: cache.invalidate("k"),
    lambda cache: cache.invalidate_where(lambda key: key == "k"),
    lambda cache: cache.clear(),
], ids=["invalidate", "invalidate_where", "clear"])
def test_a_refresh_overtaken_by_an_invalidation_does_not_store(w, invalidate):
    async def main():
        await loaded_then_held(w, 85)
        assert w.cache.get("k") == "v1"
        await asyncio.sleep(0)
        assert w.source.calls == [0, 85]  # the refresh is reading the row, before the write
        invalidate(w.cache)  # the write
        # A request after the write loads the new row and stores it...
        assert await get_or_load(w.cache, "k", Source(w.clock, "after-write")) == "after-write"
        w.source.release("before-write")  # ...then the refresh lands with the old row
        await settle_refreshes(w.cache)
        assert w.cache.get("k") == "after-write"

    asyncio.run(main())
    assert stats(w.tracer)["refreshes"] == 1
    assert (stats(w.tracer)["refreshes_stored"], stats(w.tracer)["refreshes_discarded"]) == (0, 1)


def test_a_failed_refresh_is_counted_logged_once_and_the_entry_expires_at_its_ttl(w, caplog):
    async def main():
        for key in ("a", "b"):
            await w.cache.load(key, w.source)
        w.source.error = ConnectionError("database is down")
        w.clock.now += 80
        for _ in range(3):  # every read after the failure is served; none retries the refresh
            assert (w.cache.get("a"), w.cache.get("b")) == ("v1", "v1")
            await settle_refreshes(w.cache)
        w.clock.now += 19.9
        assert w.cache.get("a") == "v1"
        w.clock.now += 0.1  # the TTL, exactly: a failed refresh neither extends nor shortens it
        assert w.cache.get("a") is MISSING and w.cache.get("b") is MISSING

    with caplog.at_level(logging.WARNING, logger="forge_ref.cache"):
        asyncio.run(main())
    assert w.source.calls == [0, 0, 80, 80]
    assert stats(w.tracer)["refreshes"] == 2 and stats(w.tracer)["refresh_failures"] == 2
    assert stats(w.tracer)["refreshes_stored"] == 0 and stats(w.tracer)["expirations"] == 2
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refreshing user cache entries failed (ConnectionError); they expire and load as usual"]
    assert "database is down" not in caplog.text


def test_a_refresh_that_finds_nothing_drops_the_entry(w):
    """A user refresh answers None when the key is gone (reset in a process whose invalidation
    did not reach this one): the refresh removes the entry instead of keeping the old user."""

    async def main():
        await loaded_then_held(w, 80)
        assert w.cache.get("k") == "v1"
        w.source.release(None)
        await settle_refreshes(w.cache)
        assert w.cache.get("k") is MISSING

    asyncio.run(main())
    assert stats(w.tracer)["refreshes_stored"] == 1 and len(w.cache) == 0


def test_an_entry_nobody_reads_late_is_never_refreshed(w):
    async def main():
        await w.cache.load("k", w.source)
        w.clock.now += 79.9
        assert w.cache.get("k") == "v1"
        w.clock.now += 20.1
        assert w.cache.get("k") is MISSING

    asyncio.run(main())
    assert w.source.calls == [0] and stats(w.tracer)["refreshes"] == 0


def test_jitter_spreads_the_refresh_point_with_the_ttl():
    clock = FakeClock()
    cache = RefreshAheadCache("user", maxsize=1000, ttl=TTL, tracer=Tracer(), timer=clock, refresh_ahead=0.8,
                              jitter=0.1)
    for i in range(1000):
        cache._put(i, i, Source(clock))  # stored at the same instant, as loads that land together
    dues = sorted(entry.due - clock.now for entry in cache._data.values())
    lives = sorted(entry.expires - clock.now for entry in cache._data.values())
    # Uniform over the bands: an end of the band unreached has a probability below 1e-27.
    assert 72 <= dues[0] < 73 and 87 < dues[-1] <= 88  # 0.8 x [90, 110]
    assert 90 <= lives[0] < 91 and 109 < lives[-1] <= 110


def test_off_is_the_plain_cache():
    tracer = Tracer()
    assert type(make_cache("user", enabled=True, maxsize=10, ttl=TTL, tracer=tracer)) is Cache
    assert type(make_cache("user", enabled=True, maxsize=10, ttl=TTL, tracer=tracer, refresh_ahead=0.8)) \
        is RefreshAheadCache
