"""The response cache's parts without a server: who opted in for what, the key, the in-process store
(bounded by bytes, a TTL per entry, max-age), and what its Redis store keeps (a real Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import uuid

import orjson
import pytest

from forge_ref.errors import BadRequest
from forge_ref.responses import ENTRY_OVERHEAD, Directive, MemoryAnswers, cache_key, directive, take_spec
from forge_ref.responses_redis import RedisAnswers
from forge_ref.store import ProviderRow
from forge_ref.tracing import Tracer

MAX_TTL = 86400.0
ROW = ProviderRow(7, "openai", "openai", "gAAAA-ciphertext", "http://x", {}, 1700000000.5)


@pytest.mark.parametrize("header, spec, default, expected", [
    (None, None, None, None),  # no opt-in: bypass
    ("max-age=60", None, None, Directive(True, 60.0, 60.0)),
    ("public, MAX-AGE=\"60\"", None, None, Directive(True, 60.0, 60.0)),
    ("max-age=0", None, None, None),  # accepts nothing cached and keeps nothing
    ("max-age=sixty", None, None, None),  # malformed: ignored, as HTTP caches do
    ("no-cache", None, None, None),
    ("no-store", None, 300.0, None),  # the key's default does not override no-store
    ("no-cache", None, 300.0, Directive(False, math.inf, 300.0)),  # no look-up, still stored
    ("max-age=60, no-store", None, None, None),
    ("max-age=999999", None, None, Directive(True, 999999.0, MAX_TTL)),  # kept at most FORGE_RESPONSES_MAX_TTL
    (None, None, 300.0, Directive(True, math.inf, 300.0)),  # the provider key's cache_ttl opts in
    ("max-age=60", None, 300.0, Directive(True, 60.0, 60.0)),  # the request's own word wins
    (None, {"ttl": 600}, None, Directive(True, math.inf, 600.0)),  # LiteLLM's spelling
    (None, {"ttl": 600, "s-maxage": 30}, None, Directive(True, 30.0, 600.0)),
    (None, {"s-maxage": 30}, None, Directive(True, 30.0, 30.0)),
    (None, {"ttl": 600, "no-cache": True}, None, Directive(False, math.inf, 600.0)),
    (None, {"ttl": 600, "no-store": True}, None, None),
    (None, {"no-cache": True}, None, None),
    ("max-age=60", {"no-store": True}, None, None),
])
def test_directive(header, spec, default, expected):
    assert directive(header, spec, default, MAX_TTL) == expected


def test_cache_object_is_taken_out_of_the_body_and_checked():
    body = {"model": "m", "cache": {"ttl": 60, "no-cache": False}}
    assert take_spec(body) == {"ttl": 60, "no-cache": False} and "cache" not in body
    assert take_spec({"model": "m"}) is None
    for bad in ([1], "60", {"ttl": -1}, {"ttl": "60"}, {"ttl": True}, {"no-cache": 1}, {"namespace": "x"},
                {"s-maxage": float("inf")}):
        with pytest.raises(BadRequest) as err:
            take_spec({"cache": bad})
        assert (err.value.status, err.value.code, err.value.param) == (400, "invalid_cache", "cache")


def test_key_is_per_user_and_per_key_version_and_ignores_delivery_fields():
    body = {"model": "openai/m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = cache_key("chat", 1, ROW, "m", body)
    assert key[0] == 1 and len(key[1]) == 32
    # Canonical: key order and delivery fields do not matter.
    same = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "openai/m", "stream": True,
            "stream_options": {"include_usage": True}, "user": "end-user-1", "metadata": {"a": "b"}}
    assert cache_key("chat", 1, ROW, "m", same) == key
    others = [cache_key("chat", 2, ROW, "m", body),  # another user
              cache_key("chat", 1, dataclasses.replace(ROW, updated_at=ROW.updated_at + 1), "m", body),  # key changed
              cache_key("chat", 1, ROW, "m2", body),  # another upstream model
              cache_key("messages", 1, ROW, "m", body),  # another API's shape
              cache_key("chat", 1, ROW, "m", dict(body, temperature=1))]
    assert len({key, *others}) == 6


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_memory_store_is_bounded_by_bytes_and_counts_evictions():
    tracer = Tracer()
    clock = Clock()
    answers = MemoryAnswers(max_bytes=3 * (1000 + ENTRY_OVERHEAD), meter=tracer.layer("responses"), timer=clock)
    for i in range(3):
        run(answers.put((1, bytes([i])), b"x" * 1000, 60))
    t = tracer.totals()
    assert (t["cache.responses.size"], t["cache.responses.bytes"], t["cache.responses.evictions"]) == (
        3, 3 * (1000 + ENTRY_OVERHEAD), 0)
    assert run(answers.get((1, b"\x00"), math.inf)) == b"x" * 1000  # now the most recently used
    run(answers.put((1, b"big"), b"y" * 1500, 60))  # needs the room of two: the two least recently used go
    t = tracer.totals()
    assert (t["cache.responses.size"], t["cache.responses.evictions"]) == (2, 2)
    assert run(answers.get((1, b"\x01"), math.inf)) is None and run(answers.get((1, b"\x02"), math.inf)) is None
    assert run(answers.get((1, b"\x00"), math.inf)) == b"x" * 1000
    run(answers.put((1, b"huge"), b"z" * 10_000, 60))  # larger than the bound: not kept, nothing evicted for it
    assert tracer.totals()["cache.responses.size"] == 2 and run(answers.get((1, b"huge"), math.inf)) is None


def test_memory_store_ttl_per_entry_and_max_age():
    tracer = Tracer()
    clock = Clock()
    answers = MemoryAnswers(max_bytes=1 << 20, meter=tracer.layer("responses"), timer=clock)
    run(answers.put((1, b"short"), b"s", 10))
    run(answers.put((1, b"long"), b"l", 100))
    clock.now += 30
    assert run(answers.get((1, b"long"), math.inf)) == b"l"
    assert run(answers.get((1, b"long"), 20)) is None  # older than the request accepts
    assert run(answers.get((1, b"short"), math.inf)) is None  # expired by its own TTL, and removed
    t = tracer.totals()
    assert (t["cache.responses.expirations"], t["cache.responses.size"]) == (1, 1)


def test_memory_store_drops_one_users_entries():
    tracer = Tracer()
    answers = MemoryAnswers(max_bytes=1 << 20, meter=tracer.layer("responses"))
    for user in (1, 2):
        for d in (b"a", b"b"):
            run(answers.put((user, d), b"answer", 60))
    answers.drop_user(1)
    assert [run(answers.get((u, d), math.inf)) for u in (1, 2) for d in (b"a", b"b")] == [None, None, b"answer",
                                                                                          b"answer"]
    assert tracer.totals()["cache.responses.size"] == 2


def test_redis_store_keeps_json_under_the_users_generation(redis_url):
    import redis

    from forge_ref.redis_backend import RedisLink

    prefix = f"forge-test:{uuid.uuid4().hex[:8]}:"
    answer = orjson.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": "hello"}}]})

    async def main():
        link = RedisLink(redis_url, prefix=prefix, max_connections=4, timeout=1.0, tracer=Tracer())
        store = RedisAnswers(link, max_bytes=1 << 20)
        key = (5, bytes(range(32)))
        assert await store.get(key, math.inf) is None
        await store.put(key, answer, 60)
        assert await store.get(key, math.inf) == answer
        assert await store.get(key, -1) is None  # any age is too old for max-age below 0
        await store.put((5, b"\x01" * 32), b"x" * 2048, 60)  # over max_bytes (as set below): not kept
        store.max_bytes = 1024
        await store.put((5, b"\x02" * 32), b"x" * 2048, 60)
        raw = redis.Redis.from_url(redis_url)
        names = sorted(k.decode() for k in raw.scan_iter(prefix + "*"))
        assert names == [f"{prefix}resp:5:0:{bytes(range(32)).hex()}", f"{prefix}resp:5:0:{'01' * 32}"]
        stored = orjson.loads(raw.get(names[0]))
        assert stored["answer"] == orjson.loads(answer) and isinstance(stored["at"], float)
        assert 0 < raw.pttl(names[0]) <= 60_000
        raw.incr(f"{prefix}gen:responses:5")  # what a provider-key write does (RedisBroadcast)
        assert await store.get(key, math.inf) is None
        for name in raw.scan_iter(prefix + "*"):
            raw.delete(name)
        await link.close()

    asyncio.run(main())
