"""Bulk-create benchmark tenants straight in SQLite, and write the keys file Locust reads.

Seeding is not the request path, so it may batch: one transaction, ``executemany``. It uses the
gateway's own schema, key format and encryption (``forge_ref.store``, ``auth``, ``crypto``), so
the server reads the rows exactly as if they had come through the API. 100k users with 2 keys
each on average take a few seconds, most of it Fernet encryption.

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
from forge_ref.counters import SharedCounters

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


def seed(db_path: str | os.PathLike, users: int, mock_url: str, out: str | os.PathLike | None = None, *,
         providers: str | None = None, name_prefix: str = "tenant") -> dict:
    """Create ``users`` users with provider keys pointing at ``mock_url``; return the keys document."""
    db_path = str(db_path)
    mock_url = mock_url.rstrip("/")
    fixed = parse_providers(providers)
    db = store_mod.connect(db_path, counters=None)
    store_mod.create_schema(db)
    keys = crypto_mod.load_keys(os.environ.get("FORGE_ENCRYPTION_KEY", ""), db_path)
    crypto = crypto_mod.Crypto(keys, SharedCounters(1))
    conn = db.conn
    start_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM users").fetchone()[0] + 1
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
    conn.execute("BEGIN")
    try:
        conn.executemany(
            "INSERT INTO users (id, name, key_hash, key_prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            user_rows)
        conn.executemany(
            "INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", key_rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone is complete: safe to copy
    conn.close()
    doc = {"schema": 1, "mock_url": mock_url, "tenants": tenants}
    if out is not None:
        write_keys(doc, out)
    return doc


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
