"""PostgreSQL storage (psycopg 3 + psycopg_pool): the same interface as the SQLite ``Store``.

Selected by a ``postgresql://`` ``--db``. Every method is one SQL statement through ``_run``,
the one place PostgreSQL costs are counted (reads as ``db_queries``, the rest as ``db_writes``),
over an async connection pool so no query blocks the event loop. Connections are in autocommit
mode: each statement is its own transaction, as on SQLite.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .tracing import Tracer
from .errors import Conflict
from .store import _PROVIDER_COLS, _USER_COLS, USAGE_COLS, ProviderRow, User, _provider, _user, update_values

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS provider_keys (
        id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        provider TEXT NOT NULL, kind TEXT NOT NULL, encrypted_key TEXT NOT NULL, base_url TEXT NOT NULL,
        model_mapping TEXT, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION,
        UNIQUE (user_id, provider))""",
    """CREATE TABLE IF NOT EXISTS usage (
        id BIGSERIAL PRIMARY KEY, user_id BIGINT, provider TEXT, model TEXT, status INTEGER,
        prompt_tokens INTEGER, completion_tokens INTEGER, latency_ms DOUBLE PRECISION,
        created_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS invalidations (
        id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
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
        finally:
            conn.execute("SELECT pg_advisory_unlock(781234)")


class PgStore:
    def __init__(self, url: str, *, tracer: Tracer | None, background: bool = False,
                 min_size: int = 1, max_size: int = 10) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                        kwargs={"autocommit": True})
        self._tracer = tracer
        self._background = background

    async def open(self) -> "PgStore":
        await self.pool.open(wait=True, timeout=10)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, sql: str, params: Any = None, *, fetch: str | None = "one") -> Any:
        if self._tracer is not None:  # the DB hook: the one place PostgreSQL statements are counted
            self._tracer.db_statement(sql, background=self._background)
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            if fetch == "one":
                return await cur.fetchone()
            if fetch == "all":
                return await cur.fetchall()
            return cur.rowcount

    # users

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        return _user(await self._run(f"SELECT {_USER_COLS} FROM users WHERE key_hash = %s", (key_hash,)))

    async def create_user(self, name: str, key_hash: str, key_prefix: str) -> User:
        now = time.time()
        return _user(await self._run(
            "INSERT INTO users (name, key_hash, key_prefix, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)"
            f" RETURNING {_USER_COLS}", (name, key_hash, key_prefix, now, now)))

    async def update_user(self, user_id: int, name: str) -> User | None:
        return _user(await self._run(
            f"UPDATE users SET name = %s, updated_at = %s WHERE id = %s RETURNING {_USER_COLS}",
            (name, time.time(), user_id)))

    async def reset_user_key(self, user_id: int, key_hash: str, key_prefix: str) -> User | None:
        return _user(await self._run(
            f"UPDATE users SET key_hash = %s, key_prefix = %s, updated_at = %s WHERE id = %s RETURNING {_USER_COLS}",
            (key_hash, key_prefix, time.time(), user_id)))

    async def delete_user(self, user_id: int) -> bool:
        return await self._run("DELETE FROM users WHERE id = %s", (user_id,), fetch=None) > 0

    # provider keys

    async def provider_keys(self, user_id: int) -> list[ProviderRow]:
        rows = await self._run(f"SELECT {_PROVIDER_COLS} FROM provider_keys WHERE user_id = %s ORDER BY provider",
                               (user_id,), fetch="all")
        return [_provider(r) for r in rows]

    async def add_provider_key(self, user_id: int, provider: str, kind: str, encrypted_key: str, base_url: str,
                               model_mapping: dict[str, str]) -> ProviderRow:
        import psycopg

        now = time.time()
        try:
            row = await self._run(
                "INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                f" created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PROVIDER_COLS}",
                (user_id, provider, kind, encrypted_key, base_url, orjson.dumps(model_mapping).decode(), now, now))
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"provider {provider!r} already exists; use PUT to update it") from None
        return _provider(row)

    async def update_provider_key(self, user_id: int, provider: str, changes: dict[str, Any]) -> ProviderRow | None:
        changes = update_values(changes)
        sets = ", ".join(f"{col} = %s" for col in changes)  # column names come from code, not input
        row = await self._run(
            f"UPDATE provider_keys SET {sets} WHERE user_id = %s AND provider = %s RETURNING {_PROVIDER_COLS}",
            (*changes.values(), user_id, provider))
        return None if row is None else _provider(row)

    async def delete_provider_key(self, user_id: int, provider: str) -> bool:
        return await self._run("DELETE FROM provider_keys WHERE user_id = %s AND provider = %s",
                               (user_id, provider), fetch=None) > 0

    async def swap_encrypted_key(self, key_id: int, old: str, new: str) -> bool:
        """Compare-and-swap (key rotation): only if nobody changed the row since it was read."""
        return await self._run("UPDATE provider_keys SET encrypted_key = %s WHERE id = %s AND encrypted_key = %s",
                               (new, key_id, old), fetch=None) > 0

    # not on the request path

    async def all_encrypted_keys(self) -> list[tuple[int, int, str]]:
        return [tuple(r) for r in await self._run(
            "SELECT id, user_id, encrypted_key FROM provider_keys ORDER BY id", fetch="all")]

    async def any_encrypted_key(self) -> str | None:
        row = await self._run("SELECT encrypted_key FROM provider_keys LIMIT 1")
        return None if row is None else row[0]

    async def insert_usage(self, rows: list[tuple]) -> None:
        if not rows:
            return
        marks = "(" + ", ".join(["%s"] * len(USAGE_COLS)) + ")"
        await self._run(f"INSERT INTO usage ({', '.join(USAGE_COLS)}) VALUES " + ", ".join([marks] * len(rows)),
                        [v for row in rows for v in row], fetch=None)

    async def append_invalidations(self, events: list[tuple[str, str]]) -> list[int]:
        if not events:
            return []
        now = time.time()
        rows = await self._run(
            "INSERT INTO invalidations (kind, key, created_at) VALUES " + ", ".join(["(%s, %s, %s)"] * len(events))
            + " RETURNING id", [v for kind, key in events for v in (kind, key, now)], fetch="all")
        return [r[0] for r in rows]

    async def invalidations_after(self, last_id: int) -> list[tuple[int, str, str]]:
        return [tuple(r) for r in await self._run(
            "SELECT id, kind, key FROM invalidations WHERE id > %s ORDER BY id", (last_id,), fetch="all")]

    async def last_invalidation_id(self) -> int:
        return (await self._run("SELECT COALESCE(MAX(id), 0) FROM invalidations"))[0]

    async def prune_invalidations(self, older_than: float) -> None:
        await self._run("DELETE FROM invalidations WHERE created_at < %s", (older_than,), fetch=None)
