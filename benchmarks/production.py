"""``python -m benchmarks production``: the gateway under production-like conditions, its own plan.

``./dev.sh bench`` (``run --quick``) stays what it is; this command answers the questions of a
deployment instead (see the README, "Under production-like conditions"). Its plan is two phases,
each a ``runner.Session`` of its own (one mock configuration each), under one run id:

- ``streams``: the mock's timing model on (time to first token drawn from a lognormal, a token rate
  and an answer length, a few tokens per chunk; model lists slow and rate limited per key).
  ``long-streams`` at a few concurrency levels (every user holds one stream open), forge-ref ``all``
  against mock-direct (and LiteLLM with ``--peer litellm``), each level the three targets back to
  back; Locust's own distributed mode (``--processes``) drives it. ``realistic-chat`` (think time,
  mostly streams, a model list now and then) with ``all`` and with every layer but ``models``, so the
  model-list 429s show with the layer on and off.
- ``db``: an instant mock, forge-ref on PostgreSQL behind the delay proxy at each round trip, for the
  cache configurations: latency at concurrency 1 (the runner's probe; a saturated closed loop would
  hide it), and ``agent-loop`` (short tool-calling turns back to back, one key per user) for
  throughput, p50/p99 under load and the PostgreSQL pool's waits (10 connections).

Every job writes a result file like ``run``'s, with ``settings.production`` naming its phase and the
simulated conditions in one line; ``production_report`` reads them back.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Job, Options, store_variant
from .profiles import all_but

DB_CONFIGS = ["none", "all", "user", "service", "keys", all_but("user"), all_but("service"), all_but("keys")]
LOAD_CONFIGS = ["none", "all"]  # agent-loop under load: the two ends (each job costs a full window)
MODELS_OFF = all_but("models")


@dataclass(frozen=True)
class Size:
    """How big a production run is: ``DEFAULT`` fits in about 10 minutes on 2 CPUs, ``QUICK`` in about two."""

    stream_levels: tuple[int, ...]  # concurrent streams of long-streams
    chat_users: int  # realistic-chat users
    think_s: str  # their think time, LOW-HIGH seconds
    agent_users: int  # agent-loop users (closed loop)
    db_rtts: tuple[float, ...]  # round trips to PostgreSQL, ms
    db_configs: tuple[str, ...]  # configurations measured at concurrency 1
    load_configs: tuple[str, ...]  # configurations measured under agent-loop's load
    stream_duration: float  # measured seconds of a streams job (streams in flight then finish, up to 30 s)
    db_duration: float  # measured seconds of an agent-loop job (the probe takes a third, 1-5 s)
    load_processes: int  # Locust processes of the streams phase (> 1: Locust's own --processes)
    mock: dict = field(default_factory=dict)  # the streams phase's timing model (MockConfig fields)


DEFAULT = Size(
    stream_levels=(200, 1000, 2000), chat_users=200, think_s="1-3", agent_users=32, db_rtts=(0.0, 0.5, 2.0),
    db_configs=tuple(DB_CONFIGS), load_configs=tuple(LOAD_CONFIGS), stream_duration=12.0, db_duration=6.0,
    # One Locust process: 2,000 streams cost it about 0.3 CPU here; some runs with --processes 2 had every stream
    # after the first ones answered 401 (an open finding: see the README), never a run with one process.
    load_processes=1,
    # ~300 ms to the first token, 25-50 tokens/s, 100-200 tokens: a stream lasts 2-8 s, in chunks of 15 tokens
    # (real providers send 1-5 per chunk: fewer, bigger chunks keep the 2-CPU rig's own work in bounds).
    # A model list takes 300-800 ms; each key may list once per 10 s per API.
    mock={"ttft_ms": 300.0, "ttft_sigma": 0.25, "token_rate": (25, 50), "output_tokens": (100, 200),
          "tokens_per_chunk": 15, "models_latency_ms": (300, 800), "models_rate_limit": 1,
          "models_rate_window": 10.0, "seed": 1})
QUICK = Size(
    stream_levels=(10,), chat_users=10, think_s="0.1-0.3", agent_users=4, db_rtts=(0.0, 2.0),
    db_configs=("none", "all"), load_configs=("none", "all"), stream_duration=2.0, db_duration=3.0,
    load_processes=2,
    mock={"ttft_ms": 20.0, "ttft_sigma": 0.25, "token_rate": (200, 400), "output_tokens": (20, 40),
          "tokens_per_chunk": 5, "models_latency_ms": (5, 20), "models_rate_limit": 1,
          "models_rate_window": 10.0, "seed": 1})
PHASES = ("streams", "db")


@dataclass(frozen=True)
class Phase:
    name: str
    conditions: str  # what is simulated, one line (results and report)
    jobs: tuple[Job, ...]
    options: dict  # Options fields of its session


def _mock_line(mock: dict) -> str:
    def rng(v) -> str:
        return f"{v[0]:g}-{v[1]:g}" if isinstance(v, (tuple, list)) else f"{v:g}"

    return (f"mock provider: time to first token lognormal, median {mock['ttft_ms']:g} ms (sigma "
            f"{mock['ttft_sigma']:g}); {rng(mock['token_rate'])} tokens/s; {rng(mock['output_tokens'])} tokens per "
            f"answer, {mock['tokens_per_chunk']} per chunk; model lists take {rng(mock['models_latency_ms'])} ms, "
            f"{mock['models_rate_limit']} per key and API per {mock['models_rate_window']:g} s (429 beyond)")


def streams_phase(size: Size, peer: str | None) -> Phase:
    targets = ["mock-direct", "forge-ref", *(["litellm"] if peer == "litellm" else [])]

    def job(target: str, profile: str, users: int, config: str = "all", variant: str = "") -> Job:
        forge = target == "forge-ref"
        return Job(target, profile, config if forge else "n/a", variant, users=users)

    jobs = [job(t, "long-streams", n, variant=f"c{n}") for n in size.stream_levels for t in targets]
    jobs += [job(t, "realistic-chat", size.chat_users) for t in targets]
    jobs.insert(len(jobs) - len(targets) + 2, job("forge-ref", "realistic-chat", size.chat_users, MODELS_OFF))
    line = (_mock_line(size.mock) + f"; long-streams: {', '.join(map(str, size.stream_levels))} streams held open "
            f"at once; realistic-chat: {size.chat_users} users thinking {size.think_s} s between turns; "
            f"SQLite store, in-process caches")
    return Phase("streams", line, tuple(jobs), {"mock_timing": size.mock, "duration": size.stream_duration,
                                                 "load_processes": size.load_processes, "think_s": size.think_s})


def db_phase(size: Size) -> Phase:
    def forge(profile: str, config: str, rtt: float, users: int = 0) -> Job:
        return Job("forge-ref", profile, config, store_variant("postgres", "memory", db_rtt_ms=rtt), store="postgres",
                   db_rtt_ms=rtt, users=users)

    jobs = [Job("mock-direct", "latency-c1"), Job("mock-direct", "agent-loop", users=size.agent_users)]
    for rtt in size.db_rtts:  # each round trip: every configuration at concurrency 1, then under load
        jobs += [forge("latency-c1", c, rtt) for c in size.db_configs]
        jobs += [forge("agent-loop", c, rtt, size.agent_users) for c in size.load_configs]
    line = (f"PostgreSQL (pool of 10 connections) behind a TCP delay proxy adding "
            f"{', '.join(f'{r:g}' for r in size.db_rtts)} ms per round trip; instant mock provider; latency at "
            f"concurrency 1 (probe) and agent-loop with {size.agent_users} users back to back, one key each")
    return Phase("db", line, tuple(jobs), {"duration": size.db_duration, "users": size.agent_users})


def production_plan(*, quick: bool = False, peer: str | None = None, phases=None) -> list[Phase]:
    """The phases of a production run (nothing started)."""
    if peer not in (None, "litellm"):
        raise SystemExit(f"unknown peer {peer!r}; supported: litellm")
    chosen = list(phases or PHASES)
    bad = [p for p in chosen if p not in PHASES]
    if bad:
        raise SystemExit(f"unknown phase(s) {bad}; choose from {', '.join(PHASES)}")
    size = QUICK if quick else DEFAULT
    built = {"streams": lambda: streams_phase(size, peer), "db": lambda: db_phase(size)}
    return [built[p]() for p in PHASES if p in chosen]


def run_production(*, quick: bool = False, peer: str | None = None, phases=None, out: str | os.PathLike = "results",
                   pin: bool = True, verbose: bool = True, postgres_url: str | None = None,
                   load_processes: int | None = None) -> list[Path]:
    """Run the production plan; return the result files written."""
    from . import runner
    from .console import progress_line, summary_table
    from .infra import check_services
    from .results import git_commit, stamp

    plan = production_plan(quick=quick, peer=peer, phases=phases)
    started = time.time()
    run_id = f"{stamp(started)}_{git_commit()[0]}"
    written: list[Path] = []
    for phase in plan:
        extra = dict(phase.options)
        if load_processes:
            extra["load_processes"] = load_processes
        opts = Options(out=Path(out), quick=quick, pin=pin, postgres_url=postgres_url,
                       production={"phase": phase.name, "conditions": phase.conditions}, **extra)
        jobs = list(phase.jobs)
        runner.check_addresses(jobs, opts)
        jobs = check_services(jobs, opts.postgres_url, opts.redis_url)
        with runner.Session(opts, run_id=run_id) as session:
            if any(j.target == "litellm" for j in jobs):
                from . import peer as peer_mod

                peer_mod.ensure_litellm(verbose=verbose)
            if verbose:
                print(f"phase {phase.name}: {phase.conditions}", file=sys.stderr)
            files, results, failed = runner.run_jobs(session, jobs, progress_line if verbose else None)
        written += files
        if verbose:
            print(summary_table(results))
            for job in failed:
                print(f"FAILED {job.label()}: see logs in {session.raw}/", file=sys.stderr)
    if verbose:
        print(f"\n{len(written)} result files in {Path(out).resolve()}/ ({time.time() - started:.0f}s); "
              "then: python -m benchmarks report")
    return written

