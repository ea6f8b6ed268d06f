"""Both stores (SQLite through sqlite-utils, PostgreSQL through psycopg) against one set of
tests: one SQL statement per method, counted at the one choke point."""

import asyncio

import pytest

from forge_ref.app import open_store
from forge_ref.errors import Conflict, NotFound
from forge_ref.pg_store import create_schema as pg_create_schema
from forge_ref.settings import Settings
from forge_ref.sql import DUPLICATE, Statements
from forge_ref.store import SqliteDriver, User, connect, create_schema
from forge_ref.tracing import Tracer


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
        assert await s.update_user(u.id, "alice2") is True
        assert (await s.reset_forge_key(u.id, "h1", "h2", "forge-def")).key_hash == "h2"
        assert counts(c) == (3, 6)
        await s.insert_usage([(u.id, "openai", "m", 200, 1, 2, 3.0, 0.0)] * 3)
        assert counts(c) == (3, 7)  # a batch is one statement
        assert (await s.user_by_key_hash("h2")).name == "alice2"
        assert await s.user_by_key_hash("h1") is None
        assert counts(c) == (5, 7)

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


# --- Forge keys ----------------------------------------------------------------------------------


def test_forge_keys_each_method_one_statement(db):
    async def body(s, c):
        u = await s.create_user("alice", "h1", "forge-first")
        first, = await s.forge_keys(u.id)  # made with the user, by the same statement
        assert (first.name, first.key_hash, first.key_prefix, first.providers) == ("default", "h1", "forge-first", None)
        assert counts(c) == (1, 1)
        k = await s.add_forge_key(u.id, "ci", "h2", "forge-ci", ["openai", "groq", "openai"])
        assert (k.name, k.providers, k.key_hash) == ("ci", ("groq", "openai"), "h2")  # sorted, once each
        assert await s.user_by_key_hash("h2") == User(u.id, "alice", "h2", "forge-ci", frozenset({"groq", "openai"}))
        assert counts(c) == (2, 2)
        changed = await s.update_forge_key(u.id, k.id, {"providers": None})
        assert (changed.name, changed.providers) == ("ci", None)
        assert (await s.update_forge_key(u.id, k.id, {"name": "ci-2", "providers": []})).providers == ()
        assert await s.update_forge_key(u.id + 1, k.id, {"name": "x"}) is None  # another user's key: none
        assert counts(c) == (2, 5)
        assert (await s.user_by_key_hash("h2")).providers == frozenset()
        reset = await s.reset_forge_key(u.id, "h2", "h3", "forge-new")
        assert (reset.id, reset.name, reset.key_prefix, reset.providers) == (k.id, "ci-2", "forge-new", ())
        assert await s.reset_forge_key(u.id, "h2", "h4", "forge-x") is None  # the old hash names nothing now
        assert await s.delete_forge_key(u.id, k.id) == "h3"
        assert await s.delete_forge_key(u.id, k.id) is None
        assert counts(c) == (3, 9)
        assert [key.key_hash for key in await s.forge_keys(u.id)] == ["h1"]

    run(db, body)


def test_a_users_forge_keys_go_with_it(db):
    async def body(s, c):
        u = await s.create_user("a", "h", "p")
        await s.add_forge_key(u.id, "k", "h-k", "p", None)
        assert await s.delete_user(u.id) is True
        assert await s.forge_keys(u.id) == []
        assert await s.user_by_key_hash("h-k") is None
        with pytest.raises(NotFound):  # a key for a user who is gone
            await s.add_forge_key(u.id, "k", "h-k2", "p", None)

    run(db, body)


def _old_schema(db) -> None:
    """A database made before forge_keys existed, holding two users."""
    if db.startswith("postgresql"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL"
                         " UNIQUE, key_prefix TEXT NOT NULL, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION)")
            conn.execute("INSERT INTO users (name, key_hash, key_prefix, created_at) VALUES"
                         " ('old-a', 'ha', 'pa', 5), ('old-b', 'hb', 'pb', 6)")
        return
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL,"
                     " key_prefix TEXT NOT NULL, created_at FLOAT, updated_at FLOAT)")
        conn.execute("CREATE UNIQUE INDEX idx_users_key_hash ON users (key_hash)")
        conn.execute("INSERT INTO users (name, key_hash, key_prefix, created_at) VALUES"
                     " ('old-a', 'ha', 'pa', 5), ('old-b', 'hb', 'pb', 6)")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_old_database_upgrades_once_and_its_keys_keep_working(kind, tmp_path, request):
    """Existing users' keys move into forge_keys when the table is made, and only then: made again
    (every start), the copy would bring a reset key back."""
    db = str(tmp_path / "old.db") if kind == "sqlite" else request.getfixturevalue("pg_db")
    make = (lambda: create_schema(connect(db, tracer=None))) if kind == "sqlite" else (lambda: pg_create_schema(db))
    _old_schema(db)
    make()

    async def body(s, c):
        a = await s.user_by_key_hash("ha")
        assert (a.name, a.key_prefix, a.providers) == ("old-a", "pa", None)
        assert [(k.name, k.created_at) for k in await s.forge_keys(a.id)] == [("default", 5.0)]
        assert await s.reset_forge_key(a.id, "ha", "ha-2", "pa-2") is not None

    run(db, body)
    make()  # the next start

    async def after(s, c):
        assert await s.user_by_key_hash("ha") is None  # the reset key stays dead
        assert (await s.user_by_key_hash("ha-2")).name == "old-a"
        assert (await s.user_by_key_hash("hb")).name == "old-b"
        new = await s.create_user("new", "hn", "pn")  # the trigger made on upgrade gives it its key
        assert (await s.user_by_key_hash("hn")).id == new.id

    run(db, after)


# --- usage statistics ------------------------------------------------------------------------------

DAY = 86400.0


def test_usage_stats_in_one_statement(db):
    """Exact sums and medians (odd and even counts, as percentile_cont(0.5)), per group and per day, in a
    half-open range, of one user or all; one read each."""
    rows = [  # user, provider, model, status, prompt, completion, latency_ms, created_at
        (1, "openai", "gpt", 200, 10, 5, 30.0, 10 * DAY + 1),
        (1, "openai", "gpt", 200, 20, 7, 10.0, 10 * DAY + 2),
        (1, "openai", "gpt", 502, None, None, 20.0, 11 * DAY),
        (1, "openai", "mini", 429, None, None, 4.0, 11 * DAY + 5),
        (1, "claude", "haiku", 200, 3, None, 8.0, 11 * DAY + 6),
        (1, "claude", "haiku", 200, 4, 9, 2.0, 12 * DAY),  # outside [10 days, 12 days)
        (2, "openai", "gpt", 200, 100, 50, 1.0, 10 * DAY + 3),
    ]

    async def body(s, c):
        await s.insert_usage(rows)
        before = counts(c)
        got = await s.usage_stats(1, 10 * DAY, 12 * DAY, ["provider", "model"])
        assert got == [
            {"provider": "claude", "model": "haiku", "requests": 1, "errors": 0, "prompt_tokens": 3,
             "completion_tokens": 0, "latency_p50_ms": 8.0},
            {"provider": "openai", "model": "gpt", "requests": 3, "errors": 1, "prompt_tokens": 30,
             "completion_tokens": 12, "latency_p50_ms": 20.0},
            {"provider": "openai", "model": "mini", "requests": 1, "errors": 1, "prompt_tokens": 0,
             "completion_tokens": 0, "latency_p50_ms": 4.0},
        ]
        assert counts(c) == (before[0] + 1, before[1])
        by_day = await s.usage_stats(1, 0.0, float("inf"), ["day"])
        assert [(r["day"], r["requests"], r["latency_p50_ms"]) for r in by_day] == [
            ("1970-01-11", 2, 20.0), ("1970-01-12", 3, 8.0), ("1970-01-13", 1, 2.0)]  # even: (10 + 30) / 2
        everyone = await s.usage_stats(None, 10 * DAY, 11 * DAY, ["user", "provider"])
        assert [(r["user"], r["provider"], r["requests"], r["prompt_tokens"], r["latency_p50_ms"])
                for r in everyone] == [(1, "openai", 2, 30, 20.0), (2, "openai", 1, 100, 1.0)]
        assert await s.usage_stats(3, 0.0, float("inf"), ["provider"]) == []
        assert counts(c) == (before[0] + 4, before[1])

    run(db, body)


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
