"""``cache-hit-c1``: what a response-cache hit costs the gateway, at concurrency 1.

Under the closed-loop load of ``duplicates`` the server's time is mostly queueing, so the cost of a
hit is measured here instead, like ``latency-c1``: sequential chats on one keep-alive connection,
alternately the same warm request without opting in (``bypass``: it goes upstream) and with
``Cache-Control: max-age`` (a ``hit``: answered from the cache). Each response's ``Server-Timing``
``gateway`` entry (the gateway's own time: its total less the upstream call) is kept per kind, in
microseconds, unbucketed; a ``hit`` answered otherwise than from the cache counts as a failure.
"""

from __future__ import annotations

import http.client
import os
import time

from . import server_timing, traffic
from .locust_stats import nearest_rank

PROFILE = "cache-hit-c1"
KINDS = {"bypass": {}, "hit": {"Cache-Control": "max-age=600"}}


def _stats(values: list[float], digits: int = 4) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    return {"n": len(ordered), "mean": round(sum(ordered) / len(ordered), digits),
            **{f"p{round(p * 100)}": round(nearest_rank(ordered, p), digits) for p in (0.5, 0.9, 0.99)}}


def _gateway_us(header: str | None) -> float | None:
    for name, _desc, dur in server_timing.parse(header or ""):
        if name == "gateway" and dur is not None:
            return dur * 1000
    return None


def probe(base: str, target: str, key: str, seconds: float, cpu: int | None) -> dict:
    """The probe's summary, in the shape of ``load.probe``'s, with one endpoint per kind and the
    gateway's time per kind under ``server_timing.phases_us["responses:<kind> gateway"]``."""
    path, body = traffic.chat_request(target)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    old = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    gateway: dict[str, list[float]] = {kind: [] for kind in KINDS}
    failures = 0

    def one(kind: str) -> tuple[float, int, str | None, str | None]:
        t0 = time.perf_counter()
        conn.request("POST", path, body, {**auth, **KINDS[kind]})
        resp = conn.getresponse()
        resp.read()
        return (time.perf_counter() - t0) * 1000, resp.status, resp.getheader("X-Forge-Cache"), \
            resp.getheader("Server-Timing")

    try:
        for _ in range(25):  # connection and caches warm; the first opted-in request stores the answer
            for kind in KINDS:
                one(kind)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for kind in KINDS:
                ms, status, state, timing = one(kind)
                times[kind].append(ms)
                failures += status != 200 or state != kind
                us = _gateway_us(timing)
                if us is not None:
                    gateway[kind].append(us)
        span = time.perf_counter() - start
    finally:
        conn.close()
        if old is not None:
            os.sched_setaffinity(0, old)

    def endpoint(values: list[float]) -> dict:
        s = _stats(values)
        return {"requests": s["n"], "duration_s": round(span, 3), "rps": round(s["n"] / span, 1),
                "avg_ms": s["mean"], "p50_ms": s["p50"], "p90_ms": s["p90"], "p99_ms": s["p99"],
                "max_ms": round(max(values), 4) if values else None}

    every = times["bypass"] + times["hit"]
    return {"tool": "probe (http.client, 1 connection, sequential; bypass and hit alternately)",
            **endpoint(every), "failures": failures,
            "endpoints": [{"method": "POST", "name": f"{path} [{kind}]", **endpoint(times[kind]), "failures": 0}
                          for kind in KINDS],
            "ttft": None, "checks": None, "errors": [],
            "server_timing": {"phases_us": {f"responses:{kind} gateway": _stats(gateway[kind], 2) for kind in KINDS},
                              "layers_ms": {}}}
