"""The storage API (``Store``: every method and row mapping) over a driver per database; SQLite's here.

The statements and the driver contract are in ``sql``, PostgreSQL's driver in ``pg_store``. Each
method is one SQL statement, counted where the driver runs it (``Tracer.db_statement``, here via
sqlite-utils' ``Database(tracer=...)`` hook): reads (SELECT) as ``db_queries``, the rest ``db_writes``.

SQLite uses ``db.execute`` with a single statement: sqlite-utils' ``table.get()`` /
``rows_where()`` issue schema look-ups too (4-6 statements, measured), and ``db.query()`` wraps
each read in a SAVEPOINT pair. The connection is opened in autocommit mode
(``isolation_level=None``): each statement is its own transaction, so ``INSERT ... RETURNING``
commits as soon as its row is fetched.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Sequence

import orjson
import sqlite_utils

from .errors import Conflict, NotFound
from .sql import COPY_USER_KEYS, DUPLICATE, GONE, SQL, USAGE_COLS, USAGE_DIMS, Driver
from .tracing import Tracer


@dataclass(frozen=True, slots=True)
class User:
    """A user as one of its Forge keys sees it: the key's hash, prefix and scope come with it."""

    id: int
    name: str
    key_hash: str
    key_prefix: str
    providers: frozenset[str] | None = None  # the provider names the key may use; None: all


@dataclass(frozen=True, slots=True)
class ForgeKey:
    """A stored Forge key: its hash (never the key itself) and its scope."""

    id: int
    name: str
    key_prefix: str
    providers: tuple[str, ...] | None
    created_at: float
    key_hash: str


@dataclass(frozen=True, slots=True)
class ProviderRow:
    """A stored provider key, still encrypted: safe to cache, log or compare."""

    id: int
    provider: str
    kind: str
    encrypted_key: str
    base_url: str
    model_mapping: dict[str, str]
    updated_at: float
    cache_ttl: float | None = None  # the response cache's default TTL for this key's requests (None: opt-in only)


def _user(row: tuple | None) -> User | None:
    return None if row is None else User(row[0], row[1], row[2], row[3],
                                         None if row[4] is None else frozenset(orjson.loads(row[4])))


def _forge_key(row: tuple | None) -> ForgeKey | None:
    if row is None:
        return None
    return ForgeKey(row[0], row[1], row[2], None if row[3] is None else tuple(orjson.loads(row[3])), row[4], row[5])


def _scope(providers: list[str] | None) -> str | None:
    return None if providers is None else orjson.dumps(sorted(set(providers))).decode()


def _provider(row: tuple) -> ProviderRow:
    return ProviderRow(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5] or "{}"), row[6], row[7])


class Store:
    """The storage API on either database. Each method is exactly one SQL statement.

    Methods are coroutines because PostgreSQL's driver awaits its pool; SQLite's never suspends (a
    local indexed look-up is 6-25 us), which also means two SQLite loads can never interleave.
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.sql = driver.sql
        self._one, self._all, self._count = driver.one, driver.all, driver.count  # bound once: the hot path

    async def close(self) -> None:
        await self.driver.close()

    # users -----------------------------------------------------------------------------------

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        return _user(await self._one(self.sql.user_by_key_hash, (key_hash,)))

    async def create_user(self, name: str, key_hash: str, key_prefix: str) -> User:
        """Its first Forge key (unscoped, named 'default') is made in the same statement (``COPY_USER_KEYS``)."""
        now = time.time()
        return _user(await self._one(self.sql.create_user, (name, key_hash, key_prefix, now, now)))

    async def update_user(self, user_id: int, name: str) -> bool:
        return await self._count(self.sql.update_user, (name, time.time(), user_id)) > 0

    async def delete_user(self, user_id: int) -> bool:
        """The user's Forge keys and provider keys go in the same statement (ON DELETE CASCADE, a trigger on SQLite)."""
        return await self._count(self.sql.delete_user, (user_id,)) > 0

    # Forge keys ------------------------------------------------------------------------------

    async def forge_keys(self, user_id: int) -> list[ForgeKey]:
        return [_forge_key(r) for r in await self._all(self.sql.forge_keys, (user_id,))]

    async def add_forge_key(self, user_id: int, name: str, key_hash: str, key_prefix: str,
                            providers: list[str] | None) -> ForgeKey:
        return _forge_key(await self._one(self.sql.add_forge_key, (user_id, name, key_hash, key_prefix,
                                                                   _scope(providers), time.time())))

    async def update_forge_key(self, user_id: int, key_id: int, changes: dict[str, Any]) -> ForgeKey | None:
        """``changes`` maps ``name`` and/or ``providers`` to their new values; the others are kept."""
        values = {col: _scope(v) if col == "providers" else v for col, v in changes.items()}
        sets = ", ".join(self.sql.set_column.format(col) for col in values)  # column names come from code
        return _forge_key(await self._one(self.sql.update_forge_key.format(sets), (*values.values(), key_id, user_id)))

    async def reset_forge_key(self, user_id: int, old_hash: str, key_hash: str, key_prefix: str) -> ForgeKey | None:
        """A new secret for the key whose hash is ``old_hash`` (its name and scope stay)."""
        return _forge_key(await self._one(self.sql.reset_forge_key, (key_hash, key_prefix, user_id, old_hash)))

    async def delete_forge_key(self, user_id: int, key_id: int) -> str | None:
        """The revoked key's hash (what caches hold it under), or None if the user has no such key."""
        row = await self._one(self.sql.delete_forge_key, (key_id, user_id))
        return None if row is None else row[0]

    # provider keys ---------------------------------------------------------------------------

    async def provider_keys(self, user_id: int) -> list[ProviderRow]:
        return [_provider(r) for r in await self._all(self.sql.provider_keys, (user_id,))]

    async def add_provider_key(self, user_id: int, provider: str, kind: str, encrypted_key: str, base_url: str,
                               model_mapping: dict[str, str], cache_ttl: float | None = None) -> ProviderRow:
        now = time.time()
        try:
            mapping = orjson.dumps(model_mapping).decode()
            row = await self._one(self.sql.add_provider_key,
                                  (user_id, provider, kind, encrypted_key, base_url, mapping, cache_ttl, now, now))
        except Conflict:
            raise Conflict(f"provider {provider!r} already exists; use PUT to update it") from None
        return _provider(row)

    async def update_provider_key(self, user_id: int, provider: str, changes: dict[str, Any]) -> ProviderRow | None:
        """``changes`` maps column -> value for the fields given; the others are kept."""
        values = dict(changes)
        if "model_mapping" in values:
            values["model_mapping"] = orjson.dumps(values["model_mapping"]).decode()
        values["updated_at"] = time.time()
        sets = ", ".join(self.sql.set_column.format(col) for col in values)  # column names come from code, not input
        row = await self._one(self.sql.update_provider_key.format(sets), (*values.values(), user_id, provider))
        return None if row is None else _provider(row)

    async def delete_provider_key(self, user_id: int, provider: str) -> bool:
        return await self._count(self.sql.delete_provider_key, (user_id, provider)) > 0

    async def swap_encrypted_key(self, key_id: int, old: str, new: str) -> bool:
        """Compare-and-swap (key rotation): only if nobody changed the row since it was read."""
        return await self._count(self.sql.swap_encrypted_key, (new, key_id, old)) > 0

    # not on the request path -----------------------------------------------------------------

    async def all_encrypted_keys(self) -> list[tuple[int, int, str]]:
        return await self._all(self.sql.all_encrypted_keys, ())

    async def any_encrypted_key(self) -> str | None:
        row = await self._one(self.sql.any_encrypted_key, ())
        return None if row is None else row[0]

    async def usage_stats(self, user_id: int | None, since: float, until: float,
                          dims: Sequence[str]) -> list[dict[str, Any]]:
        """Usage of ``since <= created_at < until`` (one user's, or everyone's), summed per ``dims``
        (names of ``USAGE_DIMS``): one statement, over usage(user_id, created_at) or usage(created_at)."""
        exprs = [USAGE_DIMS[d] or self.driver.usage_day for d in dims]
        grouped = ", ".join(USAGE_DIMS[d] or d for d in dims)  # the inner query names the day "day"
        sql = self.sql.usage_stats.format(
            dims=grouped, p50=self.driver.usage_p50,
            columns=", ".join(e if USAGE_DIMS[d] else f"{e} AS {d}" for d, e in zip(dims, exprs)),
            rank=self.driver.usage_rank.format(partition=", ".join(exprs)),
            who="" if user_id is None else self.sql.usage_of_user)
        params = (since, until) if user_id is None else (user_id, since, until)
        names = (*dims, "requests", "errors", "prompt_tokens", "completion_tokens", "latency_p50_ms")
        return [dict(zip(names, row)) for row in await self._all(sql, params)]

    async def insert_usage(self, rows: list[tuple]) -> None:
        """One INSERT per flush (its text is the driver's): a batch costs one statement, not one per request."""
        if rows:
            await self._count(*self.driver.usage_insert(rows))

    async def append_invalidations(self, events: list[tuple[str, str]]) -> list[int]:
        if not events:
            return []
        now = time.time()
        sql = self.sql.append_invalidations.format(", ".join([self.sql.invalidation_row] * len(events)))
        return [r[0] for r in await self._all(sql, [v for kind, key in events for v in (kind, key, now)])]

    async def invalidations_after(self, last_id: int) -> list[tuple[int, str, str]]:
        return await self._all(self.sql.invalidations_after, (last_id,))

    async def last_invalidation_id(self) -> int:
        return (await self._one(self.sql.last_invalidation_id, ()))[0]

    async def prune_invalidations(self, older_than: float) -> None:
        await self._count(self.sql.prune_invalidations, (older_than,))

    async def ping(self) -> None:
        """``GET /ready``'s check: no request's read, so it counts as ``db_background_queries``."""
        await self.driver.ping()


# SQLite ----------------------------------------------------------------------------------------

_INSERT_USAGE = (f"INSERT INTO usage ({', '.join(USAGE_COLS)}) SELECT "
                 + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(USAGE_COLS))) + " FROM json_each(?)")
_UNIQUE = {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}


class SqliteDriver:
    """Runs statements on one sqlite-utils ``Database`` (see ``connect``); never suspends."""

    sql = SQL
    usage_day = "date(created_at, 'unixepoch')"
    # SQLite has no percentile: rank each group's latencies and average the middle one or two, which
    # is percentile_cont(0.5) exactly. Both windows are one spec, so one sort of the range's rows (by
    # group, latency) serves them; the GROUP BY sorts once more. O(n log n) in the rows of the range,
    # held in a temporary B-tree: fine for a user's usage, heavy for everyone's over a long range.
    usage_p50 = "AVG(CASE WHEN rn IN ((n + 1) / 2, (n + 2) / 2) THEN latency_ms END)"
    usage_rank = (", ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY latency_ms) AS rn,"
                  " COUNT(*) OVER (PARTITION BY {partition} ORDER BY latency_ms"
                  " ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS n")

    def __init__(self, db: sqlite_utils.Database, *, tracer: Tracer | None = None) -> None:
        self.db = db
        self._tracer = tracer

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode in _UNIQUE:
                raise Conflict(DUPLICATE) from None
            if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
                raise NotFound(GONE) from None
            raise

    async def one(self, sql: str, params: Sequence[Any]) -> tuple | None:
        return self._execute(sql, params).fetchone()

    async def all(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        return self._execute(sql, params).fetchall()

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        return self._execute(sql, params).rowcount

    @staticmethod
    def usage_insert(rows: list[tuple]) -> tuple[str, Sequence[Any]]:
        """The rows travel as one JSON parameter: a ``VALUES (?, ...), (?, ...)`` text per batch size
        would be a new statement for every size, and sqlite3's statement cache keeps 128 of them
        compiled (measured: +30 MB of RSS under a soak). This text never changes.
        """
        return _INSERT_USAGE, (orjson.dumps(rows).decode(),)

    async def ping(self) -> None:
        if self._tracer is not None:
            self._tracer.db_statement(self.sql.ping, background=True)
        # the raw connection: sqlite-utils' hook would count it as a request's read
        self.db.conn.execute(self.sql.ping).fetchone()

    async def close(self) -> None:
        self.db.conn.close()


def connect(path: str, *, tracer: Tracer | None, background: bool = False) -> sqlite_utils.Database:
    """One connection per process (and one more for background polling), counted by the tracer hook.

    The PRAGMAs run on the raw connection, before sqlite-utils' ``tracer=`` hook is installed:
    start-up statements are not request costs.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash (kill -9)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA recursive_triggers=on")
    hook = None
    if tracer is not None:
        def hook(sql: str, params: Any) -> None:
            tracer.db_statement(sql, background=background)

    return sqlite_utils.Database(conn, tracer=hook, recursive_triggers=False)


FORGE_KEYS = ("CREATE TABLE forge_keys (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id)"
              " ON DELETE CASCADE, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, key_prefix TEXT NOT NULL,"
              " providers TEXT, created_at REAL NOT NULL)")


def create_schema(db: sqlite_utils.Database) -> None:
    """Idempotent: a database made by an older version gets what it lacks (forge_keys, indexes)."""
    users = db["users"]
    if not users.exists():
        users.create(
            {"id": int, "name": str, "key_hash": str, "key_prefix": str, "created_at": float, "updated_at": float},
            pk="id", not_null={"name", "key_hash", "key_prefix"},
        )
        users.create_index(["key_hash"], unique=True)
    keys = db["provider_keys"]
    if not keys.exists():
        keys.create(
            {"id": int, "user_id": int, "provider": str, "kind": str, "encrypted_key": str, "base_url": str,
             "model_mapping": str, "created_at": float, "updated_at": float, "cache_ttl": float},
            pk="id", not_null={"user_id", "provider", "kind", "encrypted_key", "base_url"},
            foreign_keys=[("user_id", "users", "id")],
        )
        keys.create_index(["user_id", "provider"], unique=True)
    elif "cache_ttl" not in keys.columns_dict:  # a database from before the response cache
        keys.add_column("cache_ttl", float)
    if not db["usage"].exists():
        db["usage"].create(
            {"id": int, "user_id": int, "provider": str, "model": str, "status": int, "prompt_tokens": int,
             "completion_tokens": int, "latency_ms": float, "created_at": float},
            pk="id",
        )
    db.execute("CREATE INDEX IF NOT EXISTS usage_user_time ON usage (user_id, created_at)")
    db.execute("CREATE INDEX IF NOT EXISTS usage_time ON usage (created_at)")  # the admin's view of all users
    if not db["invalidations"].exists():
        db.execute(
            "CREATE TABLE invalidations (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " key TEXT NOT NULL, created_at REAL NOT NULL)"
        )
    # sqlite-utils' foreign_keys= declares the reference; deleting a user must also drop its keys
    # in the same statement, which ON DELETE CASCADE does (created by hand: sqlite-utils has no option).
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS users_delete_keys AFTER DELETE ON users BEGIN"
        " DELETE FROM provider_keys WHERE user_id = OLD.id; END"
    )
    # The copy of existing users' keys must run once, with the table's creation: one transaction,
    # taken for writing at once so that two processes starting together cannot both copy.
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db["forge_keys"].exists():
            db.execute(FORGE_KEYS)
            db.execute(COPY_USER_KEYS)
        db.execute("CREATE INDEX IF NOT EXISTS forge_keys_user ON forge_keys (user_id)")
        db.execute(f"CREATE TRIGGER IF NOT EXISTS users_first_key AFTER INSERT ON users BEGIN"
                   f" {COPY_USER_KEYS} WHERE id = NEW.id; END")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
