"""Bulk-create benchmark tenants straight in SQLite or PostgreSQL, and write the keys file Locust reads.

Seeding is not the request path, so it may batch: one transaction, ``executemany`` (SQLite) or
``COPY`` (PostgreSQL). It uses the gateway's own schema, key format and encryption
(``forge_ref.store``/``pg_store``, ``auth``, ``crypto``), so the server reads the rows exactly as
if they had come through the API. 100k users with 2.5 keys each on average take a few seconds
(about 2 s of Fernet encryption, then about 2 s to load SQLite or to COPY into PostgreSQL).

Provider keys per user (deterministic by user index ``i``), unless ``providers`` fixes them:

    i % 4 == 0  openai
    i % 4 == 1  openai, anthropic
    i % 4 == 2  openai, gemini
    i % 4 == 3  openai, anthropic, gemini

The keys file is one JSON document::

    {"schema": 1, "mock_url": "...", "tenants": [{"id": 1, "key": "forge-...", "providers": ["openai"]}, ...]}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from forge_ref import crypto as crypto_mod
from forge_ref import store as store_mod
from forge_ref.auth import display_prefix, hash_key, new_key
from forge_ref.pg_store import create_schema as create_pg_schema
from forge_ref.pg_store import is_postgres
from forge_ref.tracing import Tracer

KINDS = ("openai", "anthropic", "gemini")
BASE_PATHS = {"openai": "/openai/v1", "anthropic": "/anthropic", "gemini": "/gemini"}
MIXED = (("openai",), ("openai", "anthropic"), ("openai", "gemini"), ("openai", "anthropic", "gemini"))


def providers_for(index: int, fixed: tuple[str, ...] | None) -> tuple[str, ...]:
    return fixed if fixed else MIXED[index % len(MIXED)]


def parse_providers(spec: str | None) -> tuple[str, ...] | None:
    """``None``/``"mixed"`` -> the 1-3 pattern above; else a comma list such as ``openai,gemini``."""
    if not spec or spec == "mixed":
        return None
    kinds = tuple(p.strip() for p in spec.split(",") if p.strip())
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown provider kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    return kinds


def build_rows(users: int, mock_url: str, crypto: crypto_mod.Crypto, *, providers: str | None = None,
               name_prefix: str = "tenant", start_id: int = 1) -> tuple[dict, list[tuple], list[tuple]]:
    """(keys document, user rows, provider-key rows): the encrypted rows any store can load in bulk."""
    mock_url = mock_url.rstrip("/")
    fixed = parse_providers(providers)
    now = time.time()
    tenants, user_rows, key_rows = [], [], []
    for i in range(users):
        uid = start_id + i
        key = new_key()
        kinds = providers_for(i, fixed)
        user_rows.append((uid, f"{name_prefix}-{uid:06d}", hash_key(key), display_prefix(key), now, now))
        for kind in kinds:
            # The mock accepts any key except "invalid"/"sk-invalid..."; a distinct value per row
            # keeps ciphertexts realistic (no two rows alike).
            key_rows.append((uid, kind, kind, crypto.encrypt(f"sk-bench-{kind}-{uid}"), mock_url + BASE_PATHS[kind],
                             "{}", now, now))
        tenants.append({"id": uid, "key": key, "providers": list(kinds)})
    return {"schema": 1, "mock_url": mock_url, "tenants": tenants}, user_rows, key_rows


USER_COLS = ("id", "name", "key_hash", "key_prefix", "created_at", "updated_at")
KEY_COLS = ("user_id", "provider", "kind", "encrypted_key", "base_url", "model_mapping", "created_at", "updated_at")


def seed(db_path: str | os.PathLike, users: int, mock_url: str, out: str | os.PathLike | None = None, *,
         providers: str | None = None, name_prefix: str = "tenant", encryption_key: str | None = None) -> dict:
    """Create ``users`` users with provider keys pointing at ``mock_url``; return the keys document.

    ``db_path`` is a SQLite file or a ``postgresql://`` URL (which needs an encryption key:
    ``encryption_key`` or ``FORGE_ENCRYPTION_KEY``). The key defaults to ``FORGE_ENCRYPTION_KEY``,
    else (SQLite only) the key file beside the DB."""
    db_path = str(db_path)
    key = os.environ.get("FORGE_ENCRYPTION_KEY", "") if encryption_key is None else encryption_key
    if is_postgres(db_path):
        if not key.strip():
            raise SystemExit("seeding PostgreSQL needs FORGE_ENCRYPTION_KEY (the servers must use the same key)")
        crypto = crypto_mod.Crypto(crypto_mod.load_keys(key, db_path), Tracer())
        create_pg_schema(db_path)
        import psycopg

        with psycopg.connect(db_path) as conn:
            start_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM users").fetchone()[0] + 1
        doc, user_rows, key_rows = build_rows(users, mock_url, crypto, providers=providers, name_prefix=name_prefix,
                                              start_id=start_id)
        load_postgres(db_path, user_rows, key_rows)
    else:
        db = store_mod.connect(db_path, tracer=None)
        store_mod.create_schema(db)
        crypto = crypto_mod.Crypto(crypto_mod.load_keys(key, db_path), Tracer())
        start_id = db.conn.execute("SELECT COALESCE(MAX(id), 0) FROM users").fetchone()[0] + 1
        doc, user_rows, key_rows = build_rows(users, mock_url, crypto, providers=providers, name_prefix=name_prefix,
                                              start_id=start_id)
        load_sqlite(db, user_rows, key_rows)
    if out is not None:
        write_keys(doc, out)
    return doc


def load_sqlite(db, user_rows: list[tuple], key_rows: list[tuple]) -> None:
    """Insert the rows in one transaction (``executemany``), then checkpoint so the file alone is complete."""
    conn = db.conn
    conn.execute("BEGIN")
    try:
        conn.executemany(f"INSERT INTO users ({', '.join(USER_COLS)}) VALUES ({', '.join('?' * len(USER_COLS))})",
                         user_rows)
        conn.executemany(f"INSERT INTO provider_keys ({', '.join(KEY_COLS)}) VALUES "
                         f"({', '.join('?' * len(KEY_COLS))})", key_rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is complete: safe to copy
    conn.close()


def load_postgres(url: str, user_rows: list[tuple], key_rows: list[tuple]) -> None:
    """COPY the rows into an existing schema in one transaction, then move the id sequences past them
    (the server's own inserts must not collide). 100k users with 250k keys take a few seconds."""
    import psycopg

    with psycopg.connect(url) as conn:  # one transaction: committed on leaving the block
        with conn.cursor() as cur:
            for table, cols, rows in (("users", USER_COLS, user_rows), ("provider_keys", KEY_COLS, key_rows)):
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            for table in ("users", "provider_keys"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))")
            cur.execute("ANALYZE users")
            cur.execute("ANALYZE provider_keys")


def write_keys(doc: dict, out: str | os.PathLike) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, path)


def copy_db(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """A seeded DB plus its encryption-key file, so each run starts from the same state."""
    import shutil

    shutil.copyfile(src, dst)
    key = crypto_mod.key_file_for(str(src))
    if key.exists():
        shutil.copyfile(key, crypto_mod.key_file_for(str(dst)))
        os.chmod(crypto_mod.key_file_for(str(dst)), 0o600)
