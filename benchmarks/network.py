"""How far a job's server is from PostgreSQL and Redis: delay proxies, and the round trip measured.

A forge-ref job on PostgreSQL with ``db_rtt_ms`` above 0 (on Redis with ``redis_rtt_ms``) gets a
``benchmarks.netdelay`` process of its own: it listens on a free loopback port and forwards to the
real server, adding half the round trip each way; the server under test is given the proxy's
address, while seeding and clean-up go direct. The proxy is pinned with the load side (Locust and
the mock), off the server's CPU, and its CPU seconds over the measured window are recorded.

Before the server starts, the round trip is measured on the address the server will use, proxied
or direct: ``SAMPLES`` ``SELECT 1`` (psycopg) or Redis ``PING`` (redis-py) on one connection after a
few unmeasured ones. ``Hop.record`` is a service's entry in a result's ``network`` section.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import procs
from .locust_stats import nearest_rank

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 200
WARMUP = 10
DEFAULT_PORTS = {"db": 5432, "redis": 6379}
PROBES = {"db": "SELECT 1 (psycopg, one connection)", "redis": "PING (redis-py, one connection)"}


@dataclass
class Hop:
    """How the server under test reaches one service, ``db`` or ``redis``."""

    service: str
    url: str  # what the server is given: the proxy's address when a round trip is added
    target: str  # HOST:PORT of the real server
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    proc: procs.Proc | None = None  # the delay proxy
    cpu: str | None = None  # the CPU the proxy was pinned to
    round_trip: dict | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def record(self, cpu_seconds: float | None, requests: int) -> dict:
        """This hop in a result: asked round trip, the real server, the proxy and its CPU, the round trip measured."""
        proxy = None
        if self.proc is not None:
            proxy = {"delay_ms": self.rtt_ms / 2, "jitter_ms": self.jitter_ms, "cpu": self.cpu,
                     "cpu_seconds": round(cpu_seconds or 0.0, 3),
                     "cpu_ms_per_request": round(1000 * (cpu_seconds or 0.0) / requests, 4) if requests else None}
        return {"rtt_ms": self.rtt_ms, "target": self.target, "proxy": proxy, "round_trip": self.round_trip}


def address(url: str, service: str) -> tuple[str, int]:
    """(host, port) of a ``postgresql://`` or ``redis://`` URL."""
    parts = urlsplit(url)
    if not parts.hostname:  # the URL itself is not shown: it may hold a password
        raise ValueError(f"a delay proxy in front of {service} needs a URL with a TCP host (scheme://HOST:PORT/...)")
    return parts.hostname, parts.port or DEFAULT_PORTS[service]


def via(url: str, port: int) -> str:
    """``url`` pointed at ``127.0.0.1:port`` (user, password, path and query kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=(user + "@" if user else "") + f"{procs.HOST}:{port}"))


def open_hop(service: str, url: str, rtt_ms: float, *, jitter_ms: float, raw: Path, name: str,
             cpus: str | None) -> Hop:
    """The way to ``service`` at ``url``: through a new delay proxy when ``rtt_ms`` > 0, else direct;
    its round trip measured either way."""
    host, port = address(url, service)
    hop = Hop(service, url, f"{host}:{port}")
    if rtt_ms > 0:
        listen = procs.free_port()
        cmd = [sys.executable, "-m", "benchmarks.netdelay", "--port", str(listen), "--target", hop.target,
               "--delay-ms", repr(rtt_ms / 2), "--jitter-ms", repr(jitter_ms)]
        hop.proc = procs.start(f"{name}.{service}-delay", cmd, raw, cpus=cpus, cwd=str(REPO))
        hop.url, hop.rtt_ms, hop.jitter_ms, hop.cpu = via(url, listen), rtt_ms, jitter_ms, cpus
    try:
        if hop.proc is not None:
            procs.wait_listening(hop.proc, listen)
        hop.round_trip = round_trip(service, hop.url)
    except BaseException:
        hop.stop()
        raise
    return hop


def round_trip(service: str, url: str, samples: int = SAMPLES) -> dict:
    """``samples`` timed round trips on one connection (ms): ``SELECT 1`` to the db, ``PING`` to Redis."""
    if service == "db":
        import psycopg

        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        call, close = (lambda: conn.execute("SELECT 1").fetchone()), conn.close
    else:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=10)
        call, close = client.ping, client.close
    times = []
    try:
        for _ in range(WARMUP):
            call()
        for _ in range(samples):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        close()
    times.sort()
    return {"probe": PROBES[service], "samples": samples, "p50_ms": round(nearest_rank(times, 0.5), 4),
            "p99_ms": round(nearest_rank(times, 0.99), 4), "min_ms": round(times[0], 4),
            "mean_ms": round(sum(times) / samples, 4), "max_ms": round(times[-1], 4)}
