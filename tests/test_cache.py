import asyncio

import pytest
from support import FakeClock, get_or_load

from forge_ref.cache import MISSING, Cache, NullCache, make_cache
from forge_ref.settings import Settings
from forge_ref.tracing import Tracer


def stats(counters, name="user"):
    t = counters.totals()
    return {s: t[f"cache.{name}.{s}"] for s in ("hits", "misses", "evictions", "expirations", "size")}


def test_hit_miss_counted():
    c = Tracer()
    cache = Cache("user", maxsize=10, ttl=60, tracer=c)
    assert cache.get("a") is MISSING
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert cache.get("a") == 1
    assert stats(c) == {"hits": 2, "misses": 1, "evictions": 0, "expirations": 0, "size": 1}


def test_ttl_expiry_removes_entries_with_fake_clock():
    c, clock = Tracer(), FakeClock()
    cache = Cache("user", maxsize=10, ttl=300, tracer=c, timer=clock)
    cache.set("a", 1)
    cache.set("b", 2)
    clock.now += 299.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is MISSING
    # expired entries are removed from memory, not only skipped
    assert len(cache) == 0
    assert stats(c)["expirations"] == 2
    assert stats(c)["size"] == 0


def test_lru_eviction_at_bound():
    c = Tracer()
    cache = Cache("user", maxsize=2, ttl=60, tracer=c)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # a is now most recently used
    cache.set("c", 3)
    assert cache.get("b") is MISSING
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert stats(c)["evictions"] == 1
    assert len(cache) == 2


def test_invalidate_exact():
    c = Tracer()
    cache = Cache("models", maxsize=10, ttl=60, tracer=c)
    for key in ("1:openai:x", "1:groq:y", "2:openai:x", "11:openai:z"):
        cache.set(key, key)
    assert cache.invalidate_where(lambda k: k.startswith("1:")) == 2
    assert sorted(cache._data.keys()) == ["11:openai:z", "2:openai:x"]
    assert cache.invalidate("2:openai:x") is True
    assert cache.invalidate("2:openai:x") is False


def test_null_cache_never_stores_and_counts_misses():
    c = Tracer()
    cache = make_cache("user", enabled=False, maxsize=10, ttl=60, tracer=c)
    assert isinstance(cache, NullCache)
    cache.set("a", 1)
    assert cache.get("a") is MISSING
    assert stats(c)["misses"] == 1
    assert len(cache) == 0


def test_a_ttl_or_bound_of_zero_turns_the_layer_off_in_one_place():
    # Settings.layers is the one rule: make_cache follows it, and /_stats reports the same toggles.
    for change in ({"user_ttl": 0}, {"user_max": 0}):
        layers = Settings(**change).layers()
        assert layers["user"] is False and layers["service"] is True
        assert isinstance(make_cache("user", enabled=layers["user"], maxsize=10, ttl=60, tracer=Tracer()), NullCache)


async def _slow(value, calls, delay=0.01):
    calls.append(1)
    await asyncio.sleep(delay)
    return value


def test_coalescing_single_flight():
    c = Tracer()
    cache = Cache("models", maxsize=10, ttl=60, tracer=c)
    calls: list[int] = []

    async def main():
        return await asyncio.gather(*(get_or_load(cache, "k", lambda: _slow("v", calls)) for _ in range(200)))

    assert asyncio.run(main()) == ["v"] * 200
    assert len(calls) == 1
    assert c.total("coalesced_waits") == 199


def test_coalescing_off_loads_each_time():
    cache = Cache("models", maxsize=10, ttl=60, tracer=Tracer(), coalesce=False)
    calls: list[int] = []

    async def main():
        await asyncio.gather(*(get_or_load(cache, "k", lambda: _slow("v", calls)) for _ in range(20)))

    asyncio.run(main())
    assert len(calls) == 20


def test_failed_load_not_cached_and_waiters_get_error():
    cache = Cache("models", maxsize=10, ttl=60, tracer=Tracer())

    async def boom():
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    async def main():
        results = await asyncio.gather(*(get_or_load(cache, "k", boom) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert cache.get("k") is MISSING
        assert cache._inflight == {}
        calls: list[int] = []
        assert await get_or_load(cache, "k", lambda: _slow("ok", calls)) == "ok"  # not wedged

    asyncio.run(main())


def test_invalidation_during_load_discards_stale_result():
    cache = Cache("models", maxsize=10, ttl=60, tracer=Tracer())

    async def main():
        calls: list[int] = []
        task = asyncio.ensure_future(get_or_load(cache, "1:openai:x", lambda: _slow("old", calls, 0.05)))
        await asyncio.sleep(0.01)
        cache.invalidate_where(lambda k: k.startswith("1:"))
        assert await task == "old"  # the caller that asked before the write still gets its answer
        assert cache.get("1:openai:x") is MISSING  # but it was not stored

    asyncio.run(main())


def test_none_is_not_cached():
    cache = Cache("user", maxsize=10, ttl=60, tracer=Tracer())
    assert asyncio.run(cache.load("k", lambda: None)) is None
    assert len(cache) == 0


@pytest.mark.parametrize("n", [1000])
def test_bounded_under_many_keys(n):
    cache = Cache("user", maxsize=100, ttl=60, tracer=Tracer())
    for i in range(n):
        cache.set(i, i)
    assert len(cache) == 100


def test_without_jitter_every_entry_lives_exactly_its_ttl():
    c, clock = Tracer(), FakeClock()
    cache = make_cache("user", enabled=True, maxsize=1000, ttl=100, tracer=c, timer=clock)
    for i in range(100):
        cache.set(i, i)
    clock.now += 99.999
    assert len(cache) == 100
    clock.now += 0.001
    assert len(cache) == 0


def test_jitter_spreads_expiries_of_entries_stored_together_over_the_band():
    c, clock = Tracer(), FakeClock()
    cache = make_cache("user", enabled=True, maxsize=1000, ttl=100, tracer=c, jitter=0.1, timer=clock)
    for i in range(1000):
        cache.set(i, i)  # all at the same instant
    left = []
    for t in (89.99, 91, 95, 100, 105, 109, 110):
        clock.now = 1000.0 + t
        left.append(len(cache))
    # None expires before 90 s, all by 110 s, and they leave all along the band: uniform over
    # [90, 110], each probe would see 0 or 1000 with a probability below 1e-22.
    assert left[0] == 1000 and left[-1] == 0
    assert 1000 > left[1] > left[2] > left[3] > left[4] > left[5] > 0
    assert stats(c)["expirations"] == 1000

