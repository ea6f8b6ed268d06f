"""Invalidation: each write path drops exactly what it made stale, here and in every other process.

The gateways are the real thing (``app.build_gateway``) on one SQLite file; two of them built with
``multi_process=True`` are two server processes as far as the invalidation log is concerned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import pytest
from support import settings_for

from forge_ref.app import build_gateway, prepare_storage
from forge_ref.auth import display_prefix, hash_key, new_key
from forge_ref.cache import MISSING
from forge_ref.gateway import Gateway
from forge_ref.invalidation import MODELS, RESPONSES, SERVICE, USER, Broadcast, InvalidationPoller, SqliteLogBroadcast
from forge_ref.models import cache_key

FAILURES = "models_failures"
ANSWER = b"k" * 32  # a kept answer's digest (the response cache's entries are per user)


@dataclass
class Seeded:
    id: int
    key: str
    key_hash: str
    models_key: str  # its provider's model-list entry
    failure_key: str  # a remembered model-list failure of another provider of the user


@contextlib.asynccontextmanager
async def gateways(tmp_path, *configs: dict):
    """Gateways on one SQLite file, each a process of its own (``multi_process`` unless a config says)."""
    built = []
    try:
        for config in configs:
            s = settings_for(tmp_path, **{k: v for k, v in config.items() if k != "multi_process"})
            built.append(await build_gateway(s, keys=await prepare_storage(s),
                                             multi_process=config.get("multi_process", True)))
        yield built
    finally:
        for gw in built:
            await gw.aclose()


async def seed(gw: Gateway, name: str) -> Seeded:
    key = new_key()
    user = await gw.store.create_user(name, hash_key(key), display_prefix(key))
    row = await gw.store.add_provider_key(user.id, "openai", "openai", gw.crypto.encrypt(f"sk-{name}-0123456789"),
                                          "https://api.openai.com/v1", {})
    return Seeded(user.id, key, user.key_hash, cache_key(user.id, row), f"{user.id}:down:0123456789abcdef")


async def warm(gw: Gateway, *users: Seeded) -> None:
    """Fill every layer for these users as requests do (model lists as the lister stores them)."""
    for u in users:
        assert (await gw.auth.user(u.key)).id == u.id
        await gw.services.get(u.id)
        gw.models.cache.set(u.models_key, ["gpt-4o"])
        gw.models.failures.set(u.failure_key, True)
        await gw.responses.store.put((u.id, ANSWER), b"{}", 60)


def cached(gw: Gateway, *users: Seeded) -> dict[str, set[int]]:
    """Which of these users each layer still holds."""
    return {
        USER: {u.id for u in users if gw.auth.cache.get(u.key_hash) is not MISSING},
        SERVICE: {u.id for u in users if gw.services.cache.get(u.id) is not MISSING},
        MODELS: {u.id for u in users if gw.models.cache.get(u.models_key) is not MISSING},
        FAILURES: {u.id for u in users if gw.models.failures.get(u.failure_key) is not MISSING},
        RESPONSES: {u.id for u in users if (u.id, ANSWER) in gw.responses.store},
    }


WRITES = {
    "user_updated": (lambda inv, u: inv.user_updated(u.id, u.key_hash),
                     lambda u: [(USER, u.key_hash), (SERVICE, str(u.id))]),
    "forge_key_changed": (lambda inv, u: inv.forge_key_changed(u.key_hash),
                       lambda u: [(USER, u.key_hash)]),
    "user_deleted": (lambda inv, u: inv.user_deleted(u.id, u.key_hash),
                     lambda u: [(USER, u.key_hash), (SERVICE, str(u.id)), (MODELS, str(u.id)), (RESPONSES, str(u.id))]),
    "provider_keys_changed": (lambda inv, u: inv.provider_keys_changed(u.id),
                              lambda u: [(SERVICE, str(u.id)), (MODELS, str(u.id)), (RESPONSES, str(u.id))]),
}


@pytest.mark.parametrize("write", WRITES)
def test_each_write_drops_exactly_what_it_names(tmp_path, write):
    publish, expected = WRITES[write]

    async def body():
        async with gateways(tmp_path, {}) as (gw,):
            alice, bob = await seed(gw, "alice"), await seed(gw, "bob")
            await warm(gw, alice, bob)
            gw.tracer.reset()
            await publish(gw.invalidator, alice)
            assert gw.tracer.total("invalidations") == len(expected(alice))
            assert (gw.tracer.total("db_writes"), gw.tracer.total("db_queries")) == (1, 0)  # one log append
            assert [(kind, key) for _, kind, key in await gw.store.invalidations_after(0)] == expected(alice)
            stale = {kind for kind, _ in expected(alice)}
            if MODELS in stale:
                stale.add(FAILURES)  # a changed provider may answer now: forget that it failed
            assert cached(gw, alice, bob) == {layer: {bob.id} if layer in stale else {alice.id, bob.id}
                                              for layer in (USER, SERVICE, MODELS, FAILURES, RESPONSES)}

    asyncio.run(body())


def test_one_process_drops_locally_and_broadcasts_nowhere(tmp_path):
    async def body():
        async with gateways(tmp_path, {"multi_process": False}) as (gw,):
            assert type(gw.invalidator.broadcast) is Broadcast and gw.poller is None
            alice = await seed(gw, "alice")
            await warm(gw, alice)
            gw.tracer.reset()
            await gw.invalidator.provider_keys_changed(alice.id)
            assert cached(gw, alice)[SERVICE] == set()
            assert (gw.tracer.total("db_writes"), gw.tracer.total("invalidations")) == (0, 3)
            assert await gw.store.invalidations_after(0) == []

    asyncio.run(body())


def test_other_processes_apply_the_log_and_the_writer_skips_its_own_events(tmp_path):
    async def body():
        async with gateways(tmp_path, {}, {}) as (writer, other):
            alice = await seed(writer, "alice")
            await warm(writer, alice)
            await warm(other, alice)
            await writer.invalidator.provider_keys_changed(alice.id)
            ids = [event_id for event_id, _, _ in await writer.store.invalidations_after(0)]
            assert isinstance(writer.invalidator.broadcast, SqliteLogBroadcast)
            assert writer.invalidator.broadcast.own_ids == set(ids) and len(ids) == 3
            assert cached(other, alice)[SERVICE] == {alice.id}  # stale until it polls
            writer.tracer.reset()
            other.tracer.reset()
            await other.poller.tick()
            await writer.poller.tick()
            assert cached(other, alice) == {USER: {alice.id}, SERVICE: set(), MODELS: set(), FAILURES: set(),
                                            RESPONSES: set()}
            assert other.tracer.total("invalidations") == 3
            assert writer.tracer.total("invalidations") == 0  # applied once already, when written
            assert writer.invalidator.broadcast.own_ids == set()
            assert other.poller.last_id == writer.poller.last_id == ids[-1]
            # Polling is the process's own background work, never a request's cost.
            assert [(gw.tracer.total("db_background_queries"), gw.tracer.total("db_queries"))
                    for gw in (writer, other)] == [(1, 0), (1, 0)]

    asyncio.run(body())


def test_a_new_process_starts_after_the_existing_log(tmp_path):
    async def body():
        async with gateways(tmp_path, {}) as (first,):
            alice = await seed(first, "alice")
            await first.invalidator.provider_keys_changed(alice.id)
            async with gateways(tmp_path, {}) as (late,):  # empty caches: nothing before it can be stale in it
                assert late.poller.last_id == await first.store.last_invalidation_id() == 3
                await warm(late, alice)
                await late.poller.tick()
                assert late.tracer.total("invalidations") == 0 and cached(late, alice)[SERVICE] == {alice.id}

    asyncio.run(body())


def test_a_failed_poll_is_logged_and_the_next_one_catches_up(tmp_path, caplog):
    async def body():
        async with gateways(tmp_path, {}, {}) as (writer, other):
            alice = await seed(writer, "alice")
            await warm(other, alice)
            await writer.invalidator.forge_key_changed(alice.key_hash)
            writer.store.driver.db.execute("ALTER TABLE invalidations RENAME TO invalidations_away")
            with caplog.at_level(logging.ERROR, logger="forge_ref.invalidation"):
                await other.poller.tick()  # must not raise: the timer would stop
            assert [r.getMessage() for r in caplog.records] == ["invalidation poll failed; retrying"]
            assert other.poller.last_id == 0 and cached(other, alice)[USER] == {alice.id}
            writer.store.driver.db.execute("ALTER TABLE invalidations_away RENAME TO invalidations")
            await other.poller.tick()
            assert other.poller.last_id == 1 and cached(other, alice)[USER] == set()

    asyncio.run(body())


def test_old_log_rows_are_pruned_at_most_every_ten_minutes(tmp_path):
    async def body():
        async with gateways(tmp_path, {}) as (gw,):
            await gw.invalidator.forge_key_changed("old-hash")
            gw.store.driver.db.execute("UPDATE invalidations SET created_at = created_at - ?",
                                (InvalidationPoller.PRUNE_AFTER + 1,))
            await gw.invalidator.forge_key_changed("new-hash")
            await gw.poller.tick()
            assert len(await gw.store.invalidations_after(0)) == 2  # pruned less than 600 s ago (at start)
            gw.poller._last_prune -= 601  # the poller reads time.monotonic itself: move its mark instead
            await gw.poller.tick()
            assert [key for _, _, key in await gw.store.invalidations_after(0)] == ["new-hash"]

    asyncio.run(body())


def test_the_poller_runs_on_its_timer_until_stopped(tmp_path):
    async def body():
        async with gateways(tmp_path, {}, {"invalidation_poll": 0.02}) as (writer, other):
            alice = await seed(writer, "alice")
            await warm(other, alice)
            other.poller.start()
            await writer.invalidator.provider_keys_changed(alice.id)
            for _ in range(200):
                if other.services.cache.get(alice.id) is MISSING:
                    break
                await asyncio.sleep(0.01)
            assert cached(other, alice)[SERVICE] == set()
            other.poller.stop()
            await warm(other, alice)
            await writer.invalidator.provider_keys_changed(alice.id)
            await asyncio.sleep(0.2)  # ten intervals: a running timer would have applied it
            assert cached(other, alice)[SERVICE] == {alice.id}

    asyncio.run(body())


def test_clear_local_forgets_every_cached_user(tmp_path):
    async def body():
        async with gateways(tmp_path, {}) as (gw,):
            alice, bob = await seed(gw, "alice"), await seed(gw, "bob")
            await warm(gw, alice, bob)
            gw.invalidator.clear_local()  # after invalidations may have been missed (a Redis outage)
            assert (len(gw.auth.cache), len(gw.services.cache), len(gw.models.cache), len(gw.responses.store)) == (
                0, 0, 0, 0)

    asyncio.run(body())
