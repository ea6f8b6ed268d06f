"""SQLite storage through sqlite-utils: the schema, and one SQL statement per method.

Every statement passes ``Database(tracer=...)``, the one place DB costs are counted: reads
(SELECT) as ``db_queries``, everything else as ``db_writes``. Methods use ``db.execute`` with a
single statement: sqlite-utils' ``table.get()`` / ``rows_where()`` issue schema look-ups too
(4-6 statements, measured), and ``db.query()`` wraps each read in a SAVEPOINT pair.

The connection is opened in autocommit mode (``isolation_level=None``): each statement is its
own transaction, so ``INSERT ... RETURNING`` commits as soon as its row is fetched.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Iterable

import orjson
import sqlite_utils

from .tracing import Tracer
from .errors import Conflict


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    key_hash: str
    key_prefix: str


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


_USER_COLS = "id, name, key_hash, key_prefix"
_PROVIDER_COLS = "id, provider, kind, encrypted_key, base_url, model_mapping, updated_at"
USAGE_COLS = ("user_id", "provider", "model", "status", "prompt_tokens", "completion_tokens", "latency_ms", "created_at")
_INSERT_USAGE = (f"INSERT INTO usage ({', '.join(USAGE_COLS)}) SELECT "
                 + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(USAGE_COLS))) + " FROM json_each(?)")


def _user(row: tuple | None) -> User | None:
    return None if row is None else User(*row)


def _provider(row: tuple) -> ProviderRow:
    return ProviderRow(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5] or "{}"), row[6])


def update_values(changes: dict[str, Any]) -> dict[str, Any]:
    """Column -> stored value for a provider-key update (both stores): JSON mapping, fresh updated_at."""
    values = dict(changes)
    if "model_mapping" in values:
        values["model_mapping"] = orjson.dumps(values["model_mapping"]).decode()
    values["updated_at"] = time.time()
    return values


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


def create_schema(db: sqlite_utils.Database) -> None:
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
             "model_mapping": str, "created_at": float, "updated_at": float},
            pk="id", not_null={"user_id", "provider", "kind", "encrypted_key", "base_url"},
            foreign_keys=[("user_id", "users", "id")],
        )
        keys.create_index(["user_id", "provider"], unique=True)
    if not db["usage"].exists():
        db["usage"].create(
            {"id": int, "user_id": int, "provider": str, "model": str, "status": int, "prompt_tokens": int,
             "completion_tokens": int, "latency_ms": float, "created_at": float},
            pk="id",
        )
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


class Store:
    """The storage API (SQLite). Each method is exactly one SQL statement.

    Methods are coroutines so that this store and the PostgreSQL one (``pg_store``) share one
    interface; on SQLite they never suspend (a local indexed look-up is 6-25 us), which also
    means two SQLite loads can never interleave.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    async def close(self) -> None:
        self.db.conn.close()

    def _one(self, sql: str, params: Iterable[Any]) -> tuple | None:
        return self.db.execute(sql, params).fetchone()

    # users -----------------------------------------------------------------------------------

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        return _user(self._one(f"SELECT {_USER_COLS} FROM users WHERE key_hash = ?", (key_hash,)))

    async def create_user(self, name: str, key_hash: str, key_prefix: str) -> User:
        now = time.time()
        return _user(self._one(
            f"INSERT INTO users (name, key_hash, key_prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
            f" RETURNING {_USER_COLS}", (name, key_hash, key_prefix, now, now)))

    async def update_user(self, user_id: int, name: str) -> User | None:
        return _user(self._one(
            f"UPDATE users SET name = ?, updated_at = ? WHERE id = ? RETURNING {_USER_COLS}",
            (name, time.time(), user_id)))

    async def reset_user_key(self, user_id: int, key_hash: str, key_prefix: str) -> User | None:
        return _user(self._one(
            f"UPDATE users SET key_hash = ?, key_prefix = ?, updated_at = ? WHERE id = ? RETURNING {_USER_COLS}",
            (key_hash, key_prefix, time.time(), user_id)))

    async def delete_user(self, user_id: int) -> bool:
        return self.db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

    # provider keys ---------------------------------------------------------------------------

    async def provider_keys(self, user_id: int) -> list[ProviderRow]:
        cur = self.db.execute(
            f"SELECT {_PROVIDER_COLS} FROM provider_keys WHERE user_id = ? ORDER BY provider", (user_id,))
        return [_provider(r) for r in cur.fetchall()]

    async def add_provider_key(self, user_id: int, provider: str, kind: str, encrypted_key: str, base_url: str,
                         model_mapping: dict[str, str]) -> ProviderRow:
        now = time.time()
        try:
            row = self._one(
                "INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                f" created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_PROVIDER_COLS}",
                (user_id, provider, kind, encrypted_key, base_url, orjson.dumps(model_mapping).decode(), now, now))
        except sqlite3.IntegrityError:
            raise Conflict(f"provider {provider!r} already exists; use PUT to update it") from None
        return _provider(row)

    async def update_provider_key(self, user_id: int, provider: str, changes: dict[str, Any]) -> ProviderRow | None:
        """``changes`` maps column -> value for the fields given; the others are kept."""
        changes = update_values(changes)
        sets = ", ".join(f"{col} = ?" for col in changes)  # column names come from code, not input
        row = self._one(
            f"UPDATE provider_keys SET {sets} WHERE user_id = ? AND provider = ? RETURNING {_PROVIDER_COLS}",
            (*changes.values(), user_id, provider))
        return None if row is None else _provider(row)

    async def delete_provider_key(self, user_id: int, provider: str) -> bool:
        return self.db.execute(
            "DELETE FROM provider_keys WHERE user_id = ? AND provider = ?", (user_id, provider)).rowcount > 0

    async def swap_encrypted_key(self, key_id: int, old: str, new: str) -> bool:
        """Compare-and-swap (key rotation): only if nobody changed the row since it was read."""
        return self.db.execute("UPDATE provider_keys SET encrypted_key = ? WHERE id = ? AND encrypted_key = ?",
                               (new, key_id, old)).rowcount > 0

    # not on the request path -----------------------------------------------------------------

    async def all_encrypted_keys(self) -> list[tuple[int, int, str]]:
        return self.db.execute("SELECT id, user_id, encrypted_key FROM provider_keys ORDER BY id").fetchall()

    async def any_encrypted_key(self) -> str | None:
        row = self._one("SELECT encrypted_key FROM provider_keys LIMIT 1", ())
        return None if row is None else row[0]

    async def insert_usage(self, rows: list[tuple]) -> None:
        """One INSERT per flush: a batch costs one statement, not one per request.

        The rows travel as one JSON parameter: a ``VALUES (?, ...), (?, ...)`` text per batch size
        would be a new statement for every size, and sqlite3's statement cache keeps 128 of them
        compiled (measured: +30 MB of RSS under a soak). This text never changes.
        """
        if not rows:
            return
        self.db.execute(_INSERT_USAGE, (orjson.dumps(rows).decode(),))

    async def append_invalidations(self, events: list[tuple[str, str]]) -> list[int]:
        if not events:
            return []
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO invalidations (kind, key, created_at) VALUES " + ", ".join(["(?, ?, ?)"] * len(events))
            + " RETURNING id", [v for kind, key in events for v in (kind, key, now)])
        return [r[0] for r in cur.fetchall()]

    async def invalidations_after(self, last_id: int) -> list[tuple[int, str, str]]:
        return self.db.execute(
            "SELECT id, kind, key FROM invalidations WHERE id > ? ORDER BY id", (last_id,)).fetchall()

    async def last_invalidation_id(self) -> int:
        return self._one("SELECT COALESCE(MAX(id), 0) FROM invalidations", ())[0]

    async def prune_invalidations(self, older_than: float) -> None:
        self.db.execute("DELETE FROM invalidations WHERE created_at < ?", (older_than,))
