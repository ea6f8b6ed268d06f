"""PostgreSQL (psycopg 3 + psycopg_pool): the driver under ``store.Store`` for a ``postgresql://`` ``--db``.

Every statement goes through ``_run``, the one place PostgreSQL costs are counted (reads as
``db_queries``, the rest as ``db_writes``, and the wait for a pooled connection as
``db_pool_waits``), over an async connection pool so no query blocks the event loop. Connections
are in autocommit mode: each statement is its own transaction, as on SQLite.
psycopg is imported when used: a SQLite gateway never pays its import (50-150 ms, measured).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from .errors import Conflict, NotFound
from .sql import COPY_USER_KEYS, DUPLICATE, GONE, SQL, USAGE_COLS
from .tracing import Tracer

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS provider_keys (
        id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        provider TEXT NOT NULL, kind TEXT NOT NULL, encrypted_key TEXT NOT NULL, base_url TEXT NOT NULL,
        model_mapping TEXT, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION,
        UNIQUE (user_id, provider))""",
    # a database from before the response cache
    "ALTER TABLE provider_keys ADD COLUMN IF NOT EXISTS cache_ttl DOUBLE PRECISION",
    """CREATE TABLE IF NOT EXISTS usage (
        id BIGSERIAL PRIMARY KEY, user_id BIGINT, provider TEXT, model TEXT, status INTEGER,
        prompt_tokens INTEGER, completion_tokens INTEGER, latency_ms DOUBLE PRECISION,
        created_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS invalidations (
        id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS usage_user_time ON usage (user_id, created_at)",
    "CREATE INDEX IF NOT EXISTS usage_time ON usage (created_at)",  # the admin's view of all users
]
FORGE_KEYS = """CREATE TABLE forge_keys (
    id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, key_prefix TEXT NOT NULL, providers TEXT, created_at DOUBLE PRECISION NOT NULL)"""
FIRST_KEY = [
    "CREATE INDEX IF NOT EXISTS forge_keys_user ON forge_keys (user_id)",
    # The trigger runs with the search_path of its creation, so a schema chosen by the URL holds.
    f"""CREATE OR REPLACE FUNCTION forge_first_key() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT
        AS $$ BEGIN {COPY_USER_KEYS} WHERE id = NEW.id; RETURN NULL; END $$""",
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'users_first_key' AND tgrelid = 'users'::regclass) THEN
            CREATE TRIGGER users_first_key AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION forge_first_key();
        END IF; END $$""",
]


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def create_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # Several nodes may start at once: serialize schema creation on an advisory lock.
        conn.execute("SELECT pg_advisory_lock(781234)")
        try:
            for statement in SCHEMA:
                conn.execute(statement)
            with conn.transaction():  # the copy of existing users' keys runs once, with the table's creation
                if conn.execute("SELECT to_regclass('forge_keys')").fetchone()[0] is None:
                    conn.execute(FORGE_KEYS)
                    conn.execute(COPY_USER_KEYS)
                for statement in FIRST_KEY:
                    conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(781234)")


_INSERT_USAGE = f"INSERT INTO usage ({', '.join(USAGE_COLS)}) VALUES "
_USAGE_ROW = "(" + ", ".join(["%s"] * len(USAGE_COLS)) + ")"


class PgDriver:
    """Runs each statement on a connection from an async pool (open it with ``await driver.open()``)."""

    sql = SQL.pyformat()
    usage_day = "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    usage_p50 = "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)"
    usage_rank = ""

    def __init__(self, url: str, *, tracer: Tracer | None, background: bool = False,
                 min_size: int = 1, max_size: int = 10) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        self._unique_violation = psycopg.errors.UniqueViolation
        self._fk_violation = psycopg.errors.ForeignKeyViolation
        self.pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                        kwargs={"autocommit": True})
        self._tracer = tracer
        self._background = background

    async def open(self) -> PgDriver:
        await self.pool.open(wait=True, timeout=10)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, sql: str, params: Sequence[Any], fetch: str | None, *, background: bool = False) -> Any:
        tracer = self._tracer
        asked = None
        if tracer is not None:  # the DB hook: the one place PostgreSQL statements are counted
            tracer.db_statement(sql, background=background or self._background)
            # The pool queues a statement that finds no idle connection, and decides it at once.
            if self.pool.get_stats()["pool_available"] == 0:
                asked = time.perf_counter()
        async with self.pool.connection() as conn:
            if asked is not None:
                tracer.db_pool_wait(time.perf_counter() - asked)
            try:
                cur = await conn.execute(sql, params)
            except self._unique_violation:
                raise Conflict(DUPLICATE) from None
            except self._fk_violation:
                raise NotFound(GONE) from None
            if fetch == "one":
                return await cur.fetchone()
            if fetch == "all":
                return await cur.fetchall()
            return cur.rowcount

    async def one(self, sql: str, params: Sequence[Any]) -> tuple | None:
        return await self._run(sql, params, "one")

    async def all(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        return await self._run(sql, params, "all")

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        return await self._run(sql, params, None)

    async def ping(self) -> None:
        await self._run(self.sql.ping, (), "one", background=True)

    @staticmethod
    def usage_insert(rows: list[tuple]) -> tuple[str, Sequence[Any]]:
        """A VALUES row per usage row: psycopg keeps at most 100 prepared texts per connection."""
        return _INSERT_USAGE + ", ".join([_USAGE_ROW] * len(rows)), [v for row in rows for v in row]
