"""The SQL the store sends, written once, and the contract of the driver that runs it.

``Store`` (``store``) holds the methods and the row mapping; a driver per database (``store``'s
SQLite one, ``pg_store``'s PostgreSQL one) knows only how to run one statement (``one`` row,
``all`` rows, the row ``count``), how its unique violation looks (raised as ``Conflict(DUPLICATE)``),
and the statements that truly differ (the usage batch; the median and the day of usage
statistics; the schema, made by each module).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol, Sequence

USER_COLS = "id, name, key_hash, key_prefix"
FORGE_KEY_COLS = "id, name, key_prefix, providers, created_at, key_hash"
PROVIDER_COLS = "id, provider, kind, encrypted_key, base_url, model_mapping, updated_at, cache_ttl"
USAGE_COLS = ("user_id", "provider", "model", "status", "prompt_tokens", "completion_tokens", "latency_ms",
              "created_at")


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement ``Store`` sends, written once with sqlite3's ``?`` marks.

    ``{}`` fields are filled per call (a column per change, a row per event). ``pyformat()`` is the
    same set for psycopg, made once by its driver at import.
    """

    # The one look-up on the request path: the key's user and scope, one indexed join.
    user_by_key_hash: str = ("SELECT u.id, u.name, k.key_hash, k.key_prefix, k.providers FROM forge_keys AS k"
                             " JOIN users AS u ON u.id = k.user_id WHERE k.key_hash = ?")
    create_user: str = ("INSERT INTO users (name, key_hash, key_prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                        f" RETURNING {USER_COLS}, NULL")
    update_user: str = "UPDATE users SET name = ?, updated_at = ? WHERE id = ?"
    delete_user: str = "DELETE FROM users WHERE id = ?"
    forge_keys: str = f"SELECT {FORGE_KEY_COLS} FROM forge_keys WHERE user_id = ? ORDER BY id"
    add_forge_key: str = ("INSERT INTO forge_keys (user_id, name, key_hash, key_prefix, providers, created_at)"
                          f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {FORGE_KEY_COLS}")
    update_forge_key: str = f"UPDATE forge_keys SET {{}} WHERE id = ? AND user_id = ? RETURNING {FORGE_KEY_COLS}"
    reset_forge_key: str = ("UPDATE forge_keys SET key_hash = ?, key_prefix = ? WHERE user_id = ? AND key_hash = ?"
                            f" RETURNING {FORGE_KEY_COLS}")
    delete_forge_key: str = "DELETE FROM forge_keys WHERE id = ? AND user_id = ? RETURNING key_hash"
    provider_keys: str = f"SELECT {PROVIDER_COLS} FROM provider_keys WHERE user_id = ? ORDER BY provider"
    add_provider_key: str = ("INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url,"
                             " model_mapping, cache_ttl, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                             f" RETURNING {PROVIDER_COLS}")
    update_provider_key: str = ("UPDATE provider_keys SET {} WHERE user_id = ? AND provider = ?"
                                f" RETURNING {PROVIDER_COLS}")
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
    # Usage per group (``{dims}``, the grouped columns). The median needs what each driver has
    # (``Driver.usage_p50`` and the ``usage_rank`` columns it reads), the day its date function.
    usage_stats: str = ("SELECT {dims}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),"
                        " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), {p50}"
                        " FROM (SELECT {columns}, status, prompt_tokens, completion_tokens, latency_ms{rank}"
                        " FROM usage WHERE {who}created_at >= ? AND created_at < ?) AS r"
                        " GROUP BY {dims} ORDER BY {dims}")
    usage_of_user: str = "user_id = ? AND "
    ping: str = "SELECT 1"

    def pyformat(self) -> Statements:
        """``%`` doubled, each ``?`` made ``%s`` (so no statement may hold a ``?`` other than a mark)."""
        return Statements(**{f.name: getattr(self, f.name).replace("%", "%%").replace("?", "%s")
                             for f in fields(self)})


SQL = Statements()


class Driver(Protocol):
    """What ``Store`` needs from a database. Each call runs (and counts) exactly one statement."""

    sql: Statements  # in the driver's parameter style
    usage_day: str  # the UTC day of ``created_at`` (unix seconds) as 'YYYY-MM-DD'
    usage_p50: str  # the median of latency_ms in a group of ``usage_stats``
    usage_rank: str  # columns the median reads, ranked within ``{partition}`` (or nothing)

    async def one(self, sql: str, params: Sequence[Any]) -> tuple | None: ...
    async def all(self, sql: str, params: Sequence[Any]) -> list[tuple]: ...
    async def count(self, sql: str, params: Sequence[Any]) -> int: ...
    def usage_insert(self, rows: list[tuple]) -> tuple[str, Sequence[Any]]: ...  # the batch's text and parameters
    async def ping(self) -> None: ...  # ``sql.ping`` for readiness, counted as a background query
    async def close(self) -> None: ...


# Every Forge key is a row of forge_keys. A user's first key (users.key_hash, the key it was created
# with) is copied in by this statement: for every existing user once, when the table is created
# (run again it would bring reset keys back), and for each new user by a trigger (``WHERE id = NEW.id``),
# so whatever creates a user (the API, the CLI, a bulk seed) creates its key in the same statement.
COPY_USER_KEYS = ("INSERT INTO forge_keys (user_id, name, key_hash, key_prefix, providers, created_at)"
                  " SELECT id, 'default', key_hash, key_prefix, NULL, COALESCE(created_at, 0) FROM users")
# name -> column (day: the driver's date function)
USAGE_DIMS = {"user": "user_id", "provider": "provider", "model": "model", "day": None}

DUPLICATE = "this would duplicate an existing entry"  # a driver's Conflict; never the DB's text (it may quote values)
# A write that names a user who is gone: deleted by another process meanwhile (its caches learn it
# within the invalidation bound). A driver's NotFound, not a 500.
GONE = "user no longer exists"
