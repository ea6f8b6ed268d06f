"""Both stores (SQLite through sqlite-utils, PostgreSQL through psycopg) against one set of
tests: one SQL statement per method, counted at the one choke point."""

import asyncio

import pytest

from forge_ref.app import open_store
from forge_ref.tracing import Tracer
from forge_ref.errors import Conflict, NotFound
from forge_ref.pg_store import create_schema as pg_create_schema
from forge_ref.settings import Settings
from forge_ref.sql import DUPLICATE, Statements
from forge_ref.store import SqliteDriver, connect, create_schema


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        path = str(tmp_path / "t.db")
        create_schema(connect(path, tracer=None))
        return path
    url = request.getfixturevalue("pg_db")
    pg_create_schema(url)
    return url


def run(db, body):
    """Open the store inside one event loop (a pool belongs to its loop), run, close."""
    async def main():
        c = Tracer()
        s = await open_store(Settings(db=db), c)
        try:
            return await body(s, c)
        finally:
            await s.close()

    return asyncio.run(main())


def counts(c):
    return c.total("db_queries"), c.total("db_writes")


def test_each_method_is_one_statement(db):
    async def body(s, c):
        u = await s.create_user("alice", "h1", "forge-abc")
        assert counts(c) == (0, 1)
        assert await s.user_by_key_hash("h1") == u
        assert counts(c) == (1, 1)
        assert await s.user_by_key_hash("nope") is None
        assert counts(c) == (2, 1)
        row = await s.add_provider_key(u.id, "openai", "openai", "enc", "http://x", {"fast": "gpt-4o-mini"})
        assert row.model_mapping == {"fast": "gpt-4o-mini"}
        assert counts(c) == (2, 2)
        assert [r.provider for r in await s.provider_keys(u.id)] == ["openai"]
        assert counts(c) == (3, 2)
        updated = await s.update_provider_key(u.id, "openai", {"base_url": "http://y"})
        assert (updated.base_url, updated.encrypted_key) == ("http://y", "enc")  # other fields kept
        assert await s.update_provider_key(u.id, "ghost", {"base_url": "http://y"}) is None
        assert counts(c) == (3, 4)
        assert (await s.update_user(u.id, "alice2")).name == "alice2"
        assert (await s.reset_user_key(u.id, "h2", "forge-def")).key_hash == "h2"
        assert counts(c) == (3, 6)
        await s.insert_usage([(u.id, "openai", "m", 200, 1, 2, 3.0, 0.0)] * 3)
        assert counts(c) == (3, 7)  # a batch is one statement

    run(db, body)


def test_duplicate_provider_conflict(db):
    async def body(s, c):
        u = await s.create_user("a", "h", "p")
        await s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
        with pytest.raises(Conflict):
            await s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
        # the store is still usable after the failed statement
        assert len(await s.provider_keys(u.id)) == 1

    run(db, body)


def test_delete_user_drops_keys_in_one_statement(db):
    async def body(s, c):
        u = await s.create_user("a", "h", "p")
        await s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
        before = counts(c)
        assert await s.delete_user(u.id) is True
        assert counts(c) == (before[0], before[1] + 1)
        assert await s.provider_keys(u.id) == []
        assert await s.delete_user(u.id) is False

    run(db, body)


def test_delete_provider_key(db):
    async def body(s, c):
        u = await s.create_user("a", "h", "p")
        await s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
        assert await s.delete_provider_key(u.id, "openai") is True
        assert await s.delete_provider_key(u.id, "openai") is False

    run(db, body)


def test_invalidation_log(db):
    async def body(s, c):
        ids = await s.append_invalidations([("user", "h"), ("service", "1")])
        assert len(ids) == 2
        assert [(k, v) for _, k, v in await s.invalidations_after(0)] == [("user", "h"), ("service", "1")]
        assert await s.invalidations_after(ids[-1]) == []
        assert await s.last_invalidation_id() == ids[-1]

    run(db, body)


def test_background_counter_is_separate(db):
    async def body(s, c):
        return None

    async def main():
        c = Tracer()
        bg = await open_store(Settings(db=db), c, background=True)
        try:
            await bg.invalidations_after(0)
        finally:
            await bg.close()
        assert (c.total("db_background_queries"), c.total("db_queries")) == (1, 0)

    asyncio.run(main())


def test_sqlite_wal_mode(tmp_path):
    db = connect(str(tmp_path / "w.db"), tracer=None)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- what each driver does its own way -----------------------------------------------------------


def test_a_unique_violation_is_a_conflict_without_the_databases_text(db):
    async def body(s, c):
        await s.create_user("a", "same-hash", "p")
        with pytest.raises(Conflict) as exc:
            await s.create_user("b", "same-hash", "p")
        assert exc.value.status == 409 and exc.value.message == DUPLICATE  # no DB text: it may quote values
        assert counts(c) == (0, 2)
        assert (await s.user_by_key_hash("same-hash")).name == "a"

    run(db, body)


def test_a_write_for_a_user_who_is_gone_is_not_found(db):
    """A provider key added for a user another process deleted meanwhile: a 404, not a 409 or a 500."""
    async def body(s, c):
        with pytest.raises(NotFound) as exc:  # no such user: a foreign-key violation
            await s.add_provider_key(12345, "openai", "openai", "e", "http://x", {})
        assert exc.value.status == 404 and exc.value.message == "user no longer exists"
        assert counts(c) == (0, 1)

    run(db, body)


def test_a_literal_percent_and_marks_run_on_either_driver(db):
    written = Statements(any_encrypted_key="SELECT '5%', ?, ?")

    async def body(s, c):
        sql = written if isinstance(s.driver, SqliteDriver) else written.pyformat()
        assert await s.driver.one(sql.any_encrypted_key, ("x", 2)) == ("5%", "x", 2)
        assert counts(c) == (1, 0)

    run(db, body)


def test_usage_batches_land_whole(db):
    rows = [(1, "openai", "m", 200, 1, 2, 3.5, 10.0), (2, "gemini", "n", 502, None, None, 9.25, 11.0)]

    async def body(s, c):
        await s.insert_usage(rows)
        await s.insert_usage(rows[:1])
        await s.insert_usage([])  # nothing to write: no statement
        assert counts(c) == (0, 2)
        stored = await s.driver.all("SELECT user_id, provider, model, status, prompt_tokens, completion_tokens,"
                                    " latency_ms, created_at FROM usage ORDER BY id", ())
        assert stored == rows + rows[:1]

    run(db, body)


def test_sqlite_sends_every_usage_batch_as_one_text():
    """Its reason (``SqliteDriver.usage_insert``): one compiled statement whatever the batch size."""
    one, many = SqliteDriver.usage_insert([(1,) * 8]), SqliteDriver.usage_insert([(1,) * 8] * 50)
    assert one[0] == many[0] and len(one[1]) == len(many[1]) == 1


# --- waiting for a pooled PostgreSQL connection ----------------------------------------------------


def test_a_statement_that_finds_every_pooled_connection_busy_waits_and_the_wait_is_counted(pg_db):
    """A pool of one connection, held: three statements asked for meanwhile all queue (one wait
    each, with its time, and a ``db_pool`` phase in each one's trace); once it is free, statements
    one after another wait for nothing."""
    from forge_ref import tracing

    pg_create_schema(pg_db)

    async def main():
        tracer = Tracer()
        store = await open_store(Settings(db=pg_db, db_pool_size=1), tracer)
        pool = store.driver.pool
        try:
            user = await store.create_user("alice", "h1", "forge-abc")

            async def lookup():
                trace = tracing.begin()  # each task has its own context: its own current trace
                assert await store.user_by_key_hash("h1") == user
                return trace

            held = await pool.getconn()
            lookups = [asyncio.ensure_future(lookup()) for _ in range(3)]
            while pool.get_stats()["requests_waiting"] < 3:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            await pool.putconn(held)
            traces = await asyncio.gather(*lookups)
            waited = tracer.totals()
            for _ in range(3):
                await store.user_by_key_hash("h1")
            return traces, waited, tracer.totals(), tracer.snapshot({})
        finally:
            await store.close()

    traces, waited, after, snap = asyncio.run(main())
    assert waited["db_pool_waits"] == 3 and waited["db_queries"] == 3
    assert all(t.costs == {"db_queries": 1, "db_pool_waits": 1} and t.phases["db_pool"] >= 0.05 for t in traces)
    # a trace's db_pool phase also holds its time before the statement was asked for
    assert 0 <= sum(t.phases["db_pool"] for t in traces) - waited["db_pool_wait_us"] / 1e6 < 0.05
    assert after["db_pool_waits"] == 3 and after["db_queries"] == 6  # the sequential ones did not wait
    assert snap["counters"]["db_pool_waits"] == 3
    assert snap["counters"]["db_pool_wait_ms"] == round(after["db_pool_wait_us"] / 1000, 3) >= 150
