"""Test support: real servers on loopback (the gateway in a thread, the mock as a process)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from forge_ref.app import build_gateway, make_app, prepare_storage, start_background
from forge_ref.cache import MISSING
from forge_ref.settings import Settings

ADMIN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class MockProcess:
    """The mock provider as a real process on a free port (``--port 0``: it announces the port).

    ``command`` is what follows the interpreter: ``python -m forge_mock`` by default, or the
    ``forge-ref mock-provider`` CLI. stderr goes to a temp file (a pipe nobody reads could fill
    up and stall the server); ``stop()`` returns what was logged there.
    """

    def __init__(self, *args: str, command: tuple[str, ...] = ("-m", "forge_mock")) -> None:
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, *command, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(15)
        if not line or "listening on http://" not in line[0]:
            self.stop()
            raise RuntimeError(f"mock did not start: {line!r} {self.stderr()}")
        self.url = line[0].strip().rsplit(" ", 1)[-1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stats(self) -> dict:
        return httpx.get(self.url + "/_mock/stats").json()["calls"]

    def reset(self) -> None:
        httpx.delete(self.url + "/_mock/stats")

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def stop(self) -> str:
        """Stop the process; returns its stderr."""
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        return self.stderr()


class ServerProcess:
    """``forge-ref serve`` as a real process on a free port (logs in ``tmp_path``), with test defaults."""

    def __init__(self, tmp_path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        full_env = {"FORGE_ADMIN_TOKEN": ADMIN, "FORGE_ALLOW_PRIVATE_UPSTREAMS": "1", "PATH": "/usr/bin:/bin",
                    "FORGE_READ_TIMEOUT": "2", "FORGE_MAX_BODY_BYTES": "65536", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forge_ref.cli", "serve", "--port", str(self.port),
             "--db", str(tmp_path / "e2e.db"), *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=full_env)
        wait_http(self.url + "/health")

    def stats(self) -> dict:
        return httpx.get(self.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class GatewayThread:
    """The real gateway (build_gateway + make_app) served on loopback from a background thread.

    Tests talk to it over HTTP like any client, and read ``gw.tracer`` directly.
    """

    def __init__(self, settings: Settings, *, timer=time.monotonic) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._timer = timer
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(15) or self._error:
            raise RuntimeError(f"gateway did not start: {self._error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from tornado.httpserver import HTTPServer

        keys = await prepare_storage(self.settings)
        self.gw = await build_gateway(self.settings, keys=keys, timer=self._timer)
        self.loop = asyncio.get_running_loop()
        server = HTTPServer(make_app(self.gw), max_body_size=256 * 1024 * 1024)
        server.listen(self.port, "127.0.0.1")
        timers = start_background(self.gw)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        server.stop()
        for t in timers:
            t.stop()
        await self.gw.aclose()

    def counters(self) -> dict[str, int]:
        return self.gw.tracer.totals()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class FakeClock:
    """A cache timer that moves only when the test moves it (``now``); it starts at 1000."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A loader the test controls: each call is recorded (seconds since the clock's start); after
    ``hold`` the calls wait for ``release`` before answering ``value`` (or raising ``error``)."""

    def __init__(self, clock: FakeClock, value="v") -> None:
        self.clock = clock
        self.value = value
        self.error: Exception | None = None
        self.calls: list[float] = []
        self.called = asyncio.Event()  # set by every call
        self.gate = asyncio.Event()
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self, value) -> None:
        self.value = value
        self.gate.set()

    async def __call__(self):
        self.calls.append(self.clock.now - 1000.0)
        self.called.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def get_or_load(cache, key, loader):
    """What the request path does: a synchronous look-up, and a load only on a miss."""
    value = cache.get(key)
    return await cache.load(key, loader) if value is MISSING else value


async def settle_refreshes(*caches) -> None:
    """Return once no background refresh of these caches (``RefreshAheadCache``) is in flight."""
    for cache in caches:
        while getattr(cache, "_tasks", None):
            await asyncio.wait(set(cache._tasks))


def settings_for(tmp_path: Path, **kw) -> Settings:
    base = dict(db=str(tmp_path / "forge.db"), admin_token=ADMIN, allow_private_upstreams=True,
                usage_flush_interval=3600.0)
    base.update(kw)
    return Settings(**base)


def create_user(base_url: str, name: str = "alice") -> str:
    r = httpx.post(base_url + "/v1/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    r.raise_for_status()
    return r.json()["api_key"]


def add_provider(gw_url: str, key: str, **body) -> httpx.Response:
    return httpx.post(gw_url + "/v1/provider-keys", json=body, headers={"Authorization": f"Bearer {key}"})


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def env_for_subprocess(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


class RedisServer:
    """A private ``redis-server`` on a free port (for outage tests: stop and restart it)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
