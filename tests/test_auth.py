"""Forge key -> user: a real SQLite store and a real ``user`` cache layer, costs read from the tracer."""

from __future__ import annotations

import asyncio
import re

import pytest

from forge_ref.auth import Authenticator, display_prefix, hash_key, new_key
from forge_ref.cache import Cache
from forge_ref.errors import Unauthorized
from forge_ref.store import SqliteDriver, Store, connect, create_schema
from forge_ref.tracing import Tracer


class World:
    def __init__(self, path: str) -> None:
        create_schema(connect(path, tracer=None))
        self.tracer = Tracer()
        self.store = Store(SqliteDriver(connect(path, tracer=self.tracer)))
        self.cache = Cache("user", maxsize=100, ttl=300, tracer=self.tracer)
        self.auth = Authenticator(self.store, self.cache)
        self.key = new_key()
        self.user = asyncio.run(self.store.create_user("alice", hash_key(self.key), display_prefix(self.key)))
        self.tracer.reset()

    def lookup(self, key: str | None):
        return asyncio.run(self.auth.user(key))

    def costs(self) -> tuple[int, int, int]:
        t = self.tracer.totals()
        return t["db_queries"], t["cache.user.hits"], t["cache.user.misses"]


@pytest.fixture
def world(tmp_path):
    return World(str(tmp_path / "auth.db"))


def test_new_keys_are_prefixed_random_and_url_safe():
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"forge-[A-Za-z0-9_-]{43}", key)  # 32 random bytes, base64url without padding
        assert display_prefix(key) == key[:12]


def test_the_hash_is_sha256_hex_stable_across_processes():
    # A literal (`printf forge-abc | sha256sum`): the same in every process, unlike Python's hash().
    assert hash_key("forge-abc") == "c06782b3ff005a7a620d073ce75cc9ed0767eb96540caa95d4dc402743f4c306"


def test_a_known_key_costs_one_query_then_none(world):
    assert world.lookup(world.key) == world.user
    assert world.costs() == (1, 0, 1)
    for _ in range(5):
        assert world.lookup(world.key) == world.user
    assert world.costs() == (1, 5, 1)


def test_the_cache_key_is_the_hash_never_the_raw_key(world):
    world.lookup(world.key)
    assert len(world.cache) == 1
    assert world.cache.invalidate(world.key) is False  # nothing stored under the secret itself
    assert world.cache.invalidate(hash_key(world.key)) is True
    assert len(world.cache) == 0


def test_an_unknown_key_is_refused_and_not_cached(world):
    with pytest.raises(Unauthorized) as info:
        world.lookup("forge-guess")
    err = info.value
    assert (err.status, err.type, err.code, err.message) == (401, "authentication_error", "invalid_api_key",
                                                             "invalid API key")
    assert "forge-guess" not in err.body().decode()


def test_guessing_cannot_fill_the_cache(world):
    for i in range(50):
        with pytest.raises(Unauthorized):
            world.lookup(f"forge-guess-{i}")
    with pytest.raises(Unauthorized):
        world.lookup("forge-guess-0")  # the same wrong key again: asked again, not remembered
    assert len(world.cache) == 0
    assert world.costs() == (51, 0, 51)


@pytest.mark.parametrize("key", [None, ""])
def test_a_missing_key_says_how_to_send_one_without_a_query(world, key):
    with pytest.raises(Unauthorized) as info:
        world.lookup(key)
    err = info.value
    assert (err.status, err.code) == (401, "missing_api_key")
    assert err.message == "missing API key: send 'Authorization: Bearer forge-...'"
    assert world.costs() == (0, 0, 0)


def test_a_reset_key_is_found_only_by_its_new_hash(world):
    world.lookup(world.key)
    fresh = new_key()
    asyncio.run(world.store.reset_forge_key(world.user.id, hash_key(world.key), hash_key(fresh), display_prefix(fresh)))
    world.cache.invalidate(hash_key(world.key))  # what the invalidator does after a reset
    with pytest.raises(Unauthorized):
        world.lookup(world.key)
    assert world.lookup(fresh).id == world.user.id
