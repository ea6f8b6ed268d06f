"""The systems under test: starting the mock provider, forge-ref (one server or several nodes), the
bare proxies, mock-direct (the mock itself) and the LiteLLM peer; and stopping them.

A forge-ref server's environment names its store and cache backend explicitly, so nothing the
runner inherits decides them; a job with a round trip added reaches PostgreSQL or Redis through a
delay proxy (``network``). Every server of a job but mock-direct is pinned to the server CPU
(a ``--processes N`` server is left unpinned).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import infra, network, procs
from .plan import Job
from .seed import copy_db

if TYPE_CHECKING:
    from .runner import Session

REPO = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token"


@dataclass
class Target:
    """The system under test of one job: its processes (none for mock-direct), base URLs (one per node),
    health URLs, static key, what it runs on, how it reaches PostgreSQL and Redis, and what to clean
    up afterwards."""

    procs: list[procs.Proc]
    bases: list[str]
    health: list[str]
    static_key: str = ""
    store: dict = field(default_factory=dict)
    cleanup: list = field(default_factory=list)
    hops: list[network.Hop] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        for hop in self.hops:
            hop.stop()
        for fn in self.cleanup:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 (cleaning up must not hide the job's own error)
                sys.stderr.write(f"benchmark clean-up failed: {exc}\n")


def mock_flags(timing: dict) -> list[str]:
    """``MockConfig`` fields as ``forge-ref mock-provider`` flags: ``{"token_rate": (50, 100)}`` ->
    ``--token-rate 50-100`` (a pair is a uniform range; a number or a string is passed as it is)."""
    out = []
    for name, value in timing.items():
        if value is None:
            continue
        text = f"{value[0]:g}-{value[1]:g}" if isinstance(value, (tuple, list)) else \
            f"{value:g}" if isinstance(value, float) else str(value)
        out += ["--" + name.replace("_", "-"), text]
    return out


def start_mock(raw: Path, *, latency_ms: float, chunk_delay_ms: float, cpus: str | None,
               timing: dict | None = None) -> tuple[procs.Proc, str]:
    """The mock provider every target of a run talks to: (its process, its base URL). ``timing``: the
    timing model's ``MockConfig`` fields (``mock_flags``)."""
    port = procs.free_port()
    cmd = [sys.executable, "-m", "forge_ref.cli", "mock-provider", "--host", procs.HOST, "--port", str(port),
           "--latency-ms", str(latency_ms), "--chunk-delay-ms", str(chunk_delay_ms), *mock_flags(timing or {})]
    return procs.start("mock", cmd, raw, cpus=cpus, cwd=str(REPO)), f"http://{procs.HOST}:{port}"


def stale_bound(processes: int, nodes: int = 1) -> float:
    """Seconds a write may take to reach every process: 0 with one (invalidation is synchronous),
    0.1 s across nodes (Redis pub/sub; documented within 50 ms), else a few invalidation-poll
    intervals (the documented bound of the SQLite log)."""
    if nodes > 1:
        return 0.1
    if processes <= 1:
        return 0.0
    from forge_ref.settings import Settings

    return 3 * float(os.environ.get("FORGE_INVALIDATION_POLL") or Settings.invalidation_poll)


def server_env(job: Job, *, db: str, prefix: str | None, encryption_key: str,
               redis_url: str) -> dict[str, str | None]:
    """The server's environment, explicit about store and cache backend: nothing inherited decides them
    (``None`` unsets a variable the runner's own environment may hold)."""
    redis = job.backend == "redis"
    return {"FORGE_ALLOW_PRIVATE_UPSTREAMS": "1", "FORGE_ADMIN_TOKEN": ADMIN, "FORGE_LOG_LEVEL": "warning",
            "FORGE_SERVER_TIMING": "1",  # Locust records where the time goes (a variant turns it off)
            "FORGE_DB": db, "FORGE_ENCRYPTION_KEY": encryption_key, "FORGE_CACHE_BACKEND": job.backend,
            "REDIS_URL": redis_url if redis else None, "FORGE_REDIS_PREFIX": prefix if redis else None,
            **dict(job.server_env)}


def start_target(session: Session, job: Job, name: str) -> Target:
    """Start the job's system under test (not yet ready: wait on ``Target.health``)."""
    if job.target == "mock-direct":
        return Target([], [session.mock_url], [session.mock_url + "/_mock/stats"])
    port = procs.free_port()
    base = f"http://{procs.HOST}:{port}"
    if job.target.startswith("bare-proxy"):
        cmd = [sys.executable, "-m", "benchmarks.bare_proxy", "--port", str(port), "--upstream",
               session.mock_url + "/openai/v1", "--client", job.upstream_client]
        proc = procs.start(name, cmd, session.raw, cpus=session.cpu("server"), cwd=str(REPO))
        return Target([proc], [base], [base + "/health"])
    if job.target == "litellm":
        from . import peer

        proc = peer.start_litellm(session, port, name)
        return Target([proc], [base], [base + peer.HEALTH_PATH], peer.MASTER_KEY)
    target = Target([], [], [])
    try:
        _start_forge(session, job, name, port, target)
    except BaseException:
        target.stop()
        raise
    return target


def _start_forge(session: Session, job: Job, name: str, port: int, target: Target) -> None:
    opts = session.opts
    seed = session.seeds[job.profile]
    if job.store == "postgres":
        db, schema = infra.create_pg_schema(opts.postgres_url, seed)
        target.cleanup.append(lambda: infra.drop_pg_schema(opts.postgres_url, schema))
        target.store = {"store": "postgres", "db": f"PostgreSQL schema {schema}"}
        db = _hop(session, target, "db", db, job.db_rtt_ms, name)
    else:
        run_db = session.work / f"{name}.db"
        copy_db(seed.db, run_db)
        db = str(run_db)
        target.store = {"store": "sqlite", "db": "SQLite file on local disk"}
    prefix, redis_url = None, opts.redis_url
    if job.backend == "redis":
        prefix = infra.redis_prefix()
        target.cleanup.append(lambda: infra.clear_redis(opts.redis_url, prefix))
        redis_url = _hop(session, target, "redis", redis_url, job.redis_rtt_ms, name)
    target.store.update(cache_backend=job.backend, redis_prefix=prefix)
    env = server_env(job, db=db, prefix=prefix, encryption_key=session.encryption_key, redis_url=redis_url)
    processes = 1 if job.nodes > 1 else opts.processes
    cpus = session.cpu("server") if processes == 1 else None
    for n in range(job.nodes):
        if n:
            port = procs.free_port()
        node_base = f"http://{procs.HOST}:{port}"
        cmd = [sys.executable, "-m", "forge_ref.cli", "serve", "--host", procs.HOST, "--port", str(port), "--db",
               db, "--caches", job.config, "--processes", str(processes), "--upstream-client", job.upstream_client]
        node_name = name if job.nodes == 1 else f"{name}.node{n}"
        target.procs.append(procs.start(node_name, cmd, session.raw, env=env, cpus=cpus, cwd=str(REPO)))
        target.bases.append(node_base)
        target.health.append(node_base + "/health")


def _hop(session: Session, target: Target, service: str, url: str, rtt_ms: float, name: str) -> str:
    """The URL the server is to use for ``service``: through a delay proxy pinned with the load side."""
    hop = network.open_hop(service, url, rtt_ms, jitter_ms=session.opts.net_jitter_ms, raw=session.raw, name=name,
                           cpus=session.cpu("load"))
    target.hops.append(hop)
    return hop.url
