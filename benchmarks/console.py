"""What ``python -m benchmarks run`` prints: a progress line per job, a table of the results at the
end, and a few plain verdicts that say what the table means."""

from __future__ import annotations

import sys

from .plan import Job


def progress_line(i: int, n: int, job: Job, note: str) -> None:
    width = 20
    done = int(width * i / n)
    sys.stderr.write(f"[{'#' * done}{'.' * (width - done)}] {i}/{n} {job.target:<16} {job.profile:<12} "
                     f"{job.config:<26} {job.variant:<10} "
                     + (f"rep {job.repeat}/{job.repeats} " if job.repeats > 1 else "") + f"{note}\n")
    sys.stderr.flush()


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


def _find(results: list[dict], profile: str, config: str, target: str = "forge-ref", variant: str = "") -> dict | None:
    for r in results:
        if (r["target"], r["profile"], r["config"], r["variant"]) == (target, profile, config, variant):
            return r
    return None


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def verdicts(results: list[dict]) -> list[str]:
    """One plain sentence per question this run can answer (each needs its pair of jobs)."""
    lines = []
    on, off = _find(results, "steady", "all"), _find(results, "steady", "none")
    if on and off:
        pr, loc0, loc1 = on["per_request"], off["locust"], on["locust"]
        lines.append(
            f"all vs none (steady): {_fmt(pr.get('db_queries'))} DB queries and {_fmt(pr.get('decryptions'))} "
            f"decryptions per warm request (none: {_fmt(off['per_request'].get('db_queries'))} and "
            f"{_fmt(off['per_request'].get('decryptions'))}); {_ratio(loc1['rps'], loc0['rps'])} throughput; "
            f"p50 {_fmt(loc1['p50_ms'], 0)} vs {_fmt(loc0['p50_ms'], 0)} ms; server CPU "
            f"{_fmt(pr.get('cpu_ms'), 3)} vs {_fmt(off['per_request'].get('cpu_ms'), 3)} ms per request")
    on, off = _find(results, "models-heavy", "all"), _find(results, "models-heavy", "none")
    if on and off:
        lines.append(
            f"models layer (models-heavy): {_fmt(on['per_request'].get('upstream_model_list_requests'), 3)} "
            f"upstream model-list calls per request with every layer on, "
            f"{_fmt(off['per_request'].get('upstream_model_list_requests'), 3)} with none")
    traced, bare = _find(results, "steady", "all"), _find(results, "steady", "all", variant="timing=off")
    if traced and bare:
        a, b = traced["per_request"].get("cpu_ms"), bare["per_request"].get("cpu_ms")
        extra = f"{(a - b) / b * 100:+.1f}%" if a and b else "-"
        lines.append(f"the trace (Server-Timing on vs off, steady/all): {_fmt(a, 3)} vs {_fmt(b, 3)} ms of server "
                     f"CPU per request ({extra}, one run each: noisy; RESULTS.md has repeated measurements)")
    churn = _find(results, "churn", "all")
    if churn and churn.get("stale_responses") is not None:
        checks = (churn["locust"].get("checks") or {})
        lines.append(f"consistency (churn): {churn['stale_responses']} stale responses in "
                     f"{checks.get('stale_responses', 0) + checks.get('fresh_responses', 0)} checked reads")
    return lines
