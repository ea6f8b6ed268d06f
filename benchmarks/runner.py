"""``python -m benchmarks run``: the matrix of targets x profiles x cache configurations.

For every job: a fresh copy of the seeded DB (SQLite: a file copy; PostgreSQL: a fresh schema
``bench_<id>`` loaded with COPY, dropped afterwards), a fresh server (pinned to CPU 0) with its
store and cache backend set explicitly in its environment (Redis: a key prefix of its own, deleted
afterwards), a warm-up,
``DELETE /_stats`` and ``DELETE /_mock/stats``, then the measured window (Locust headless,
pinned to CPU 1 with the mock, or the in-process concurrency-1 probe), then ``/_stats``,
process CPU and peak RSS. Each job writes one immutable JSON file into ``out``; subprocess
logs, Locust's own JSON/CSV and the DBs stay in ``out/raw/<run id>/`` (gitignored).

``--multi-node N`` adds the target ``forge-ref-nodes``: N separate ``forge-ref serve --processes 1``
servers on one PostgreSQL and one Redis, every node pinned to CPU 0 (Locust and the mock on CPU 1),
Locust spreading its users over the nodes (``FORGE_HOSTS``); CPU and RSS are summed over the nodes.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote
from datetime import datetime, timezone
from pathlib import Path

from . import procs
from .profiles import FULL_CONFIGS, LOAD_PROFILES, PROFILES, QUICK_BACKEND_JOBS, QUICK_PLAN, variants
from .seed import build_rows, copy_db, load_postgres, load_sqlite

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "locustfile.py"
SCHEMA_VERSION = 1
ADMIN = "bench-admin-token"
STORES = ("sqlite", "postgres")
BACKENDS = ("memory", "redis")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CUSTOM_TYPES = ("TTFT", "CHECK")  # locustfile's own measurements, kept apart from HTTP totals
CHAT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
REQUIRED_FIELDS = ("schema_version", "run_id", "target", "profile", "config", "variant", "caches_enabled",
                   "counters", "caches", "requests", "per_request", "locust", "server", "mock_calls", "machine",
                   "commit", "settings", "started_at")


@dataclass(frozen=True)
class Job:
    # forge-ref (curl), forge-ref-httpx, forge-ref-nodes, bare-proxy-curl, bare-proxy-httpx, mock-direct, litellm
    target: str
    profile: str
    config: str = "n/a"  # cache layers for forge-ref targets
    variant: str = ""  # includes the store/backend when not sqlite/memory, e.g. "postgres+redis"
    server_env: tuple[tuple[str, str], ...] = ()
    store: str = "sqlite"  # sqlite | postgres (forge-ref targets)
    backend: str = "memory"  # memory | redis (forge-ref targets)
    nodes: int = 1  # forge-ref-nodes: separate servers on one PostgreSQL and one Redis

    @property
    def is_forge(self) -> bool:
        return self.target.startswith("forge-ref")

    @property
    def upstream_client(self) -> str | None:
        if self.target.startswith(("forge-ref", "bare-proxy")):
            return "httpx" if self.target.endswith("-httpx") else "curl"
        return None

    def label(self) -> str:
        parts = [self.profile, self.config if self.target == "forge-ref" else self.target]
        if self.target != "forge-ref" and self.is_forge:
            parts.append(self.config)
        if self.variant:
            parts.append(self.variant)
        return "_".join(p.replace(",", "+").replace("=", "") for p in parts)


@dataclass
class Options:
    out: Path = Path("results")
    duration: float = 10.0
    users: int = 32
    processes: int = 1
    warmup: float = 3.0
    quick: bool = False
    tenants: int | None = None  # tenant count of many-tenants (the other profiles' counts are part of them)
    pin: bool = True
    verbose: bool = True
    mock_latency_ms: float = 0.0
    mock_chunk_delay_ms: float = 0.0
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL


# --- the plan ---------------------------------------------------------------------------------


def store_variant(store: str, backend: str, variant: str = "", nodes: int = 1) -> str:
    """The variant label of a job: ``postgres``, ``redis``, ``postgres+redis`` (nothing for sqlite/memory),
    then the profile's own variant (``bounded``, ``coalesce=1``) and the node count, joined by ``+``."""
    parts = [p for p in (store if store != "sqlite" else "", backend if backend != "memory" else "", variant,
                         f"nodes={nodes}" if nodes > 1 else "") if p]
    return "+".join(parts)


def _split(values, allowed: tuple[str, ...], what: str) -> list[str]:
    if values is None:
        return [allowed[0]]
    if isinstance(values, str):
        values = [values]
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    bad = [v for v in out if v not in allowed]
    if bad or not out:
        raise SystemExit(f"unknown {what} {bad or out!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(out))


def plan(*, quick: bool = False, profiles: list[str] | None = None, configs: list[str] | None = None,
         baselines: bool = True, peer: str | None = None, tenants_of=None, stores=None, backends=None,
         multi_node: int = 0) -> list[Job]:
    """The jobs of a run. Every forge-ref job of the matrix runs once per store x cache backend;
    ``multi_node`` N > 1 adds ``forge-ref-nodes`` jobs (PostgreSQL + Redis, N servers) for the load
    profiles given (default ``steady``) and the configurations given (default ``all``)."""
    tenants_of = tenants_of or (lambda p: PROFILES[p].tenants)
    combos = [(st, be) for st in _split(stores, STORES, "store") for be in _split(backends, BACKENDS, "cache backend")]
    chosen = profiles
    if profiles is None:
        profiles = list(QUICK_PLAN) if quick else list(LOAD_PROFILES)
    jobs: list[Job] = []

    def forge(target: str, profile: str, config: str, variant: str = "", env: dict | None = None) -> list[Job]:
        env_items = tuple(sorted((env or {}).items()))
        return [Job(target, profile, config, store_variant(st, be, variant), env_items, st, be) for st, be in combos]

    for profile in profiles:
        if profile not in PROFILES:
            raise SystemExit(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        cfgs = configs or (QUICK_PLAN.get(profile, ["none", "all"]) if quick else FULL_CONFIGS)
        for config in cfgs:
            for variant, env in variants(profile, config, tenants_of(profile)):
                jobs += forge("forge-ref", profile, config, variant, env)
    if quick and combos == [("sqlite", "memory")] and chosen is None and configs is None:
        for profile, config in QUICK_BACKEND_JOBS:  # one job on the shared store and cache
            jobs.append(Job("forge-ref", profile, config, store_variant("postgres", "redis"), (), "postgres", "redis"))
    if baselines:
        jobs += [Job("mock-direct", "steady"), Job("bare-proxy-curl", "steady"), Job("forge-ref-httpx", "steady", "all")]
        if not quick:
            jobs.append(Job("bare-proxy-httpx", "steady"))
        jobs += [Job("mock-direct", "latency-c1"), Job("bare-proxy-curl", "latency-c1")]
        jobs += forge("forge-ref", "latency-c1", "all")
        if not quick:
            jobs += forge("forge-ref", "latency-c1", "none")
    if multi_node and multi_node > 1:
        for profile in [p for p in (chosen or ["steady"]) if not PROFILES[p].probe]:
            for config in configs or ["all"]:
                for variant, env in variants(profile, config, tenants_of(profile)):
                    jobs.append(Job("forge-ref-nodes", profile, config,
                                    store_variant("postgres", "redis", variant, multi_node),
                                    tuple(sorted(env.items())), "postgres", "redis", multi_node))
    elif multi_node == 1:
        raise SystemExit("--multi-node needs at least 2 nodes")
    if peer == "litellm":
        jobs += [Job("litellm", "steady"), Job("litellm", "latency-c1")]
    elif peer:
        raise SystemExit(f"unknown peer {peer!r}; supported: litellm")
    return jobs


# --- facts about this machine and checkout ----------------------------------------------------


def git_commit() -> tuple[str, bool]:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return sha or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 (informational only)
        mem = None
    try:
        from importlib.metadata import version

        locust_version = version("locust")  # never ``import locust`` here: it monkey-patches the process (gevent)
    except Exception:  # noqa: BLE001 (informational only)
        locust_version = None
    return {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "cpu_model": model,
            "memory_gb": mem, "python": platform.python_version(), "platform": platform.platform(),
            "locust": locust_version}


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- Locust output ----------------------------------------------------------------------------


def _hist(entries: list[dict]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for e in entries:
        for k, v in e.get("response_times", {}).items():
            merged[float(k)] = merged.get(float(k), 0) + v
    return merged


def _raw_hist(entry: dict) -> dict[str, int]:
    """Locust's own bucketed histogram of one endpoint (ms -> count), kept so notebooks can draw CDFs."""
    return {str(k): v for k, v in sorted(entry.get("response_times", {}).items(), key=lambda kv: float(kv[0]))}


def percentile(hist: dict[float, int], p: float) -> float | None:
    """Locust's rule: the smallest recorded (bucketed) time covering ``p`` of the requests."""
    n = sum(hist.values())
    if not n:
        return None
    cum = 0
    for k in sorted(hist):
        cum += hist[k]
        if cum >= p * n:
            return k
    return max(hist)


def _entry_stats(entries: list[dict]) -> dict:
    n = sum(e["num_requests"] for e in entries)
    fails = sum(e["num_failures"] for e in entries)
    hist = _hist(entries)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    span = (max(ends) - min(starts)) if starts and ends else 0.0
    total_ms = sum(e["total_response_time"] for e in entries)
    return {
        "requests": n, "failures": fails, "duration_s": round(span, 3),
        "rps": round(n / span, 1) if span > 0 else None,
        "avg_ms": round(total_ms / n, 3) if n else None,
        "p50_ms": percentile(hist, 0.50), "p90_ms": percentile(hist, 0.90), "p99_ms": percentile(hist, 0.99),
        "max_ms": round(max((e["max_response_time"] for e in entries), default=0), 3) if entries else None,
    }


def summarize_locust(entries: list[dict], failures_csv: Path | None = None) -> dict:
    http_entries = [e for e in entries if e["method"] not in CUSTOM_TYPES]
    summary = {"tool": "locust", **_entry_stats(http_entries)}
    summary["endpoints"] = [
        {"method": e["method"], "name": e["name"], **_entry_stats([e]), "response_times": _raw_hist(e)}
        for e in sorted(http_entries, key=lambda e: (e["name"], e["method"]))
    ]
    ttft = [e for e in entries if e["method"] == "TTFT"]
    summary["ttft"] = _entry_stats(ttft) if ttft else None
    checks = {e["name"]: e["num_requests"] for e in entries if e["method"] == "CHECK"}
    summary["checks"] = {"stale_responses": checks.get("stale_response", 0),
                         "fresh_responses": checks.get("fresh_response", 0)} if checks else None
    errors = []
    if failures_csv is not None and failures_csv.exists():
        import csv

        with open(failures_csv) as f:
            for row in csv.DictReader(f):
                errors.append({"method": row.get("Method"), "name": row.get("Name"), "error": row.get("Error", "")[:300],
                               "occurrences": int(row.get("Occurrences") or 0)})
    summary["errors"] = sorted(errors, key=lambda e: -e["occurrences"])[:10]
    return summary


# --- the concurrency-1 probe ------------------------------------------------------------------


def probe(host: str, port: int, path: str, body: bytes, key: str, seconds: float, cpu: int | None) -> dict:
    """Sequential requests on one keep-alive connection, timed with perf_counter (µs precision)."""
    old = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    times: list[float] = []
    failures = 0
    try:
        for _ in range(50):  # connection and caches warm
            conn.request("POST", path, body, headers)
            conn.getresponse().read()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            resp.read()
            times.append((time.perf_counter() - t0) * 1000)
            failures += resp.status != 200
        span = time.perf_counter() - start
    finally:
        conn.close()
        if old is not None:
            os.sched_setaffinity(0, old)
    times.sort()
    n = len(times)

    def pct(p: float) -> float:
        return round(times[min(n - 1, max(0, int(p * n + 0.5) - 1))], 4)

    stats = {"requests": n, "failures": failures, "duration_s": round(span, 3), "rps": round(n / span, 1),
             "avg_ms": round(sum(times) / n, 4), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
             "max_ms": round(times[-1], 4)}
    return {"tool": "probe (http.client, 1 connection, sequential)", **stats,
            "endpoints": [{"method": "POST", "name": path, **stats}], "ttft": None, "checks": None, "errors": []}


# --- one job ----------------------------------------------------------------------------------


@dataclass
class Context:
    opts: Options
    run_id: str
    commit: str
    dirty: bool
    machine: dict
    pinning: dict | None
    raw: Path
    work: Path
    mock: procs.Proc
    mock_port: int
    seeds: dict = field(default_factory=dict)
    peer_python: Path | None = None
    encryption_key: str = ""  # one Fernet key per run: seeding and every server of every store use it

    @property
    def mock_url(self) -> str:
        return f"http://{procs.HOST}:{self.mock_port}"

    def cpu(self, role: str) -> str | None:
        return self.pinning[role] if self.pinning else None


def tenants_for(profile: str, opts: Options) -> int:
    spec = PROFILES[profile]
    if opts.tenants and profile == "many-tenants":
        return opts.tenants
    return spec.quick_tenants if (opts.quick and spec.quick_tenants) else spec.tenants


def seeded(ctx: Context, profile: str) -> tuple[Path, Path, dict]:
    """The profile's seeded SQLite file, keys file and keys document (the rows are kept for PostgreSQL)."""
    if profile not in ctx.seeds:
        from forge_ref import crypto as crypto_mod
        from forge_ref import store as store_mod
        from forge_ref.tracing import Tracer

        from .seed import write_keys

        spec = PROFILES[profile]
        db = ctx.work / f"seed-{profile}.db"
        keys = ctx.raw / f"keys-{profile}.json"
        crypto = crypto_mod.Crypto([ctx.encryption_key], Tracer())
        doc, user_rows, key_rows = build_rows(tenants_for(profile, ctx.opts), ctx.mock_url, crypto,
                                              providers=spec.providers)
        sqlite_db = store_mod.connect(str(db), tracer=None)
        store_mod.create_schema(sqlite_db)
        load_sqlite(sqlite_db, user_rows, key_rows)
        write_keys(doc, keys)
        ctx.seeds[profile] = (db, keys, doc, (user_rows, key_rows))
    return ctx.seeds[profile][:3]


def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=' + schema)}"


def postgres_for(ctx: Context, profile: str, name: str) -> tuple[str, str]:
    """A fresh schema holding the profile's seeded rows: (URL with that search_path, schema name)."""
    import psycopg

    from forge_ref.pg_store import create_schema

    seeded(ctx, profile)
    user_rows, key_rows = ctx.seeds[profile][3]
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ctx.opts.postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = pg_schema_url(ctx.opts.postgres_url, schema)
    create_schema(url)
    load_postgres(url, user_rows, key_rows)
    return url, schema


def drop_schema(ctx: Context, schema: str) -> None:
    import psycopg

    with psycopg.connect(ctx.opts.postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def clear_redis(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (a job's own namespace); return how many."""
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


def check_services(jobs: list[Job], opts: Options, *, optional: bool = False) -> list[Job]:
    """The jobs whose PostgreSQL and Redis answer. A job that needs one that does not answer stops the
    run early, with the URL; with ``optional`` (the extra job of ``--quick``) it is left out, with a warning."""
    problems = {}
    if any(j.store == "postgres" for j in jobs):
        import psycopg

        try:
            psycopg.connect(opts.postgres_url, connect_timeout=3).close()
        except psycopg.Error as exc:
            problems["postgres"] = f"PostgreSQL at {opts.postgres_url} does not answer ({exc}); set --postgres-url"
    if any(j.backend == "redis" for j in jobs):
        import redis

        try:
            redis.Redis.from_url(opts.redis_url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            problems["redis"] = f"Redis at {opts.redis_url} does not answer ({exc}); set --redis-url"
    if not problems:
        return jobs
    if not optional:
        raise SystemExit("; ".join(problems.values()))
    for text in problems.values():
        sys.stderr.write(f"skipping the PostgreSQL + Redis job of --quick: {text}\n")
    return [j for j in jobs if j.store not in problems and j.backend not in problems]


def _touch(base: str, doc: dict, cap: int = 2000) -> None:
    """One request of each kind per tenant (up to ``cap``): fills every cache the profile uses."""
    reqs = []
    for t in doc["tenants"][:cap]:
        for kind in t["providers"]:
            body = json.dumps({"model": f"{kind}/{CHAT_MODELS[kind]}", "max_tokens": 16,
                               "messages": [{"role": "user", "content": "warm up"}]}).encode()
            reqs.append(("POST", "/v1/chat/completions", body, t["key"]))
        reqs.append(("GET", "/v1/models", None, t["key"]))
        reqs.append(("POST", "/v1/embeddings", b'{"model":"openai/text-embedding-3-small","input":"warm"}', t["key"]))

    def one(r) -> int:
        return procs.http(r[0], base + r[1], token=r[3], body=r[2], timeout=30)[0]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, reqs))


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


def chat_request(target: str) -> tuple[str, bytes]:
    """Path and body of one non-streaming chat as each target spells it (see TARGETS in locustfile)."""
    routed = target.startswith("forge-ref") or target == "litellm"
    path = "/openai/v1/chat/completions" if target == "mock-direct" else "/v1/chat/completions"
    body = json.dumps({"model": "openai/gpt-4o-mini" if routed else "gpt-4o-mini", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}).encode()
    return path, body


def _sequential(base: str, target: str, key: str, n: int = 100) -> None:
    path, body = chat_request(target)
    for _ in range(n):
        procs.http("POST", base + path, token=key, body=body, timeout=30)


def _locust(ctx: Context, job: Job, base: str, keys: Path, *, users: int, duration: float, name: str,
            static_key: str = "", hosts: list[str] | None = None) -> tuple[dict, float]:
    prefix = ctx.raw / name
    target = {"mock-direct": "mock-direct", "litellm": "litellm"}.get(job.target)
    target = target or ("bare-proxy" if job.target.startswith("bare-proxy") else "forge-ref")
    env = {"FORGE_PROFILE": job.profile, "FORGE_KEYS_FILE": str(keys), "FORGE_TARGET": target,
           "FORGE_STATIC_KEY": static_key,
           "FORGE_STALE_BOUND_S": str(stale_bound(ctx.opts.processes, job.nodes)),
           "FORGE_HOSTS": ",".join(hosts) if hosts and len(hosts) > 1 else None}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
           "-t", f"{max(1, round(duration))}s", "--host", base, "--json-file", str(prefix), "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--logfile", str(ctx.raw / f"{name}.locust.log"),
           "--exit-code-on-error", "0", "--stop-timeout", "2"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = procs.start(name, cmd, ctx.raw, env=env, cpus=ctx.cpu("load"), cwd=str(REPO))
    try:
        proc.popen.wait(timeout=duration + 90)
    finally:
        proc.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    path = Path(f"{prefix}.json")
    if not path.exists():
        raise RuntimeError(f"Locust wrote no {path}:\n{proc.tail()}")
    return summarize_locust(json.loads(path.read_text()), Path(f"{prefix}_failures.csv")), load_cpu


@dataclass
class Target:
    """The system under test of one job: its processes (none for mock-direct), base URLs (one per node),
    health URLs, static key, what it runs on, and what to clean up afterwards."""

    procs: list[procs.Proc]
    bases: list[str]
    health: list[str]
    static_key: str = ""
    store: dict = field(default_factory=dict)
    cleanup: list = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        for fn in self.cleanup:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 (cleaning up must not hide the job's own error)
                sys.stderr.write(f"benchmark clean-up failed: {exc}\n")


def server_env(ctx: Context, job: Job, db: str, prefix: str | None) -> dict[str, str | None]:
    """The server's environment, explicit about store and cache backend: nothing inherited decides them
    (``None`` unsets a variable the runner's own environment may hold)."""
    redis = job.backend == "redis"
    return {"FORGE_ALLOW_PRIVATE_UPSTREAMS": "1", "FORGE_ADMIN_TOKEN": ADMIN, "FORGE_LOG_LEVEL": "warning",
            "FORGE_DB": db, "FORGE_ENCRYPTION_KEY": ctx.encryption_key, "FORGE_CACHE_BACKEND": job.backend,
            "REDIS_URL": ctx.opts.redis_url if redis else None, "FORGE_REDIS_PREFIX": prefix if redis else None,
            **dict(job.server_env)}


def _start_target(ctx: Context, job: Job, name: str) -> Target:
    if job.target == "mock-direct":
        return Target([], [ctx.mock_url], [ctx.mock_url + "/_mock/stats"])
    port = procs.free_port()
    base = f"http://{procs.HOST}:{port}"
    if job.target.startswith("bare-proxy"):
        cmd = [sys.executable, "-m", "benchmarks.bare_proxy", "--port", str(port), "--upstream",
               ctx.mock_url + "/openai/v1", "--client", job.upstream_client]
        proc = procs.start(name, cmd, ctx.raw, cpus=ctx.cpu("server"), cwd=str(REPO))
        return Target([proc], [base], [base + "/health"])
    if job.target == "litellm":
        from . import peer

        proc = peer.start_litellm(ctx, port, name)
        return Target([proc], [base], [base + peer.HEALTH_PATH], peer.MASTER_KEY)
    target = Target([], [], [])
    try:
        if job.store == "postgres":
            db, schema = postgres_for(ctx, job.profile, name)
            target.cleanup.append(lambda: drop_schema(ctx, schema))
            target.store = {"store": "postgres", "db": f"PostgreSQL schema {schema}"}
        else:
            seed_db, _, _ = seeded(ctx, job.profile)
            run_db = ctx.work / f"{name}.db"
            copy_db(seed_db, run_db)
            db = str(run_db)
            target.store = {"store": "sqlite", "db": "SQLite file on local disk"}
        prefix = None
        if job.backend == "redis":
            prefix = f"forge-bench:{uuid.uuid4().hex[:10]}:"
            target.cleanup.append(lambda: clear_redis(ctx.opts.redis_url, prefix))
        target.store.update(cache_backend=job.backend, redis_prefix=prefix)
        env = server_env(ctx, job, db, prefix)
        processes = 1 if job.nodes > 1 else ctx.opts.processes
        cpus = ctx.cpu("server") if processes == 1 else None
        for n in range(job.nodes):
            if n:
                port = procs.free_port()
            node_base = f"http://{procs.HOST}:{port}"
            cmd = [sys.executable, "-m", "forge_ref.cli", "serve", "--host", procs.HOST, "--port", str(port), "--db",
                   db, "--caches", job.config, "--processes", str(processes), "--upstream-client",
                   job.upstream_client]
            node_name = name if job.nodes == 1 else f"{name}.node{n}"
            target.procs.append(procs.start(node_name, cmd, ctx.raw, env=env, cpus=cpus, cwd=str(REPO)))
            target.bases.append(node_base)
            target.health.append(node_base + "/health")
    except BaseException:
        target.stop()
        raise
    return target


def merge_stats(docs: list[dict]) -> dict:
    """``/_stats`` of several nodes as one: counters and cache statistics summed, hit ratios recomputed."""
    if len(docs) == 1:
        return docs[0]
    out = {"caches_enabled": docs[0]["caches_enabled"], "counters": {}, "caches": {},
           "processes": sum(d.get("processes", 1) for d in docs)}
    for d in docs:
        for k, v in d["counters"].items():
            out["counters"][k] = out["counters"].get(k, 0) + v
        for layer, stats in d["caches"].items():
            merged = out["caches"].setdefault(layer, {})
            for k, v in stats.items():
                if k != "hit_ratio":
                    merged[k] = merged.get(k, 0) + v
    for stats in out["caches"].values():
        looked = stats.get("hits", 0) + stats.get("misses", 0)
        stats["hit_ratio"] = round(stats["hits"] / looked, 4) if looked else 0.0
    return out


def run_job(ctx: Context, job: Job, index: int) -> dict:
    opts = ctx.opts
    spec = PROFILES[job.profile]
    started = time.time()
    name = f"{index:03d}_{job.label()}"
    users = spec.users or opts.users
    duration = spec.duration or opts.duration
    _, keys, doc = seeded(ctx, job.profile)  # baselines read the same keys file (the mock takes any key)
    if spec.probe and job.nodes > 1:
        raise ValueError("the concurrency-1 probe measures one server: no multi-node latency-c1")
    target = _start_target(ctx, job, name)
    servers = target.procs or [ctx.mock]
    pids = [p.pid for p in servers]
    base, static_key = target.bases[0], target.static_key
    key = static_key or doc["tenants"][0]["key"]
    warm = spec.warmup if job.is_forge else "sequential"
    warm_desc = {"touch": "one request of each kind per tenant", "locust": f"{opts.warmup:g}s of the profile",
                 "sequential": "100 sequential chats", "none": "none (cold caches)"}[warm]
    if job.nodes > 1 and warm == "touch":
        warm_desc += f", on each of the {job.nodes} nodes"
    per_node = []
    try:
        for server, health in zip(servers, target.health):
            procs.wait_ready(server, health, timeout=120 if job.target == "litellm" else 30)
        rss_start = sum(procs.rss_bytes(pid) for pid in pids)
        with procs.Sampler(pids[0], pids=tuple(pids[1:])) as sampler:
            if warm == "touch":
                for b in target.bases:
                    _touch(b, doc)
            elif warm == "locust":
                _locust(ctx, job, base, keys, users=users, duration=opts.warmup, name=name + ".warmup",
                        static_key=static_key, hosts=target.bases)
            elif warm == "sequential":
                _sequential(base, job.target, key)
            if job.is_forge:
                for b in target.bases:
                    procs.http_json("DELETE", b + "/_stats", token=ADMIN)
            procs.http_json("DELETE", ctx.mock_url + "/_mock/stats")
            node_cpu0 = [procs.cpu_seconds(pid) for pid in pids]
            mock0, t0 = procs.cpu_seconds(ctx.mock.pid), time.monotonic()
            busy0, irq0, steal0, self0 = *procs.busy_cpu(), _self_cpu()
            tcp0 = procs.tcp_counters()
            loadavg = os.getloadavg()[0]
            if spec.probe:
                path, body = chat_request(job.target)
                cpu = int(ctx.cpu("load")) if ctx.pinning else None
                load = probe(procs.HOST, int(base.rsplit(":", 1)[1]), path, body, key,
                             min(max(duration / 3, 1.0), 5.0), cpu)
                load_cpu = None
            else:
                load, load_cpu = _locust(ctx, job, base, keys, users=users, duration=duration, name=name,
                                         static_key=static_key, hosts=target.bases)
            wall = time.monotonic() - t0
            node_cpu1 = [procs.cpu_seconds(pid) for pid in pids]
            mock1 = procs.cpu_seconds(ctx.mock.pid)
            busy1, irq1, steal1, self1 = *procs.busy_cpu(), _self_cpu()
            tcp1 = procs.tcp_counters()
            node_stats = [procs.http_json("GET", b + "/_stats", token=ADMIN) for b in target.bases] \
                if job.is_forge else []
            stats = merge_stats(node_stats) if node_stats else None
            mock_stats = procs.http_json("GET", ctx.mock_url + "/_mock/stats")
            if job.nodes > 1:
                per_node = [{"base_url": b, "cpu_seconds": round(c1 - c0, 3),
                             "rss_mb": round(procs.rss_bytes(pid) / 2**20, 1),
                             "requests": st["counters"].get("requests", 0)}
                            for b, pid, c0, c1, st in zip(target.bases, pids, node_cpu0, node_cpu1, node_stats)]
        peak = sampler.peak
    finally:
        target.stop()
    counters = stats["counters"] if stats else {}
    requests = counters.get("requests", 0) if stats else load["requests"]
    server_cpu = sum(node_cpu1) - sum(node_cpu0)
    span = load["duration_s"] or wall  # the measured window proper (Locust's start-up excluded)
    if span < 1.0:
        span = 0.0  # a burst: utilisation over a few milliseconds means nothing
    mock_cpu = mock1 - mock0 if target.procs else 0.0
    ours = server_cpu + mock_cpu + (load_cpu or 0.0) + (self1 - self0)
    noise = {"loadavg_1m_before": round(loadavg, 2), "other_cpu_seconds": round(max(0.0, busy1 - busy0 - ours), 3),
             "other_cpu_utilisation": round(max(0.0, busy1 - busy0 - ours) / wall, 3) if wall > 0 else None,
             "interrupt_seconds": round(irq1 - irq0, 3), "steal_seconds": round(steal1 - steal0, 3),
             "window_s": round(wall, 3),
             "tcp": {k: tcp1[k] - tcp0.get(k, 0) for k in sorted(tcp1)}}
    per_request = {k: round(v / requests, 4) for k, v in counters.items()} if requests else {}
    per_request["cpu_ms"] = round(1000 * server_cpu / requests, 4) if requests else None
    server = {
        "process": "mock" if job.target == "mock-direct" else job.target,
        "cpu_seconds": round(server_cpu, 3),
        "cpu_ms_per_request": per_request["cpu_ms"],
        "cpu_utilisation": round(server_cpu / span, 3) if span > 0 else None,
        "rss_start_mb": round(rss_start / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "processes": stats.get("processes", 1) if stats else 1,
    }
    if per_node:
        server["nodes"] = per_node  # cpu_seconds, rss_start_mb and peak_rss_mb above are sums over these
    result = {
        "schema_version": SCHEMA_VERSION,
        "run_id": ctx.run_id,
        "target": job.target,
        "profile": job.profile,
        "config": job.config,
        "variant": job.variant,
        "caches_enabled": stats["caches_enabled"] if stats else {},
        "counters": counters,
        "caches": stats["caches"] if stats else {},
        "requests": requests,
        "per_request": per_request,
        "stale_responses": (load.get("checks") or {}).get("stale_responses") if job.profile == "churn" else None,
        "locust": load,
        "server": server,
        "mock_calls": mock_stats.get("calls", {}),
        "mock": {"total_calls": mock_stats.get("total"), "cpu_seconds": round(mock1 - mock0, 3)},
        "load_generator": {"cpu_seconds": round(load_cpu, 3) if load_cpu is not None else None,
                           "cpu_utilisation": round(load_cpu / span, 3) if load_cpu and span > 0 else None},
        "noise": noise,
        "machine": ctx.machine,
        "commit": ctx.commit,
        "commit_dirty": ctx.dirty,
        "settings": {
            "duration_s": round(load["duration_s"], 1) if spec.probe else duration,
            "users": 1 if spec.probe else users, "warmup": warm_desc,
            "processes": (1 if job.nodes > 1 else opts.processes) if job.is_forge else 1,
            "upstream_client": job.upstream_client,
            "pinning": _pinning(ctx, job),
            "stale_bound_s": stale_bound(opts.processes, job.nodes) if job.is_forge else None,
            "tenants": len(doc["tenants"]) if job.is_forge else None,
            "server_env": dict(job.server_env), "quick": opts.quick,
            "mock": {"latency_ms": opts.mock_latency_ms, "chunk_delay_ms": opts.mock_chunk_delay_ms},
            # what the forge-ref server stored in and cached with (always recorded; n/a for other targets)
            "store": job.store if job.is_forge else None,
            "cache_backend": job.backend if job.is_forge else None,
            "db": target.store.get("db"),
            "redis_prefix": target.store.get("redis_prefix"),
            "nodes": job.nodes,
        },
        "started_at": _utc(started),
        "finished_at": _utc(time.time()),
    }
    return result


def _pinning(ctx: Context, job: Job) -> dict | None:
    """The pinning this job really had (a multi-process server is left unpinned)."""
    if not ctx.pinning:
        return None
    pin = dict(ctx.pinning)
    if job.is_forge and ctx.opts.processes > 1 and job.nodes == 1:
        pin["server"] = None
    if job.nodes > 1:
        pin["note"] = (f"all {job.nodes} nodes (one process each) on CPU {pin['server']}; Locust and the mock on "
                       f"CPU {pin['load']}; PostgreSQL and Redis unpinned")
    if job.target == "mock-direct":
        pin["server"] = pin["mock"]  # the process under test is the mock itself
    return pin


def write_result(result: dict, out: Path, job: Job, started: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_stamp(started)}_{result['commit']}_{job.label()}"
    for n in range(1, 1000):
        path = out / (stem + (f"-{n}" if n > 1 else "") + ".json")
        try:
            with open(path, "x") as f:  # immutable: never overwrite a result
                json.dump(result, f, indent=1, sort_keys=True)
                f.write("\n")
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot name a result file for {stem}")


# --- the matrix -------------------------------------------------------------------------------


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _progress(i: int, n: int, job: Job, note: str) -> None:
    width = 20
    done = int(width * i / n)
    sys.stderr.write(f"[{'#' * done}{'.' * (width - done)}] {i}/{n} {job.target:<16} {job.profile:<12} "
                     f"{job.config:<26} {job.variant:<10} {note}\n")
    sys.stderr.flush()


def run(*, profiles: list[str] | None = None, configs: list[str] | None = None, out: str | os.PathLike = "results",
        duration: float | None = None, users: int | None = None, quick: bool = False, baselines: bool | None = None,
        peer: str | None = None, processes: int = 1, tenants: int | None = None, warmup: float | None = None,
        pin: bool = True, verbose: bool = True, mock_latency_ms: float = 0.0,
        mock_chunk_delay_ms: float = 0.0, stores=None, backends=None, multi_node: int = 0,
        postgres_url: str | None = None, redis_url: str | None = None) -> list[Path]:
    """Run the matrix; return the result files written (one per job).

    ``stores`` (``sqlite``, ``postgres``) and ``backends`` (``memory``, ``redis``): lists or comma
    strings, each forge-ref job runs once per combination (default sqlite, memory). ``multi_node`` N:
    also N forge-ref servers on one PostgreSQL and one Redis (target ``forge-ref-nodes``)."""
    opts = Options(out=Path(out).resolve(), duration=duration or (8.0 if quick else 15.0), users=users or 32,
                   processes=processes, warmup=warmup if warmup is not None else (2.0 if quick else 5.0),
                   quick=quick, tenants=tenants, pin=pin, verbose=verbose, mock_latency_ms=mock_latency_ms,
                   mock_chunk_delay_ms=mock_chunk_delay_ms,
                   postgres_url=postgres_url or os.environ.get("FORGE_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
                   redis_url=redis_url or os.environ.get("FORGE_BENCH_REDIS_URL") or DEFAULT_REDIS_URL)
    if baselines is None:
        baselines = True
    jobs = plan(quick=quick, profiles=profiles, configs=configs, baselines=baselines, peer=peer,
                tenants_of=lambda p: tenants_for(p, opts), stores=stores, backends=backends, multi_node=multi_node)
    jobs = check_services(jobs, opts, optional=stores is None and backends is None and not multi_node)
    commit, dirty = git_commit()
    t_start = time.time()
    run_id = f"{_stamp(t_start)}_{commit}"
    raw = opts.out / "raw" / run_id
    raw.mkdir(parents=True, exist_ok=True)
    pinning = procs.pinning_plan() if pin else None
    written: list[Path] = []
    results: list[dict] = []
    failed: list[tuple[Job, str]] = []
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as work:
        mock_port = procs.free_port()
        mock_cmd = [sys.executable, "-m", "forge_ref.cli", "mock-provider", "--host", procs.HOST, "--port",
                    str(mock_port), "--latency-ms", str(opts.mock_latency_ms), "--chunk-delay-ms",
                    str(opts.mock_chunk_delay_ms)]
        mock = procs.start("mock", mock_cmd, raw, cpus=pinning["mock"] if pinning else None, cwd=str(REPO))
        from cryptography.fernet import Fernet

        ctx = Context(opts, run_id, commit, dirty, machine(), pinning, raw, Path(work), mock, mock_port,
                      encryption_key=Fernet.generate_key().decode())
        try:
            procs.wait_ready(mock, ctx.mock_url + "/_mock/stats")
            if peer == "litellm":
                from . import peer as peer_mod

                ctx.peer_python = peer_mod.ensure_litellm(verbose=verbose)
            for i, job in enumerate(jobs):
                if verbose:
                    _progress(i, len(jobs), job, "...")
                t0 = time.time()
                try:
                    result = run_job(ctx, job, i)
                except Exception as exc:  # one failed job must not lose the others
                    import traceback

                    (raw / f"{i:03d}_{job.label()}.error.txt").write_text(traceback.format_exc())
                    if verbose:
                        lines = [x for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
                        _progress(i + 1, len(jobs), job, f"FAILED: {lines[0][:120]} ... {lines[-1][:160]}")
                    failed.append((job, str(exc)))
                    continue
                written.append(write_result(result, opts.out, job, t0))
                results.append(result)
                if verbose:
                    loc = result["locust"]
                    _progress(i + 1, len(jobs), job, f"{loc['rps']} rps, p50 {loc['p50_ms']} ms, "
                                                     f"{time.time() - t0:.1f}s")
        finally:
            mock.stop()
    if verbose:
        print(summary_table(results))
        for job, err in failed:
            print(f"FAILED {job.target} {job.profile} {job.config} {job.variant}: see logs in {raw}/", file=sys.stderr)
        print(f"\n{len(written)} result files in {opts.out}/ ({time.time() - t_start:.0f}s); logs in {raw}/")
    return written


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_table(results: list[dict]) -> str:
    head = ["target", "profile", "config", "rps", "p50 ms", "p99 ms", "db_q/req", "decr/req", "models/req",
            "cpu ms/req", "peak RSS MB", "fail"]
    rows = [head]
    for r in results:
        pr, loc = r["per_request"], r["locust"]
        cfg = r["config"] + (f" [{r['variant']}]" if r["variant"] else "")
        rows.append([r["target"], r["profile"], cfg, _fmt(loc["rps"], 0), _fmt(loc["p50_ms"], 3),
                     _fmt(loc["p99_ms"], 3), _fmt(pr.get("db_queries")), _fmt(pr.get("decryptions")),
                     _fmt(pr.get("upstream_model_list_requests"), 3), _fmt(pr.get("cpu_ms"), 3),
                     _fmt(r["server"]["peak_rss_mb"], 1), str(loc["failures"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
