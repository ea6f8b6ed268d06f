"""``python -m benchmarks run``: run the jobs of a plan, each into one immutable result file.

For every job: a fresh copy of the seeded DB (SQLite: a file copy; PostgreSQL: a fresh schema
``bench_<id>`` loaded with COPY, dropped afterwards), a fresh server (pinned to CPU 0) with its
store and cache backend set explicitly in its environment (Redis: a key prefix of its own, deleted
afterwards), a warm-up, ``DELETE /_stats`` and ``DELETE /_mock/stats``, then the measured window
(Locust headless, pinned to CPU 1 with the mock, or the in-process concurrency-1 probe), then
``/_stats``, process CPU and peak RSS. Each job writes one immutable JSON file into ``out``;
subprocess logs, Locust's own JSON/CSV and the DBs stay in ``out/raw/<run id>/`` (gitignored).

``--db-rtt-ms`` / ``--redis-rtt-ms`` put a delay proxy between the server and PostgreSQL / Redis
(``network``); ``--repeat N`` runs the plan N times over, interleaved, one result file each.

``--multi-node N`` adds the target ``forge-ref-nodes``: N separate ``forge-ref serve --processes 1``
servers on one PostgreSQL and one Redis, every node pinned to CPU 0 (Locust and the mock on CPU 1),
Locust spreading its users over the nodes (``FORGE_HOSTS``); CPU and RSS are summed over the nodes.

From Python, ``with Session(Options(...)) as s: s.run(job)`` runs one ``plan.Job`` and returns its
result file; ``execute(opts, jobs)`` checks and runs a plan (the one path of the command and of
``benchmarks.api``); ``run(...)`` is the whole command.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography.fernet import Fernet

from . import procs
from .console import progress_line, summary_table, verdicts
from .infra import Seeds, check_services
from .measure import Window, measure
from .network import address
from .plan import Job, Options, named_plan, plan
from .profiles import PROFILES
from .results import SCHEMA_VERSION, git_commit, machine, stamp, utc, write_result
from .targets import Target, stale_bound, start_mock, start_target

WARMUPS = {"touch": "one request of each kind per tenant", "locust": "{warmup:g}s of the profile",
           "sequential": "{sequential} sequential chats", "none": "none (cold caches)"}


class Session:
    """What the jobs of one run share: options, provenance, CPU pinning, the raw-output directory,
    one encryption key, the mock provider every target talks to, and the seeded tenants. Entering
    starts the mock; leaving stops it and removes the seeded files."""

    def __init__(self, opts: Options, run_id: str | None = None) -> None:
        self.opts = opts
        self.commit, self.dirty = git_commit()
        self.started = time.time()
        # ``run_id``: several sessions of one command (production's, one per mock configuration) share one
        self.run_id = run_id or f"{stamp(self.started)}_{self.commit}"
        self.raw = opts.out / "raw" / self.run_id
        self.machine = machine()
        self.pinning = procs.pinning_plan() if opts.pin else None
        self.encryption_key = Fernet.generate_key().decode()  # seeding and every server of every store use it

    def __enter__(self) -> Session:
        self.raw.mkdir(parents=True, exist_ok=True)
        self._work = tempfile.TemporaryDirectory(prefix="forge-bench-")
        self.work = Path(self._work.name)
        self.mock, self.mock_url = start_mock(self.raw, latency_ms=self.opts.mock_latency_ms,
                                              chunk_delay_ms=self.opts.mock_chunk_delay_ms, cpus=self.cpu("mock"),
                                              timing=self.opts.mock_timing)
        try:
            procs.wait_ready(self.mock, self.mock_url + "/_mock/stats")
            # the mock's effective configuration, as it reports it: recorded in every result file
            self.mock_config = procs.http_json("GET", self.mock_url + "/_mock/config")
        except BaseException:
            self.__exit__()
            raise
        self.seeds = Seeds(work=self.work, keys_dir=self.raw, mock_url=self.mock_url,
                           encryption_key=self.encryption_key, tenants_of=self.opts.tenants_for)
        return self

    def __exit__(self, *exc) -> None:
        self.mock.stop()
        self._work.cleanup()

    def cpu(self, role: str) -> str | None:
        return self.pinning[role] if self.pinning else None

    def run(self, job: Job, index: int = 0) -> Path:
        """Measure one job and write its result file."""
        started = time.time()
        return write_result(self.job_result(job, index, started), self.opts.out, job.file_label(), started)

    def job_result(self, job: Job, index: int, started: float) -> dict:
        """One job's result document (logs under ``raw`` named ``<index>_<label>``)."""
        opts, spec = self.opts, PROFILES[job.profile]
        if spec.probe and job.nodes > 1:
            raise ValueError("the concurrency-1 probe measures one server: no multi-node latency-c1")
        users = job.users or spec.users or opts.users
        duration = spec.duration or opts.duration
        warm = spec.warmup if job.is_forge else "sequential"
        name = f"{index:03d}_{job.label()}"
        target = start_target(self, job, name)
        try:
            window = measure(self, job, target, spec, warm=warm, users=users, duration=duration, name=name)
        finally:
            target.stop()
        warm_desc = WARMUPS[warm].format(warmup=opts.warmup, sequential=2 if opts.mock_timing else 100)
        if job.nodes > 1 and warm == "touch":
            warm_desc += f", on each of the {job.nodes} nodes"
        settings = {
            "duration_s": round(window.load["duration_s"], 1) if spec.probe else duration,
            "users": 1 if spec.probe else users, "warmup": warm_desc,
            "tenants": len(self.seeds[job.profile].doc["tenants"]) if job.is_forge else None,
        }
        return self._result(job, target, window, settings, started)

    def _result(self, job: Job, target: Target, w: Window, settings: dict, started: float) -> dict:
        opts, stats = self.opts, w.stats
        counters = stats["counters"] if stats else {}
        requests = counters.get("requests", 0) if stats else w.load["requests"]
        span = w.load["duration_s"] or w.wall  # the measured window proper (Locust's start-up excluded)
        if span < 1.0:
            span = 0.0  # a burst: utilisation over a few milliseconds means nothing
        per_request = {k: round(v / requests, 4) for k, v in counters.items()} if requests else {}
        per_request["cpu_ms"] = round(1000 * w.server_cpu / requests, 4) if requests else None
        server = {
            "process": "mock" if job.target == "mock-direct" else job.target,
            "cpu_seconds": round(w.server_cpu, 3),
            "cpu_ms_per_request": per_request["cpu_ms"],
            "cpu_utilisation": round(w.server_cpu / span, 3) if span > 0 else None,
            "rss_start_mb": round(w.rss_start / 2**20, 1),
            "peak_rss_mb": round(w.peak_rss / 2**20, 1),
            "processes": stats.get("processes", 1) if stats else 1,
        }
        if w.per_node:
            server["nodes"] = w.per_node  # cpu_seconds, rss_start_mb and peak_rss_mb above are sums over these
        return {
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "target": job.target, "profile": job.profile,
            "config": job.config, "variant": job.variant,
            "caches_enabled": stats["caches_enabled"] if stats else {}, "counters": counters,
            "caches": stats["caches"] if stats else {}, "requests": requests, "per_request": per_request,
            "stale_responses": (w.load.get("checks") or {}).get("stale_responses") if job.profile == "churn" else None,
            "locust": {k: v for k, v in w.load.items() if k != "server_timing"},
            "server_timing": w.load.get("server_timing"), "server": server,
            "mock_calls": w.mock_stats.get("calls", {}),
            "mock": {"total_calls": w.mock_stats.get("total"), "cpu_seconds": round(w.mock_cpu, 3)},
            "load_generator": self._load_side(job, w, span),
            "noise": w.noise, "machine": self.machine, "commit": self.commit, "commit_dirty": self.dirty,
            # per service the server used: the round trip asked and measured, the delay proxy and its CPU
            "network": {svc: next((h.record(w.proxy_cpu.get(svc), requests) for h in target.hops if h.service == svc),
                                  None) for svc in ("db", "redis")},
            "settings": {
                **settings,
                "processes": (1 if job.nodes > 1 else opts.processes) if job.is_forge else 1,
                "upstream_client": job.upstream_client, "pinning": self._pinning(job),
                "stale_bound_s": stale_bound(opts.processes, job.nodes) if job.is_forge else None,
                "server_env": dict(job.server_env), "quick": opts.quick,
                "server_timing": dict(job.server_env).get("FORGE_SERVER_TIMING", "1") == "1" if job.is_forge else None,
                "mock": self.mock_config,  # GET /_mock/config: latency_ms, chunk_delay_ms and the timing model
                # what the forge-ref server stored in and cached with (always recorded; n/a for other targets)
                "store": job.store if job.is_forge else None,
                "cache_backend": job.backend if job.is_forge else None,
                "db": target.store.get("db"), "redis_prefix": target.store.get("redis_prefix"), "nodes": job.nodes,
                "db_rtt_ms": job.db_rtt_ms, "redis_rtt_ms": job.redis_rtt_ms,
                "net_jitter_ms": opts.net_jitter_ms if job.db_rtt_ms or job.redis_rtt_ms else 0.0,
                "repeat": job.repeat, "repeats": job.repeats,
                "production": opts.production,  # its phase and the simulated conditions, in one line
            },
            "started_at": utc(started), "finished_at": utc(time.time()),
        }

    def _load_side(self, job: Job, w: Window, span: float) -> dict:
        """Locust's CPU, and whether it was saturated (>= 90% of the CPUs it was pinned to): a saturated
        generator measures itself, not the server."""
        probe = PROFILES[job.profile].probe
        util = round(w.load_cpu / span, 3) if w.load_cpu and span > 0 else None
        cpus = len(self.cpu("load").split(",")) if self.pinning else os.cpu_count() or 1
        return {"cpu_seconds": round(w.load_cpu, 3) if w.load_cpu is not None else None, "cpu_utilisation": util,
                "tool": "probe (in the runner)" if probe else "locust",
                "processes": None if probe else self.opts.load_processes, "cpus": cpus,
                "saturated": None if util is None else util >= 0.9 * cpus}

    def _pinning(self, job: Job) -> dict | None:
        """The pinning this job really had (a multi-process server is left unpinned)."""
        if not self.pinning:
            return None
        pin = dict(self.pinning)
        if job.is_forge and self.opts.processes > 1 and job.nodes == 1:
            pin["server"] = None
        if job.nodes > 1:
            pin["note"] = (f"all {job.nodes} nodes (one process each) on CPU {pin['server']}; Locust and the mock on "
                           f"CPU {pin['load']}; PostgreSQL and Redis unpinned")
        if job.target == "mock-direct":
            pin["server"] = pin["mock"]  # the process under test is the mock itself
        if job.db_rtt_ms or job.redis_rtt_ms:
            pin["delay_proxies"] = pin["load"]  # network.open_hop pins them with the load side
        return pin


def check_addresses(jobs: list[Job], opts: Options) -> None:
    """Stop before anything runs if a delay proxy is asked for a service it cannot reach by TCP."""
    for service, url, asked in (("db", opts.postgres_url, any(j.db_rtt_ms for j in jobs)),
                                ("redis", opts.redis_url, any(j.redis_rtt_ms for j in jobs))):
        if asked:
            try:
                address(url, service)
            except ValueError as exc:
                raise SystemExit(str(exc)) from None
    if opts.net_jitter_ms < 0:
        raise SystemExit("--net-jitter-ms must be >= 0")


Progress = Callable[[int, int, Job, str], None]
STARTING = "..."  # the note ``progress`` gets when a job starts (any other note: the job ended)


def run_jobs(session: Session, jobs: list[Job],
             progress: Progress | None = None) -> tuple[list[Path], list[dict], list[Job]]:
    """Run ``jobs`` one after the other: (result files written, their documents, the jobs that failed).
    A failure is reported through ``progress`` and its traceback kept in ``raw``; the other jobs still run."""
    written, results, failed = [], [], []
    for i, job in enumerate(jobs):
        if progress:
            progress(i, len(jobs), job, STARTING)
        t0 = time.time()
        try:
            result = session.job_result(job, i, t0)
        except Exception as exc:  # one failed job must not lose the others
            (session.raw / f"{i:03d}_{job.label()}.error.txt").write_text(traceback.format_exc())
            if progress:
                lines = [x for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
                progress(i + 1, len(jobs), job, f"FAILED: {lines[0][:120]} ... {lines[-1][:160]}")
            failed.append(job)
            continue
        written.append(write_result(result, session.opts.out, job.file_label(), t0))
        results.append(result)
        if progress:
            loc = result["locust"]
            progress(i + 1, len(jobs), job, f"{loc['rps']} rps, p50 {loc['p50_ms']} ms, {time.time() - t0:.1f}s")
    return written, results, failed


@dataclass(frozen=True)
class Outcome:
    """What :func:`execute` did: the result files written, their documents, the jobs that failed, where the
    logs are (``out/raw/<run id>/``) and when the run started (epoch seconds)."""

    files: list[Path]
    results: list[dict]
    failed: list[Job]
    raw: Path
    started: float


def execute(opts: Options, jobs: list[Job], progress: Progress | None = None, *, optional: bool = False,
            verbose: bool = True) -> Outcome:
    """Check that the services ``jobs`` need answer (``optional``: leave out, with a warning, the jobs whose
    service does not, else stop), then run them in one :class:`Session`. Raises ``SystemExit`` with the
    reason before anything starts."""
    check_addresses(jobs, opts)
    jobs = check_services(jobs, opts.postgres_url, opts.redis_url, optional=optional)
    with Session(opts) as session:
        if any(j.target == "litellm" for j in jobs):
            from . import peer as peer_mod

            peer_mod.ensure_litellm(verbose=verbose)
        written, results, failed = run_jobs(session, jobs, progress)
    return Outcome(written, results, failed, session.raw, session.started)


def run(*, profiles: list[str] | None = None, configs: list[str] | None = None, out: str | os.PathLike = "results",
        duration: float | None = None, users: int | None = None, quick: bool = False, baselines: bool | None = None,
        peer: str | None = None, processes: int = 1, tenants: int | None = None, warmup: float | None = None,
        pin: bool = True, verbose: bool = True, mock_latency_ms: float = 0.0,
        mock_chunk_delay_ms: float = 0.0, stores=None, backends=None, multi_node: int = 0,
        postgres_url: str | None = None, redis_url: str | None = None, db_rtt_ms=None, redis_rtt_ms=None,
        net_jitter_ms: float = 0.0, repeat: int = 1, named: str | None = None, mock_timing: dict | None = None,
        load_processes: int = 1, think_s: str | None = None) -> list[Path]:
    """Run the matrix; return the result files written (one per job).

    ``stores`` (``sqlite``, ``postgres``) and ``backends`` (``memory``, ``redis``): lists or comma
    strings, each forge-ref job runs once per combination (default sqlite, memory). ``multi_node`` N:
    also N forge-ref servers on one PostgreSQL and one Redis (target ``forge-ref-nodes``).
    ``db_rtt_ms`` / ``redis_rtt_ms``: round trips (ms) added by a delay proxy, each job on PostgreSQL /
    Redis once per value (0: direct); ``net_jitter_ms`` ± on each proxy's one-way delay. ``repeat`` N:
    the whole plan N times, interleaved. ``named``: a named plan (``plan.NAMED_PLANS``) instead of the
    matrix (profiles, configurations, stores, backends and baselines are then the plan's). ``mock_timing``:
    the mock's timing model (``mock_timing`` fields); ``load_processes`` N > 1: Locust's distributed mode;
    ``think_s``: realistic-chat's think time."""
    opts = Options(out=Path(out), duration=duration, users=users, processes=processes, warmup=warmup, quick=quick,
                   tenants=tenants, pin=pin, mock_latency_ms=mock_latency_ms,
                   mock_chunk_delay_ms=mock_chunk_delay_ms, postgres_url=postgres_url, redis_url=redis_url,
                   net_jitter_ms=net_jitter_ms, mock_timing=mock_timing or {}, load_processes=load_processes,
                   think_s=think_s)
    if named:
        jobs = named_plan(named, repeat=repeat, tenants_of=opts.tenants_for)
    else:
        jobs = plan(quick=quick, profiles=profiles, configs=configs,
                    baselines=True if baselines is None else baselines, peer=peer, tenants_of=opts.tenants_for,
                    stores=stores, backends=backends, multi_node=multi_node, db_rtt_ms=db_rtt_ms,
                    redis_rtt_ms=redis_rtt_ms, repeat=repeat)
    done = execute(opts, jobs, progress_line if verbose else None, verbose=verbose,
                   optional=stores is None and backends is None and not multi_node and not named)
    if verbose:
        print(summary_table(done.results))
        for line in verdicts(done.results):
            print(line)
        for job in done.failed:
            print(f"FAILED {job.target} {job.profile} {job.config} {job.variant}: see logs in {done.raw}/",
                  file=sys.stderr)
        print(f"\n{len(done.files)} result files in {opts.out}/ ({time.time() - done.started:.0f}s); "
              f"logs in {done.raw}/")
    return done.files
