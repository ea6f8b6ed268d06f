"""The SQL the store sends, written once, and the contract of the driver that runs it.

``Store`` (``store``) holds the methods and the row mapping; a driver per database (``store``'s
SQLite one, ``pg_store``'s PostgreSQL one) knows only how to run one statement (``one`` row,
``all`` rows, the row ``count``), how its unique violation looks (raised as ``Conflict(DUPLICATE)``),
and the statements that truly differ (the usage batch; the schema, made by each module).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol, Sequence

USER_COLS = "id, name, key_hash, key_prefix"
PROVIDER_COLS = "id, provider, kind, encrypted_key, base_url, model_mapping, updated_at, cache_ttl"
USAGE_COLS = ("user_id", "provider", "model", "status", "prompt_tokens", "completion_tokens", "latency_ms", "created_at")


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement ``Store`` sends, written once with sqlite3's ``?`` marks.

    ``{}`` fields are filled per call (a column per change, a row per event). ``pyformat()`` is the
    same set for psycopg, made once by its driver at import.
    """

    user_by_key_hash: str = f"SELECT {USER_COLS} FROM users WHERE key_hash = ?"
    create_user: str = ("INSERT INTO users (name, key_hash, key_prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                        f" RETURNING {USER_COLS}")
    update_user: str = f"UPDATE users SET name = ?, updated_at = ? WHERE id = ? RETURNING {USER_COLS}"
    reset_user_key: str = (f"UPDATE users SET key_hash = ?, key_prefix = ?, updated_at = ? WHERE id = ?"
                           f" RETURNING {USER_COLS}")
    delete_user: str = "DELETE FROM users WHERE id = ?"
    provider_keys: str = f"SELECT {PROVIDER_COLS} FROM provider_keys WHERE user_id = ? ORDER BY provider"
    add_provider_key: str = ("INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                             f" cache_ttl, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {PROVIDER_COLS}")
    update_provider_key: str = f"UPDATE provider_keys SET {{}} WHERE user_id = ? AND provider = ? RETURNING {PROVIDER_COLS}"
    set_column: str = "{} = ?"
    delete_provider_key: str = "DELETE FROM provider_keys WHERE user_id = ? AND provider = ?"
    swap_encrypted_key: str = "UPDATE provider_keys SET encrypted_key = ? WHERE id = ? AND encrypted_key = ?"
    all_encrypted_keys: str = "SELECT id, user_id, encrypted_key FROM provider_keys ORDER BY id"
    any_encrypted_key: str = "SELECT encrypted_key FROM provider_keys LIMIT 1"
    append_invalidations: str = "INSERT INTO invalidations (kind, key, created_at) VALUES {} RETURNING id"
    invalidation_row: str = "(?, ?, ?)"
    invalidations_after: str = "SELECT id, kind, key FROM invalidations WHERE id > ? ORDER BY id"
    last_invalidation_id: str = "SELECT COALESCE(MAX(id), 0) FROM invalidations"
    prune_invalidations: str = "DELETE FROM invalidations WHERE created_at < ?"

    def pyformat(self) -> Statements:
        """``%`` doubled, each ``?`` made ``%s`` (so no statement may hold a ``?`` other than a mark)."""
        return Statements(**{f.name: getattr(self, f.name).replace("%", "%%").replace("?", "%s")
                             for f in fields(self)})


SQL = Statements()


class Driver(Protocol):
    """What ``Store`` needs from a database. Each call runs (and counts) exactly one statement."""

    sql: Statements  # in the driver's parameter style

    async def one(self, sql: str, params: Sequence[Any]) -> tuple | None: ...
    async def all(self, sql: str, params: Sequence[Any]) -> list[tuple]: ...
    async def count(self, sql: str, params: Sequence[Any]) -> int: ...
    def usage_insert(self, rows: list[tuple]) -> tuple[str, Sequence[Any]]: ...  # the batch's text and parameters
    async def close(self) -> None: ...


DUPLICATE = "this would duplicate an existing entry"  # a driver's Conflict; never the DB's text (it may quote values)
# A write that names a user who is gone: deleted by another process meanwhile (its caches learn it
# within the invalidation bound). A driver's NotFound, not a 500.
GONE = "user no longer exists"
