"""Locust's own output (``--json-file`` entries, ``--csv`` failures) as a result's ``locust`` summary.

The summary has the same fields whoever measured: totals, latency percentiles, per-endpoint
statistics with Locust's bucketed histogram (for CDFs), time to first token, churn checks and
the most frequent errors. The locustfile's custom measurements travel as their own request types
(``CUSTOM_TYPES``) and are kept apart from the HTTP totals.
"""

from __future__ import annotations

import csv
from pathlib import Path

CUSTOM_TYPES = ("TTFT", "ICD", "CHECK")


def _hist(entries: list[dict]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for e in entries:
        for k, v in e.get("response_times", {}).items():
            merged[float(k)] = merged.get(float(k), 0) + v
    return merged


def _raw_hist(entry: dict) -> dict[str, int]:
    """Locust's own bucketed histogram of one endpoint (ms -> count), kept so notebooks can draw CDFs."""
    return {str(k): v for k, v in sorted(entry.get("response_times", {}).items(), key=lambda kv: float(kv[0]))}


def percentile(hist: dict[float, int], p: float) -> float | None:
    """Locust's rule: the smallest recorded (bucketed) time covering ``p`` of the requests."""
    n = sum(hist.values())
    if not n:
        return None
    cum = 0
    for k in sorted(hist):
        cum += hist[k]
        if cum >= p * n:
            return k
    return max(hist)


def nearest_rank(ordered: list[float], p: float) -> float:
    """The ``p`` percentile of samples sorted ascending (nearest rank): the probe's and the round trips' rule."""
    return ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.5) - 1))]


def _entry_stats(entries: list[dict]) -> dict:
    n = sum(e["num_requests"] for e in entries)
    fails = sum(e["num_failures"] for e in entries)
    hist = _hist(entries)
    starts = [e["start_time"] for e in entries if e.get("start_time")]
    ends = [e["last_request_timestamp"] for e in entries if e.get("last_request_timestamp")]
    span = (max(ends) - min(starts)) if starts and ends else 0.0
    total_ms = sum(e["total_response_time"] for e in entries)
    return {
        "requests": n, "failures": fails, "duration_s": round(span, 3),
        "rps": round(n / span, 1) if span > 0 else None,
        "avg_ms": round(total_ms / n, 3) if n else None,
        "p50_ms": percentile(hist, 0.50), "p90_ms": percentile(hist, 0.90), "p99_ms": percentile(hist, 0.99),
        "max_ms": round(max((e["max_response_time"] for e in entries), default=0), 3) if entries else None,
    }


def _errors(failures_csv: Path | None, most: int = 10) -> list[dict]:
    if failures_csv is None or not failures_csv.exists():
        return []
    with open(failures_csv) as f:
        errors = [{"method": row.get("Method"), "name": row.get("Name"), "error": row.get("Error", "")[:300],
                   "occurrences": int(row.get("Occurrences") or 0)} for row in csv.DictReader(f)]
    return sorted(errors, key=lambda e: -e["occurrences"])[:most]


def summarize_locust(entries: list[dict], failures_csv: Path | None = None) -> dict:
    """The summary of Locust's JSON entries (one per request type and name) and its failures CSV."""
    http_entries = [e for e in entries if e["method"] not in CUSTOM_TYPES]
    summary = {"tool": "locust", **_entry_stats(http_entries)}
    summary["endpoints"] = [
        {"method": e["method"], "name": e["name"], **_entry_stats([e]), "response_times": _raw_hist(e)}
        for e in sorted(http_entries, key=lambda e: (e["name"], e["method"]))
    ]
    ttft = [e for e in entries if e["method"] == "TTFT"]
    summary["ttft"] = _entry_stats(ttft) if ttft else None
    # a stream's mean gap between chunks (ms), one sample per stream; its response length is the chunk count
    icd = [e for e in entries if e["method"] == "ICD"]
    summary["inter_chunk"] = {**_entry_stats(icd), "chunks": sum(e.get("total_content_length", 0) for e in icd)} \
        if icd else None
    checks = {e["name"]: e["num_requests"] for e in entries if e["method"] == "CHECK"}
    summary["checks"] = {"stale_responses": checks.get("stale_response", 0),
                         "fresh_responses": checks.get("fresh_response", 0)} if checks else None
    summary["errors"] = _errors(failures_csv)
    return summary
