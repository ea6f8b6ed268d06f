"""What a benchmark job stores in and caches with: seeds, PostgreSQL schemas, Redis prefixes."""

from __future__ import annotations

import sqlite3

import pytest
from cryptography.fernet import Fernet

from benchmarks import infra
from benchmarks.plan import Job


def _seeds(tmp_path, tenants: int = 12, asked: list | None = None) -> infra.Seeds:
    def tenants_of(profile: str) -> int:
        if asked is not None:
            asked.append(profile)
        return tenants

    (tmp_path / "work").mkdir()
    return infra.Seeds(work=tmp_path / "work", keys_dir=tmp_path / "raw", mock_url="http://127.0.0.1:9",
                       encryption_key=Fernet.generate_key().decode(), tenants_of=tenants_of)


def test_seeds_are_built_once_per_profile_with_the_profiles_providers(tmp_path):
    asked = []
    seeds = _seeds(tmp_path, asked=asked)
    steady = seeds["steady"]
    assert seeds["steady"] is steady and asked == ["steady"]
    assert steady.keys == tmp_path / "raw" / "keys-steady.json" and steady.keys.exists()
    assert {tuple(t["providers"]) for t in steady.doc["tenants"]} == {("openai", "anthropic", "gemini")}
    conn = sqlite3.connect(steady.db)
    assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 12
    assert conn.execute("SELECT COUNT(*) FROM provider_keys").fetchone()[0] == 36
    users, keys = steady.rows
    assert (len(users), len(keys)) == (12, 36)


def test_a_job_schema_holds_the_seeded_rows_until_dropped(tmp_path, pg_url):
    import psycopg

    seed = _seeds(tmp_path, tenants=5)["mixed"]
    url, schema = infra.create_pg_schema(pg_url, seed)
    try:
        assert schema.startswith("bench_") and "search_path" in url.replace("%3D", "=")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 5
            assert conn.execute("SELECT COUNT(*) FROM provider_keys").fetchone()[0] == len(seed.rows[1])
    finally:
        infra.drop_pg_schema(pg_url, schema)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None


def test_clearing_a_redis_prefix_deletes_only_that_jobs_keys(redis_url):
    import redis

    mine, other = infra.redis_prefix(), infra.redis_prefix()
    assert mine != other and mine.startswith("forge-bench:")
    client = redis.Redis.from_url(redis_url)
    try:
        client.mset({f"{mine}{i}": i for i in range(2500)} | {f"{other}keep": 1})
        assert infra.clear_redis(redis_url, mine) == 2500
        assert not list(client.scan_iter(match=mine + "*"))
        assert client.get(f"{other}keep") == b"1"
    finally:
        client.delete(f"{other}keep")
        client.close()


def test_check_services_stops_a_run_that_needs_a_dead_service_or_drops_optional_jobs(pg_url, redis_url, capsys):
    dead_pg, dead_redis = "postgresql://postgres@127.0.0.1:1/postgres", "redis://127.0.0.1:1/0"
    local = Job("forge-ref", "steady", "all")
    shared = Job("forge-ref", "steady", "all", "postgres+redis", (), "postgres", "redis")
    assert infra.check_services([local, shared], pg_url, redis_url) == [local, shared]
    assert infra.check_services([local], dead_pg, dead_redis) == [local]  # nothing asked
    with pytest.raises(SystemExit, match="127.0.0.1:1"):
        infra.check_services([local, shared], dead_pg, redis_url)
    assert infra.check_services([local, shared], pg_url, dead_redis, optional=True) == [local]
    assert "Redis at redis://127.0.0.1:1/0 does not answer" in capsys.readouterr().err
