"""What a job's server stores in and caches with: seeded tenants, PostgreSQL schemas, Redis prefixes.

Each profile is seeded once per run (``Seeds``): a SQLite file that every SQLite job copies, the
keys file Locust reads, and the encrypted rows that every PostgreSQL job loads with COPY into a
schema of its own (``bench_<id>``, dropped afterwards). A Redis job gets a key prefix of its own
(deleted afterwards). ``check_services`` asks PostgreSQL and Redis before a run that needs them.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from .plan import Job
from .profiles import PROFILES
from .seed import build_rows, load_postgres, load_sqlite, write_keys


@dataclass(frozen=True)
class Seed:
    db: Path  # seeded SQLite file (with its encryption-key file beside it): copy it, do not serve it
    keys: Path  # keys file for the locustfile
    doc: dict  # the keys document: tenants, their keys and providers
    rows: tuple[list[tuple], list[tuple]]  # (user rows, provider-key rows), for PostgreSQL


class Seeds:
    """The seeded tenants of each profile, built on first use and kept for the run."""

    def __init__(self, *, work: Path, keys_dir: Path, mock_url: str, encryption_key: str,
                 tenants_of: Callable[[str], int]) -> None:
        self.work, self.keys_dir, self.mock_url = work, keys_dir, mock_url
        self.encryption_key, self.tenants_of = encryption_key, tenants_of
        self._seeds: dict[str, Seed] = {}

    def __getitem__(self, profile: str) -> Seed:
        if profile not in self._seeds:
            self._seeds[profile] = self._build(profile)
        return self._seeds[profile]

    def _build(self, profile: str) -> Seed:
        from forge_ref import crypto as crypto_mod
        from forge_ref import store as store_mod
        from forge_ref.tracing import Tracer

        crypto = crypto_mod.Crypto([self.encryption_key], Tracer())
        doc, user_rows, key_rows = build_rows(self.tenants_of(profile), self.mock_url, crypto,
                                              providers=PROFILES[profile].providers)
        db = self.work / f"seed-{profile}.db"
        sqlite_db = store_mod.connect(str(db), tracer=None)
        store_mod.create_schema(sqlite_db)
        load_sqlite(sqlite_db, user_rows, key_rows)
        keys = self.keys_dir / f"keys-{profile}.json"
        write_keys(doc, keys)
        return Seed(db, keys, doc, (user_rows, key_rows))


def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=' + schema)}"


def create_pg_schema(base_url: str, seed: Seed) -> tuple[str, str]:
    """A fresh schema holding the seeded rows: (URL with that search_path, schema name)."""
    import psycopg

    from forge_ref.pg_store import create_schema

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_schema_url(base_url, schema)
    create_schema(url)
    load_postgres(url, *seed.rows)
    return url, schema


def drop_pg_schema(base_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def redis_prefix() -> str:
    """A job's own Redis namespace."""
    return f"forge-bench:{uuid.uuid4().hex[:10]}:"


def clear_redis(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``; return how many."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        n = 0
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                n += client.delete(*batch)
                batch = []
        if batch:
            n += client.delete(*batch)
        return n
    finally:
        client.close()


def check_services(jobs: list[Job], postgres_url: str, redis_url: str, *, optional: bool = False) -> list[Job]:
    """The jobs whose PostgreSQL and Redis answer. A job that needs one that does not answer stops the
    run early, with the URL; with ``optional`` (the extra job of ``--quick``) it is left out, with a warning."""
    problems = {}
    if any(j.store == "postgres" for j in jobs):
        import psycopg

        try:
            psycopg.connect(postgres_url, connect_timeout=3).close()
        except psycopg.Error as exc:
            problems["postgres"] = f"PostgreSQL at {postgres_url} does not answer ({exc}); set --postgres-url"
    if any(j.backend == "redis" for j in jobs):
        import redis

        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            problems["redis"] = f"Redis at {redis_url} does not answer ({exc}); set --redis-url"
    if not problems:
        return jobs
    if not optional:
        raise SystemExit("; ".join(problems.values()))
    for text in problems.values():
        sys.stderr.write(f"skipping the PostgreSQL + Redis job of --quick: {text}\n")
    return [j for j in jobs if j.store not in problems and j.backend not in problems]
