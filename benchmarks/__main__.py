"""``python -m benchmarks seed | run | production | report``."""

from __future__ import annotations

import argparse
import sys

from . import mock_timing
from .plan import NAMED_PLANS
from .profiles import PROFILES


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="forge-ref benchmark harness")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("seed", help="bulk-create users and provider keys in SQLite or PostgreSQL; write the keys "
                                    "file")
    s.add_argument("--db", required=True, help="a SQLite file, or a postgresql:// URL (needs FORGE_ENCRYPTION_KEY)")
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--mock-url", required=True, help="e.g. http://127.0.0.1:8001")
    s.add_argument("--out", default="keys.json", help="keys file for the locustfile (FORGE_KEYS_FILE)")
    s.add_argument("--providers", default="mixed",
                   help="mixed (1-3 keys per user: openai always, anthropic/gemini for some) or a list such as "
                        "openai,anthropic,gemini")

    r = sub.add_parser("run", help="run the benchmark matrix; one JSON result per job")
    r.add_argument("--quick", action="store_true", help="a small matrix that finishes in a few minutes")
    r.add_argument("--plan", choices=NAMED_PLANS,
                   help="a named plan instead of the matrix: future-work = duplicates (responses on/off), short-ttl "
                        "(refresh-ahead off/on, PostgreSQL 2 ms away), embeddings-burst (batching off/on), ~3 min")
    r.add_argument("--profiles", nargs="+", help=" ".join(PROFILES))
    r.add_argument("--configs", nargs="+", help="cache configurations: all, none, or layer lists like user,service")
    r.add_argument("--out", default="results")
    r.add_argument("--duration", type=float, help="measured seconds per job (default 15, --quick 8)")
    r.add_argument("--users", type=int, help="Locust users (default 32)")
    r.add_argument("--warmup", type=float, help="seconds of Locust warm-up where a profile warms up that way")
    r.add_argument("--processes", type=int, default=1, help="forge-ref server processes")
    r.add_argument("--tenants", type=int, help="tenants of many-tenants (default 100000, --quick 10000)")
    r.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                   help="mock-direct, bare proxy, forge-ref-httpx, concurrency-1 latency (default on)")
    r.add_argument("--peer", choices=["litellm"], help="also run a peer gateway against the same mock")
    r.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    r.add_argument("--mock-latency-ms", type=float, default=0.0, help="mock provider latency per response")
    r.add_argument("--mock-chunk-delay-ms", type=float, default=0.0, help="mock delay between stream chunks")
    r.add_argument("--stores",
                   help="comma list: sqlite, postgres (every forge-ref job runs on each; default sqlite)")
    r.add_argument("--backends",
                   help="comma list: memory, redis (every forge-ref job runs with each; default memory)")
    r.add_argument("--multi-node", type=int, default=0, metavar="N",
                   help="also run N forge-ref servers (one process each, all on CPU 0) on one PostgreSQL and one "
                        "Redis, Locust spreading users over them (target forge-ref-nodes; profiles from --profiles, "
                        "default steady; configs from --configs, default all)")
    r.add_argument("--postgres-url", help="PostgreSQL server for --stores postgres / --multi-node (a schema per "
                                          "job; default $FORGE_BENCH_POSTGRES_URL or postgres@127.0.0.1:5432)")
    r.add_argument("--redis-url", help="Redis for --backends redis / --multi-node (a key prefix per job; default "
                                       "$FORGE_BENCH_REDIS_URL or 127.0.0.1:6379/0)")
    r.add_argument("--db-rtt-ms", metavar="LIST",
                   help="comma list of round trips (ms) added between the server and PostgreSQL by a delay proxy, "
                        "e.g. 0,0.5,2: every job on PostgreSQL runs once per value (0: direct; default 0)")
    r.add_argument("--redis-rtt-ms", metavar="LIST",
                   help="likewise between the server and Redis, for every job on Redis")
    r.add_argument("--net-jitter-ms", type=float, default=0.0, metavar="MS",
                   help="uniform jitter (±) on each delay proxy's one-way delay (default 0)")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the whole plan N times, interleaved (A B C A B C), one result file per repetition; "
                        "the report gives the median and range of each figure")
    r.add_argument("--load-processes", type=int, default=1, metavar="N",
                   help="Locust processes (N > 1: Locust's own --processes, a master and N workers, all on the load "
                        "CPU; default 1)")
    r.add_argument("--think-s", metavar="LOW-HIGH", help="realistic-chat's think time between turns (default 1-3)")
    mock_timing.add_arguments(r)

    pr = sub.add_parser("production", help="the gateway under production-like conditions: its own plan (slow "
                                           "provider, thousands of streams, DB round trips, rate-limited model lists)")
    pr.add_argument("--quick", action="store_true", help="a tiny plan (about a minute; what the tests run)")
    pr.add_argument("--phases", help="comma list: streams, db (default both)")
    pr.add_argument("--peer", choices=["litellm"], help="also run LiteLLM where it supports the profile (streams)")
    pr.add_argument("--out", default="results")
    pr.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    pr.add_argument("--postgres-url", help="PostgreSQL of the db phase (default $FORGE_BENCH_POSTGRES_URL or "
                                           "postgres@127.0.0.1:5432)")
    pr.add_argument("--load-processes", type=int, metavar="N",
                    help="Locust processes of the streams phase (default 1; N > 1: Locust's --processes, a "
                         "master and N workers; --quick: 2)")

    rep = sub.add_parser("report", help="regenerate RESULTS.md and the figures from result files")
    rep.add_argument("--results", default="results")
    rep.add_argument("--out", default="RESULTS.md")
    rep.add_argument("--figures", default="docs/figures")

    a = p.parse_args(argv)
    if a.command == "seed":
        from .seed import seed

        doc = seed(a.db, a.users, a.mock_url, a.out, providers=a.providers)
        print(f"seeded {len(doc['tenants'])} users into {a.db}; keys in {a.out}", file=sys.stderr)
    elif a.command == "run":
        from .runner import run

        matrix = [f"--{k.replace('_', '-')}" for k in ("quick", "profiles", "configs", "stores", "backends",
                                                       "multi_node", "peer", "db_rtt_ms", "redis_rtt_ms")
                  if getattr(a, k)]
        if a.plan and matrix:
            p.error(f"--plan {a.plan} names its own jobs: drop {' '.join(matrix)}")

        files = run(profiles=a.profiles, configs=a.configs, out=a.out, duration=a.duration, users=a.users,
                    quick=a.quick, baselines=a.baselines, peer=a.peer, processes=a.processes, tenants=a.tenants,
                    warmup=a.warmup, pin=not a.no_pin, mock_latency_ms=a.mock_latency_ms,
                    mock_chunk_delay_ms=a.mock_chunk_delay_ms, stores=a.stores, backends=a.backends,
                    multi_node=a.multi_node, postgres_url=a.postgres_url, redis_url=a.redis_url,
                    db_rtt_ms=a.db_rtt_ms, redis_rtt_ms=a.redis_rtt_ms, net_jitter_ms=a.net_jitter_ms,
                    repeat=a.repeat, mock_timing=mock_timing.from_args(a), load_processes=a.load_processes,
                    think_s=a.think_s, named=a.plan)
        if not files:
            raise SystemExit("no result written")
    elif a.command == "production":
        from .production import run_production

        files = run_production(quick=a.quick, peer=a.peer, phases=a.phases.split(",") if a.phases else None,
                               out=a.out, pin=not a.no_pin, postgres_url=a.postgres_url,
                               load_processes=a.load_processes)
        if not files:
            raise SystemExit("no result written")
    else:
        from .report import report

        report(a.results, a.out, a.figures)


if __name__ == "__main__":
    main()
