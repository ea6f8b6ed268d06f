"""What a run measures: its options, and the plan, a list of ``Job`` values built from them.

A job is one cell of the matrix targets x profiles x cache configurations x stores x cache
backends (x the variants a profile asks for, such as bounded caches; x the round trips to
PostgreSQL and Redis, for the jobs that use them). ``repeat`` N runs the whole list N times, one
pass after the other (A B C A B C), so drift in the machine's speed spreads over every job instead
of favouring the first. Building the plan starts nothing, so it can be inspected, filtered or
extended before anything runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from forge_ref.settings import Settings, parse_layers
from forge_ref.upstream import CLIENTS

from .profiles import (
    FULL_CONFIGS,
    FUTURE_PLAN,
    MATRIX_PROFILES,
    PROFILE_CONFIGS,
    PROFILES,
    QUICK_BACKEND_JOBS,
    QUICK_PLAN,
    QUICK_TIMING_JOB,
    variants,
)

DEFAULT_CLIENT = Settings.upstream_client
OTHER_CLIENTS = [c for c in CLIENTS if c != DEFAULT_CLIENT]

STORES = ("sqlite", "postgres")
BACKENDS = ("memory", "redis")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Job:
    # forge-ref (its default upstream client), forge-ref-curl, forge-ref-httpx, forge-ref-nodes, bare-proxy-aiohttp,
    # bare-proxy-curl, bare-proxy-httpx, mock-direct, litellm
    target: str
    profile: str
    config: str = "n/a"  # cache layers for forge-ref targets
    variant: str = ""  # includes the store/backend when not sqlite/memory, e.g. "postgres+redis"
    server_env: tuple[tuple[str, str], ...] = ()
    store: str = "sqlite"  # sqlite | postgres (forge-ref targets)
    backend: str = "memory"  # memory | redis (forge-ref targets)
    nodes: int = 1  # forge-ref-nodes: separate servers on one PostgreSQL and one Redis
    db_rtt_ms: float = 0.0  # round trip added to PostgreSQL by a delay proxy (0: direct)
    redis_rtt_ms: float = 0.0  # likewise to Redis
    repeat: int = 1  # which repetition of the plan this is, 1..repeats
    repeats: int = 1
    users: int = 0  # Locust users of this job (0: the profile's, else --users); production's concurrency steps

    @property
    def is_forge(self) -> bool:
        return self.target.startswith("forge-ref")

    @property
    def upstream_client(self) -> str | None:
        """A target named for a client (``forge-ref-curl``, ``bare-proxy-httpx``) uses that one; forge-ref
        and its nodes use the gateway's default."""
        if self.target.startswith(("forge-ref", "bare-proxy")):
            suffix = self.target.rsplit("-", 1)[-1]
            return suffix if suffix in CLIENTS else DEFAULT_CLIENT
        return None

    def label(self) -> str:
        parts = [self.profile, self.config if self.target == "forge-ref" else self.target]
        if self.target != "forge-ref" and self.is_forge:
            parts.append(self.config)
        if self.variant:
            parts.append(self.variant)
        return "_".join(p.replace(",", "+").replace("=", "") for p in parts)

    def file_label(self) -> str:
        """The label, plus the repetition when the plan repeats: ``steady_all_rep2of3``."""
        return self.label() + (f"_rep{self.repeat}of{self.repeats}" if self.repeats > 1 else "")


@dataclass
class Options:
    """How every job of a run is measured; ``None`` picks the default (some depend on ``quick``)."""

    out: Path = Path("results")
    duration: float | None = None  # measured seconds per job: 15, --quick 8
    users: int | None = None  # Locust users: 32
    processes: int = 1
    warmup: float | None = None  # seconds of Locust warm-up: 5, --quick 2
    quick: bool = False
    tenants: int | None = None  # tenant count of many-tenants (the other profiles' counts are part of them)
    pin: bool = True
    mock_latency_ms: float = 0.0
    mock_chunk_delay_ms: float = 0.0
    postgres_url: str | None = None  # $FORGE_BENCH_POSTGRES_URL, else DEFAULT_POSTGRES_URL
    redis_url: str | None = None  # $FORGE_BENCH_REDIS_URL, else DEFAULT_REDIS_URL
    net_jitter_ms: float = 0.0  # ± jitter of every delay proxy's one-way delay
    # The mock's timing model: MockConfig fields (ttft_ms, ttft_sigma, token_rate, output_tokens, tokens_per_chunk,
    # models_latency_ms, models_rate_limit, models_rate_window, seed), given as flags; unset: the mock's defaults.
    mock_timing: dict = field(default_factory=dict)
    load_processes: int = 1  # Locust processes (>1: Locust's own --processes, a master and forked workers)
    think_s: str | None = None  # realistic-chat's think time, LOW-HIGH seconds (None: the locustfile's 1-3)
    production: dict | None = None  # python -m benchmarks production: {"phase", "conditions"}, kept in settings

    def __post_init__(self) -> None:
        self.out = Path(self.out).resolve()
        self.duration = self.duration or (8.0 if self.quick else 15.0)
        self.users = self.users or 32
        self.warmup = self.warmup if self.warmup is not None else (2.0 if self.quick else 5.0)
        self.postgres_url = self.postgres_url or os.environ.get("FORGE_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL
        self.redis_url = self.redis_url or os.environ.get("FORGE_BENCH_REDIS_URL") or DEFAULT_REDIS_URL
        if self.load_processes < 1:
            raise SystemExit(f"--load-processes {self.load_processes}: at least 1")

    def tenants_for(self, profile: str) -> int:
        spec = PROFILES[profile]
        if self.tenants and profile == "many-tenants":
            return self.tenants
        return spec.quick_tenants if (self.quick and spec.quick_tenants) else spec.tenants


def store_variant(store: str, backend: str, variant: str = "", nodes: int = 1, *, db_rtt_ms: float = 0.0,
                  redis_rtt_ms: float = 0.0) -> str:
    """The variant label of a job: ``postgres``, ``redis``, ``postgres+redis`` (nothing for sqlite/memory),
    the round trips added (``db-rtt=2``, ``redis-rtt=0.5``), then the profile's own variant (``bounded``,
    ``coalesce=1``) and the node count, joined by ``+``."""
    parts = [p for p in (store if store != "sqlite" else "", backend if backend != "memory" else "",
                         f"db-rtt={db_rtt_ms:g}" if db_rtt_ms else "", f"redis-rtt={redis_rtt_ms:g}" if redis_rtt_ms else "",
                         variant, f"nodes={nodes}" if nodes > 1 else "") if p]
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


def _rtts(values, what: str) -> list[float]:
    """``--db-rtt-ms 0,0.5,2`` (a comma string, or a list of strings or numbers) as distinct floats."""
    if values is None:
        return [0.0]
    items = values.split(",") if isinstance(values, str) else [
        v for item in values for v in (item.split(",") if isinstance(item, str) else [item])]
    out = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            value = float(item)
        except ValueError:
            raise SystemExit(f"{what}: {item!r} is not a number of milliseconds") from None
        if not math.isfinite(value) or value < 0:
            raise SystemExit(f"{what}: {item!r} must be a round trip >= 0 ms")
        out.append(value)
    if not out:
        raise SystemExit(f"{what}: no value given")
    return list(dict.fromkeys(out))


def _check_configs(configs: list[str] | None) -> None:
    for config in configs or ():
        try:
            parse_layers(config)
        except ValueError as exc:
            raise SystemExit(f"configuration {config!r}: {exc}") from None


def plan(*, quick: bool = False, profiles: list[str] | None = None, configs: list[str] | None = None,
         baselines: bool = True, peer: str | None = None, tenants_of=None, stores=None, backends=None,
         multi_node: int = 0, db_rtt_ms=None, redis_rtt_ms=None, repeat: int = 1) -> list[Job]:
    """The jobs of a run. Every forge-ref job of the matrix runs once per store x cache backend;
    ``multi_node`` N > 1 adds ``forge-ref-nodes`` jobs (PostgreSQL + Redis, N servers) for the load
    profiles given (default ``steady``) and the configurations given (default ``all``).
    ``db_rtt_ms`` / ``redis_rtt_ms`` (round trips in ms, a list or a comma string; 0 is direct): every
    job on PostgreSQL / Redis runs once per value. ``repeat`` N: the whole list N times, interleaved.
    ``tenants_of(profile)`` sizes the bounded-cache variants (default: the profile's own count)."""
    tenants_of = tenants_of or (lambda p: PROFILES[p].tenants)
    combos = [(st, be) for st in _split(stores, STORES, "store") for be in _split(backends, BACKENDS, "cache backend")]
    db_rtts, redis_rtts = _rtts(db_rtt_ms, "--db-rtt-ms"), _rtts(redis_rtt_ms, "--redis-rtt-ms")
    if repeat < 1:
        raise SystemExit(f"--repeat {repeat}: run each job at least once")
    _check_configs(configs)
    chosen = profiles
    if profiles is None:
        profiles = list(QUICK_PLAN) if quick else list(MATRIX_PROFILES)
    jobs: list[Job] = []

    def on(target: str, profile: str, config: str, variant: str, env: dict, store: str, backend: str,
           nodes: int = 1) -> list[Job]:
        """One job per round trip to the store and the cache backend it uses."""
        env_items = tuple(sorted(env.items()))
        return [Job(target, profile, config, store_variant(store, backend, variant, nodes, db_rtt_ms=d, redis_rtt_ms=r),
                    env_items, store, backend, nodes, d, r)
                for d in (db_rtts if store == "postgres" else [0.0])
                for r in (redis_rtts if backend == "redis" else [0.0])]

    def forge(target: str, profile: str, config: str, variant: str = "", env: dict | None = None) -> list[Job]:
        return [j for st, be in combos for j in on(target, profile, config, variant, env or {}, st, be)]

    for profile in profiles:
        if profile not in PROFILES:
            raise SystemExit(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        default = QUICK_PLAN.get(profile, ["none", "all"]) if quick else PROFILE_CONFIGS.get(profile, FULL_CONFIGS)
        cfgs = configs or default
        for config in cfgs:
            for variant, env in variants(profile, config, tenants_of(profile)):
                jobs += forge("forge-ref", profile, config, variant, env)
    if quick and combos == [("sqlite", "memory")] and chosen is None and configs is None:
        for profile, config in QUICK_BACKEND_JOBS:  # one job on the shared store and cache
            jobs += on("forge-ref", profile, config, "", {}, "postgres", "redis")
        profile, config, variant, env = QUICK_TIMING_JOB
        jobs += on("forge-ref", profile, config, variant, env, "sqlite", "memory")
    if baselines:
        # forge-ref against the bare proxy with its own client; the other clients, in forge-ref and bare
        jobs += [Job("mock-direct", "steady"), Job(f"bare-proxy-{DEFAULT_CLIENT}", "steady")]
        jobs += [Job(f"forge-ref-{c}", "steady", "all") for c in (["curl"] if quick else OTHER_CLIENTS)]
        if not quick:
            jobs += [Job(f"bare-proxy-{c}", "steady") for c in OTHER_CLIENTS]
        jobs += [Job("mock-direct", "latency-c1"), Job(f"bare-proxy-{DEFAULT_CLIENT}", "latency-c1")]
        jobs += forge("forge-ref", "latency-c1", "all")
        if not quick:
            jobs += forge("forge-ref", "latency-c1", "none")
    if multi_node and multi_node > 1:
        for profile in [p for p in (chosen or ["steady"]) if not PROFILES[p].probe]:
            for config in configs or ["all"]:
                for variant, env in variants(profile, config, tenants_of(profile)):
                    jobs += on("forge-ref-nodes", profile, config, variant, env, "postgres", "redis", multi_node)
    elif multi_node == 1:
        raise SystemExit("--multi-node needs at least 2 nodes")
    if peer == "litellm":
        jobs += [Job("litellm", "steady"), Job("litellm", "latency-c1")]
    elif peer:
        raise SystemExit(f"unknown peer {peer!r}; supported: litellm")
    for option, rtts, service, store in (("--db-rtt-ms", db_rtts, "PostgreSQL", "--stores postgres"),
                                         ("--redis-rtt-ms", redis_rtts, "Redis", "--backends redis")):
        if any(rtts) and not any(j.db_rtt_ms if service == "PostgreSQL" else j.redis_rtt_ms for j in jobs):
            raise SystemExit(f"{option} delays {service}, which no job of this plan uses: add {store}")
    return [replace(j, repeat=i, repeats=repeat) for i in range(1, repeat + 1) for j in jobs]


NAMED_PLANS = ("future-work",)


def named_plan(name: str, *, repeat: int = 1, tenants_of=None) -> list[Job]:
    """``--plan future-work``: the design's future work measured in one command (``profiles.FUTURE_PLAN``):
    duplicates with the response cache on and off, short-ttl with refresh-ahead off and on (on PostgreSQL
    a 2 ms round trip away), embeddings-burst with batching off and on. No baselines."""
    if name not in NAMED_PLANS:
        raise SystemExit(f"unknown plan {name!r}; choose from {', '.join(NAMED_PLANS)}")
    jobs = []
    for profile, (configs, store, rtt) in FUTURE_PLAN.items():
        jobs += plan(profiles=[profile], configs=configs, baselines=False, tenants_of=tenants_of, stores=store,
                     db_rtt_ms=[rtt] if store == "postgres" else None)
    return [replace(j, repeat=i, repeats=repeat) for i in range(1, repeat + 1) for j in jobs]
