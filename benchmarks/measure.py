"""One measured window on a started target: warm up, reset the counters, load, read what it cost.

The window is what a result reports: ``/_stats`` deltas (counters reset after the warm-up), the
server's CPU seconds and RSS (summed over nodes), the mock's and the delay proxies' CPU, and how
busy the rest of the machine was meanwhile (``noise``), so a result measured under other load can
be told apart.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import hit_probe, load, procs
from .infra import Seed
from .plan import Job
from .profiles import Profile
from .targets import ADMIN, Target, stale_bound

if TYPE_CHECKING:
    from .runner import Session


@dataclass
class Window:
    load: dict  # the Locust (or probe) summary
    load_cpu: float | None  # Locust's CPU seconds (None: the in-process probe)
    wall: float
    server_cpu: float  # summed over nodes
    mock_cpu: float
    stats: dict | None  # /_stats after the window, merged over nodes (None: not a forge-ref target)
    mock_stats: dict
    rss_start: int
    peak_rss: int
    per_node: list[dict]
    noise: dict
    proxy_cpu: dict[str, float] = field(default_factory=dict)  # service -> its delay proxy's CPU seconds


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


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_cpu() -> tuple[float, float, float, float, dict[str, int]]:
    """(busy, interrupt, steal, this process's CPU seconds, kernel TCP counters), now."""
    return (*procs.busy_cpu(), _self_cpu(), procs.tcp_counters())


def _noise(before, after, ours: float, wall: float, loadavg: float) -> dict:
    (busy0, irq0, steal0, self0, tcp0), (busy1, irq1, steal1, self1, tcp1) = before, after
    other = max(0.0, busy1 - busy0 - ours - (self1 - self0))
    return {"loadavg_1m_before": round(loadavg, 2), "other_cpu_seconds": round(other, 3),
            "other_cpu_utilisation": round(other / wall, 3) if wall > 0 else None,
            "interrupt_seconds": round(irq1 - irq0, 3), "steal_seconds": round(steal1 - steal0, 3),
            "window_s": round(wall, 3), "tcp": {k: tcp1[k] - tcp0.get(k, 0) for k in sorted(tcp1)}}


def stop_timeout(spec: Profile, opts) -> float:
    """Seconds Locust lets the requests in flight finish at the end: streams of the timing model last
    seconds, and a stream cut short would count as a failure."""
    return 30.0 if spec.streams and opts.mock_timing else 2.0


def _warm_up(session: Session, job: Job, target: Target, warm: str, *, users: int, seed: Seed, name: str) -> None:
    opts = session.opts
    # With the mock's timing model an answer takes seconds: the warm-up runs wider and shorter (it is there to
    # fill caches and open connections, which one answer does as well as a hundred).
    slow = bool(opts.mock_timing)
    if warm == "touch":
        for base in target.bases:
            load.touch(base, seed.doc, workers=32 if slow else 8)
    elif warm == "locust":
        load.run_locust(job.target, job.profile, bases=target.bases, keys=seed.keys, users=users,
                        duration=opts.warmup, name=f"{name}.warmup", raw=session.raw,
                        cpus=session.cpu("load"), stale_bound=stale_bound(opts.processes, job.nodes),
                        static_key=target.static_key, processes=opts.load_processes, think_s=opts.think_s)
    elif warm == "sequential":
        load.sequential(target.bases[0], job.target, target.static_key or seed.doc["tenants"][0]["key"],
                        n=2 if slow else 100)


def measure(session: Session, job: Job, target: Target, spec: Profile, *, warm: str, users: int,
            duration: float, name: str) -> Window:
    """Wait for the target, warm it up (``touch``, ``locust``, ``sequential`` or ``none``), reset its
    counters and the mock's, then measure ``duration`` seconds of the profile's load."""
    opts, seed = session.opts, session.seeds[job.profile]
    servers = target.procs or [session.mock]
    pids = [p.pid for p in servers]
    proxies = [h for h in target.hops if h.proc is not None]
    key = target.static_key or seed.doc["tenants"][0]["key"]
    for server, health in zip(servers, target.health):
        procs.wait_ready(server, health, timeout=120 if job.target == "litellm" else 30)
    rss_start = sum(procs.rss_bytes(pid) for pid in pids)
    per_node: list[dict] = []
    with procs.Sampler(pids[0], pids=tuple(pids[1:])) as sampler:
        procs.http_json("DELETE", session.mock_url + "/_mock/stats")  # and its rate limits: the last job's calls
        _warm_up(session, job, target, warm, users=users, seed=seed, name=name)
        if job.is_forge:
            for b in target.bases:
                procs.http_json("DELETE", b + "/_stats", token=ADMIN)
        procs.http_json("DELETE", session.mock_url + "/_mock/stats")
        node_cpu0 = [procs.cpu_seconds(pid) for pid in pids]
        proxy0 = {h.service: procs.cpu_seconds(h.proc.pid) for h in proxies}
        mock0, t0 = procs.cpu_seconds(session.mock.pid), time.monotonic()
        before, loadavg = _machine_cpu(), os.getloadavg()[0]
        if spec.probe:
            cpu = int(session.cpu("load")) if session.pinning else None
            probe = hit_probe.probe if job.profile == hit_probe.PROFILE else load.probe
            summary = probe(target.bases[0], job.target, key, min(max(duration / 3, 1.0), 5.0), cpu)
            load_cpu = None
        else:
            summary, load_cpu = load.run_locust(
                job.target, job.profile, bases=target.bases, keys=seed.keys, users=users, duration=duration,
                name=name, raw=session.raw, cpus=session.cpu("load"),
                stale_bound=stale_bound(opts.processes, job.nodes), static_key=target.static_key,
                processes=opts.load_processes, think_s=opts.think_s, stop_timeout=stop_timeout(spec, opts))
        wall = time.monotonic() - t0
        node_cpu1 = [procs.cpu_seconds(pid) for pid in pids]
        mock1 = procs.cpu_seconds(session.mock.pid)
        proxy_cpu = {h.service: procs.cpu_seconds(h.proc.pid) - proxy0[h.service] for h in proxies}
        after = _machine_cpu()
        node_stats = [procs.http_json("GET", b + "/_stats", token=ADMIN) for b in target.bases] \
            if job.is_forge else []
        mock_stats = procs.http_json("GET", session.mock_url + "/_mock/stats")
        if job.nodes > 1:
            per_node = [{"base_url": b, "cpu_seconds": round(c1 - c0, 3),
                         "rss_mb": round(procs.rss_bytes(pid) / 2**20, 1),
                         "requests": st["counters"].get("requests", 0)}
                        for b, pid, c0, c1, st in zip(target.bases, pids, node_cpu0, node_cpu1, node_stats)]
    server_cpu = sum(node_cpu1) - sum(node_cpu0)
    # mock-direct: the mock is the server, counted once
    ours = server_cpu + (mock1 - mock0 if target.procs else 0.0) + (load_cpu or 0.0) + sum(proxy_cpu.values())
    return Window(load=summary, load_cpu=load_cpu, wall=wall, server_cpu=server_cpu, mock_cpu=mock1 - mock0,
                  stats=merge_stats(node_stats) if node_stats else None, mock_stats=mock_stats,
                  rss_start=rss_start, peak_rss=sampler.peak, per_node=per_node,
                  noise=_noise(before, after, ours, wall, loadavg), proxy_cpu=proxy_cpu)
