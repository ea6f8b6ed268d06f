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
