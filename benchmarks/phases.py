"""Where a request's time goes, from result files: the ``server_timing`` section the runner records
(forge-ref's ``Server-Timing`` phases as Locust saw them, and the latency of hits against misses),
and what recording it costs (``steady``/``all`` with Server-Timing on against the ``timing=off`` job).

Plain rows (lists of dicts), so the report and the notebooks share them; a notebook wraps them in a
DataFrame.
"""

from __future__ import annotations

import statistics

from .repeats import Spread, medians

# The gateway's own phases in the order a request runs them (benchmarks.server_timing records more:
# ``total`` and ``gateway``, which sum them up, and ``upstream``, the provider's time).
OWN_PHASES = ("body", "parse", "user", "service", "key", "models", "translate", "pool", "respond")
# Of those, the ones that are work rather than waiting (``body``: for the body to be read and the
# handler to run; ``pool``: for an upstream connection).
WORK_PHASES = ("parse", "user", "service", "key", "models", "translate", "respond")


def label(doc: dict) -> str:
    return doc["config"] + (f" [{doc['variant']}]" if doc.get("variant") else "")


def phase_rows(docs: list[dict]) -> list[dict]:
    """Per result and phase: n, median, p90 and p99 in microseconds, and the phase's share of the
    mean ``total`` (the time to the response's first byte)."""
    rows = []
    for doc in docs:
        phases = (doc.get("server_timing") or {}).get("phases_us") or {}
        total = (phases.get("total") or {}).get("mean")
        for name in (*OWN_PHASES, "upstream", "gateway", "total"):
            stats = phases.get(name)
            if not stats:
                continue
            share = round(stats["mean"] / total, 4) if total and stats.get("mean") is not None else None
            rows.append({"profile": doc["profile"], "label": label(doc), "phase": name, "n": stats["n"],
                         "p50_us": stats["p50"], "p90_us": stats["p90"], "p99_us": stats["p99"],
                         "mean_us": stats["mean"], "share_of_total": share})
    return rows


def layer_rows(docs: list[dict], endpoint: str = "/v1/chat/completions") -> list[dict]:
    """Per result, layer and state (hit or miss): how many requests and their client-side latency."""
    rows = []
    for doc in docs:
        layers = (doc.get("server_timing") or {}).get("layers_ms") or {}
        for key, stats in layers.items():
            where, _, layer_state = key.rpartition(" ")
            if where != endpoint:
                continue
            name, _, state = layer_state.partition(":")
            rows.append({"profile": doc["profile"], "label": label(doc), "layer": name, "state": state,
                         "n": stats["n"], "p50_ms": stats["p50"], "p99_ms": stats["p99"], "mean_ms": stats["mean"]})
    return rows


def _by_repetition(value) -> dict:
    """A figure by repetition index: a ``Spread`` (a job's repetitions merged); a plain value (one
    repetition, or repetitions that agreed, which ``spread`` keeps as one number) under ``None``."""
    return dict(value.values) if isinstance(value, Spread) else {None: value}


def _paired(a: dict, b: dict) -> list[tuple]:
    """Same-index pairs of two ``_by_repetition`` figures; a plain value pairs with every index."""
    if None in a and None in b:
        return [(a[None], b[None])]
    if None in a or None in b:
        indices = sorted(b if None in a else a)
        return [(a.get(i, a.get(None)), b.get(i, b.get(None))) for i in indices]
    return [(a[i], b[i]) for i in sorted(set(a) & set(b))]


def trace_cost(docs: list[dict]) -> dict | None:
    """Server CPU per request of ``steady``/``all`` with Server-Timing on against off: one ratio per
    pair measured in the same run (repetitions paired in order), their median and range."""
    ratios, on_all, off_all = [], [], []
    for run in sorted({d.get("run_id") for d in docs}):
        of_run = sorted((d for d in docs if d.get("run_id") == run and d["target"] == "forge-ref"
                         and d["profile"] == "steady" and d["config"] == "all"
                         and d["per_request"].get("cpu_ms")), key=lambda d: d.get("repeat") or 0)
        on = [_by_repetition(d["per_request"]["cpu_ms"]) for d in of_run if not d.get("variant")]
        off = [_by_repetition(d["per_request"]["cpu_ms"]) for d in of_run if d.get("variant") == "timing=off"]
        for a_reps, b_reps in zip(on, off):  # a job's repetitions (``--repeat N``) pair with the same index
            for a, b in _paired(a_reps, b_reps):
                ratios.append(a / b)
                on_all.append(a)
                off_all.append(b)
    if not ratios:
        return None
    ratios.sort()
    return {"on_cpu_ms": round(statistics.median(on_all), 4), "off_cpu_ms": round(statistics.median(off_all), 4),
            "ratio": round(statistics.median(ratios), 4), "low": round(ratios[0], 4), "high": round(ratios[-1], 4),
            "pairs": len(ratios)}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _share(row: dict) -> str:
    return "" if row["share_of_total"] is None else f"{row['share_of_total'] * 100:.1f}%"


def _budget(low: float, high: float, budget: float) -> str:
    """met / missed / not settled: a range that crosses the budget settles nothing."""
    if high <= budget:
        return "met"
    if low > budget:
        return "missed"
    return "not settled"


def trace_cost_rows(docs: list[dict], micro: dict | None) -> list[list[str]]:
    """The trace's cost against its budget (≤ 2% of a warm proxied request's CPU off, ≤ 5% on)."""
    rows = []
    cost = trace_cost(docs)
    if cost:
        extra = (cost["low"] - 1, cost["ratio"] - 1, cost["high"] - 1)
        rows.append(["Server-Timing on, quick matrix (`steady`/`all` against `timing=off`)", "≤ 5%",
                     f"{cost['on_cpu_ms']:.3f} vs {cost['off_cpu_ms']:.3f} ms CPU/request: {_pct(extra[1])} "
                     f"(range {_pct(extra[0])} to {_pct(extra[2])}, {cost['pairs']} pair(s))",
                     _budget(extra[0], extra[2], 0.05)])
    ops = (micro or {}).get("micro") or {}
    warm = next((d["per_request"].get("cpu_ms") for d in docs if d["target"] == "forge-ref"
                 and d["profile"] == "steady" and d["config"] == "all" and not d.get("variant")), None)
    if warm and all(f"request_trace_{m}" in ops for m in ("counting", "off", "on")):
        base = ops["request_trace_counting"]["us_per_op"]
        for mode, budget in (("off", 0.02), ("on", 0.05)):
            added = ops[f"request_trace_{mode}"]["us_per_op"] - base
            share = added / (warm * 1000)
            rows.append([f"Trace {mode}, `benchmarks.micro` (what one request's trace calls add to counting)",
                         f"≤ {budget * 100:.0f}%", f"{added:.2f} µs = {_pct(share)} of a warm request's "
                         f"{warm * 1000:.0f} µs", "met" if share <= budget else "missed"])
    return rows


def section(docs: list[dict], micro: dict | None, run: str | None) -> list[str]:
    """RESULTS.md's "Where a request's time goes": phases of `steady`/`all`, hits against misses, and
    what the trace costs."""
    primary = [d for d in docs if d.get("run_id") == run and d["target"] == "forge-ref" and d["profile"] == "steady"]
    # Repetitions of a job (``--repeat N``) are read at their medians here: a phase's share of the
    # total is a ratio of one repetition's figures, not of two ranges.
    steady_all = [medians(d) for d in primary if d["config"] == "all" and not d.get("variant")]
    phases = phase_rows(steady_all)
    hits = layer_rows([medians(d) for d in primary if d["config"] in ("all", "none") and not d.get("variant")])
    costs = trace_cost_rows(docs, micro)
    if not (phases or hits or costs):
        return []
    lines = ["## Where a request's time goes", "",
             "forge-ref runs with `FORGE_SERVER_TIMING=1`; Locust reads every response's `Server-Timing` header "
             "(`benchmarks/server_timing.py`). Phases are the gateway's own microseconds; under a closed-loop load "
             "at saturation, `body` (from the request's start to its body being read) and `upstream` include "
             "waiting for the event loop, which is busy with the other requests.", ""]
    if phases:
        lines += ["`steady`, every layer on (µs; share of the mean time to first byte):", "",
                  "| phase | p50 | p90 | p99 | share |", "|---|---|---|---|---|"]
        lines += [f"| `{r['phase']}` | {r['p50_us']:g} | {r['p90_us']:g} | {r['p99_us']:g} | {_share(r)} |"
                  for r in phases]
        lines.append("")
    if hits:
        lines += ["Latency of hits against misses, per layer (`steady` chat; client-side ms):", "",
                  "| layer | state | configuration | requests | p50 | p99 |", "|---|---|---|---|---|---|"]
        lines += [f"| `{r['layer']}` | {r['state']} | `{r['label']}` | {r['n']} | {r['p50_ms']:g} | {r['p99_ms']:g} |"
                  for r in sorted(hits, key=lambda r: (r["layer"], r["state"], r["label"]))]
        lines.append("")
    if costs:
        lines += ["What the trace costs:", "", "| measure | budget | measured | verdict |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in costs]
        lines.append("")
    return lines
