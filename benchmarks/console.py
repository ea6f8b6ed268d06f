"""What ``python -m benchmarks run`` prints: a progress line per job, and a table of the results at the end."""

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
