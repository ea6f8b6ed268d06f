import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import MockProcess  # noqa: E402


@pytest.fixture(scope="session")
def mock():
    m = MockProcess()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def mock_url():
    """A mock of the test module's own, for tests that read its exact answers and counts."""
    m = MockProcess()
    yield m.url
    # Faults (drops, hangs, client timeouts) must not make the server log errors.
    assert "Traceback" not in m.stop()


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: REDIS_URL, else 127.0.0.1:6379, else one started on a free port.

    Tests that need Redis say so by taking this fixture. Without any Redis they skip, except
    with FORGE_REQUIRE_SERVICES=1 (CI), where they fail.
    """
    import os
    import shutil

    from support import RedisServer

    for url in (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/0"):
        if url and _redis_answers(url):
            yield url
            return
    if shutil.which("redis-server"):
        server = RedisServer()
        yield server.url
        server.stop()
        return
    if os.environ.get("FORGE_REQUIRE_SERVICES") == "1":
        pytest.fail("Redis is required (FORGE_REQUIRE_SERVICES=1) but none answers and redis-server is missing")
    pytest.skip("needs Redis: set REDIS_URL or install redis-server")


@pytest.fixture
def prefix(redis_url):
    """A Redis key prefix of the test's own; its keys are deleted afterwards."""
    import uuid

    import redis

    p = f"forge-test:{uuid.uuid4().hex[:8]}:"
    yield p
    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(p + "*"):
        r.delete(key)


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL: FORGE_TEST_POSTGRES_URL, else the server on 127.0.0.1:5432.

    Without one these tests skip, except with FORGE_REQUIRE_SERVICES=1 (CI), where they fail.
    """
    import os

    import psycopg

    url = os.environ.get("FORGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        if os.environ.get("FORGE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is required (FORGE_REQUIRE_SERVICES=1) but {url} does not answer")
        pytest.skip("needs PostgreSQL: set FORGE_TEST_POSTGRES_URL")
    return url


@pytest.fixture
def pg_db(pg_url):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import uuid
    from urllib.parse import quote

    import psycopg

    schema = "forge_test_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options={quote('-csearch_path=' + schema)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
