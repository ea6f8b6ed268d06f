"""What sends a job's traffic: the warm-ups, Locust (headless, a subprocess) and the concurrency-1 probe.

Locust and the probe both return the same summary (``locust_stats``); Locust runs pinned to the
load CPU with the locustfile reading its profile and keys from the environment.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import procs, server_timing, traffic
from .locust_stats import nearest_rank, summarize_locust

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "locustfile.py"


def touch(base: str, doc: dict, cap: int = 2000, workers: int = 8) -> None:
    """One request of each kind per tenant (up to ``cap``), ``workers`` at a time: fills every cache the
    profile uses."""
    reqs = []
    embeddings = traffic.embeddings_body(text="warm")
    for t in doc["tenants"][:cap]:
        for kind in t["providers"]:
            reqs.append(("POST", traffic.CHAT_PATH, traffic.chat_body(kind, text="warm up"), t["key"]))
        reqs.append(("GET", "/v1/models", None, t["key"]))
        reqs.append(("POST", "/v1/embeddings", embeddings, t["key"]))

    def one(r) -> int:
        return procs.http(r[0], base + r[1], token=r[3], body=r[2], timeout=30)[0]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, reqs))


def sequential(base: str, target: str, key: str, n: int = 100) -> None:
    """``n`` chats one after the other: the warm-up of the baselines."""
    path, body = traffic.chat_request(target)
    for _ in range(n):
        procs.http("POST", base + path, token=key, body=body, timeout=30)


def probe(base: str, target: str, key: str, seconds: float, cpu: int | None) -> dict:
    """Sequential chats on one keep-alive connection, timed with perf_counter (µs precision)."""
    path, body = traffic.chat_request(target)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    old = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
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
        return round(nearest_rank(times, p), 4)

    stats = {"requests": n, "failures": failures, "duration_s": round(span, 3), "rps": round(n / span, 1),
             "avg_ms": round(sum(times) / n, 4), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
             "max_ms": round(times[-1], 4)}
    return {"tool": "probe (http.client, 1 connection, sequential)", **stats,
            "endpoints": [{"method": "POST", "name": path, **stats}], "ttft": None, "checks": None, "errors": []}


def _wait_sampling(proc: procs.Proc, timeout: float, every: float = 0.25) -> float:
    """Wait for ``proc`` to exit; return the largest CPU seconds its process tree was seen to hold (the
    workers of ``--processes`` are its children, and may not be reaped by it before it exits)."""
    deadline, seen = time.monotonic() + timeout, 0.0
    while proc.popen.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.name} still running after {timeout:.0f}s")
        seen = max(seen, procs.cpu_seconds(proc.pid))
        try:
            proc.popen.wait(every)
        except Exception:  # noqa: BLE001 (subprocess.TimeoutExpired: poll again)
            pass
    return seen


def run_locust(target: str, profile: str, *, bases: list[str], keys: Path, users: int, duration: float, name: str,
               raw: Path, cpus: str | None, stale_bound: float, static_key: str = "", processes: int = 1,
               think_s: str | None = None, stop_timeout: float = 2.0) -> tuple[dict, float]:
    """Locust headless for ``duration`` seconds against ``bases`` (users spread over several nodes):
    (its summary, its CPU seconds, summed over its processes). ``processes`` > 1 runs Locust's own
    distributed mode (``--processes N``: a master and N forked workers, on the same ``cpus``). Its JSON,
    CSV and log stay in ``raw`` under ``name``."""
    prefix = raw / name
    timing = f"{prefix}.timing."
    env = {"FORGE_PROFILE": profile, "FORGE_KEYS_FILE": str(keys), "FORGE_TARGET": traffic.kind(target),
           "FORGE_STATIC_KEY": static_key, "FORGE_STALE_BOUND_S": str(stale_bound),
           "FORGE_HOSTS": ",".join(bases) if len(bases) > 1 else None, "FORGE_TIMING_PREFIX": timing,
           "FORGE_THINK_S": think_s}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
           "-t", f"{max(1, round(duration))}s", "--host", bases[0], "--json-file", str(prefix), "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--logfile", str(raw / f"{name}.locust.log"),
           "--exit-code-on-error", "0", "--stop-timeout", f"{stop_timeout:g}"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = procs.start(name, cmd, raw, env=env, cpus=cpus, cwd=str(REPO))
    try:
        seen = _wait_sampling(proc, duration + stop_timeout + 90)
    finally:
        proc.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu = max(seen, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    path = Path(f"{prefix}.json")
    if not path.exists():
        raise RuntimeError(f"Locust wrote no {path}:\n{proc.tail()}")
    summary = summarize_locust(json.loads(path.read_text()), Path(f"{prefix}_failures.csv"))
    summary["server_timing"] = server_timing.summarize(timing)
    return summary, load_cpu
