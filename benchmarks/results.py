"""Result files: naming and writing them (immutable), the facts every one records, and loading them.

Loading is the one way notebooks, the report and tests read results:

    from benchmarks.results import load_results
    df = load_results("results")          # one row per result file, nested fields flattened
    df["per_request.db_queries"]          # e.g.
    df.attrs["raw"][i]                    # the i-th row's original dict (also df["raw"])

Only ``DIR/*.json`` is read (``DIR/raw/`` holds Locust's and the servers' own output). Rows are
sorted by file name, which starts with the UTC time, so the order is stable and chronological.
Every result kind is loaded (load runs, ``micro``, ``soak``); ``is_load_run`` tells the runner's
Locust/probe results apart. The fields a load run must have are ``REQUIRED_FIELDS`` (DESIGN.md,
"Contract: results").
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

REPO = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1
REQUIRED_FIELDS = ("schema_version", "run_id", "target", "profile", "config", "variant", "caches_enabled",
                   "counters", "caches", "requests", "per_request", "locust", "server", "mock_calls", "machine",
                   "commit", "settings", "started_at")
SEP = "."


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def git_commit() -> tuple[str, bool]:
    """(short commit of this checkout, whether tracked files differ from it)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return sha or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 (informational only)
        mem = None
    try:
        from importlib.metadata import version

        locust_version = version("locust")  # never ``import locust`` here: it monkey-patches the process (gevent)
    except Exception:  # noqa: BLE001 (informational only)
        locust_version = None
    return {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(), "cpu_model": model,
            "memory_gb": mem, "python": platform.python_version(), "platform": platform.platform(),
            "locust": locust_version}


def write_result(doc: dict, out: str | os.PathLike, label: str, started: float) -> Path:
    """``out/<UTC start>_<commit>_<label>.json``, a ``-N`` suffix on a clash: a result is never overwritten."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{stamp(started)}_{doc['commit']}_{label}"
    for n in range(1, 1000):
        path = out / (stem + (f"-{n}" if n > 1 else "") + ".json")
        try:
            with open(path, "x") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot name a result file for {stem}")


def result_files(directory: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.json") if p.is_file())


def load_raw(directory: str | os.PathLike) -> list[dict]:
    """The result dicts, each with ``_file`` (its file name) added."""
    out = []
    for path in result_files(directory):
        with open(path) as f:
            doc = json.load(f)
        if isinstance(doc, dict) and "profile" in doc:
            doc["_file"] = path.name
            out.append(doc)
    return out


def flatten(doc: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts become ``a.b.c`` columns; lists (per-endpoint stats, errors) stay whole."""
    for key in sorted(doc):
        value = doc[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, name + SEP)
        else:
            yield name, value


def is_load_run(doc: dict) -> bool:
    """A result of ``python -m benchmarks run`` (Locust or the concurrency-1 probe)."""
    return all(k in doc for k in ("target", "locust", "per_request", "server", "run_id"))


def store_backend(doc: dict) -> tuple[str, str]:
    """(store, cache backend) of a forge-ref result: ``sqlite``/``postgres``, ``memory``/``redis``.

    From ``settings.store`` / ``settings.cache_backend`` (always recorded by the runner); older files
    from ``FORGE_DB`` / ``FORGE_CACHE_BACKEND`` in ``settings.server_env`` or the variant."""
    settings = doc.get("settings") or {}
    env = settings.get("server_env") or {}
    variant = (doc.get("variant") or "").lower()
    db = str(settings.get("store") or env.get("FORGE_DB") or "")
    store = "postgres" if db.startswith("postgres") or "postgres" in variant else "sqlite"
    cache = settings.get("cache_backend") or env.get("FORGE_CACHE_BACKEND") or (
        "redis" if "redis" in variant else "memory")
    return store, cache


def config_label(doc: dict) -> str:
    """``all``, ``none``, a layer list, or the target for baselines; plus the variant in brackets, which
    names the store and cache backend unless SQLite and memory: ``all [postgres]``, ``all [postgres+redis]``."""
    target, config = doc.get("target", "forge-ref"), doc.get("config", "")
    label = config if target == "forge-ref" else (
        f"{target} ({config})" if target.startswith("forge-ref") else target)
    variant = doc.get("variant") or ""
    if target.startswith("forge-ref"):
        store, cache = store_backend(doc)
        missing = [x for x in (store if store != "sqlite" else "", cache if cache != "memory" else "")
                   if x and x not in variant.split("+")]
        variant = "+".join([*missing, variant] if variant else missing)
    return label + (f" [{variant}]" if variant else "")


# tidy name -> flattened column of a result file (all per request, except latency, rps and memory)
METRICS = {
    "rps": "locust.rps",
    "avg_ms": "locust.avg_ms",
    "p50_ms": "locust.p50_ms",
    "p90_ms": "locust.p90_ms",
    "p99_ms": "locust.p99_ms",
    "max_ms": "locust.max_ms",
    "failures": "locust.failures",
    "db_queries": "per_request.db_queries",
    "decryptions": "per_request.decryptions",
    "upstream_requests": "per_request.upstream_requests",
    "model_list_calls": "per_request.upstream_model_list_requests",
    "services_built": "per_request.services_built",
    "adapters_built": "per_request.adapters_built",
    "cpu_ms": "server.cpu_ms_per_request",
    "server_busy": "server.cpu_utilisation",
    "peak_rss_mb": "server.peak_rss_mb",
}


def frame(docs: list[dict]):
    """A pandas DataFrame of result documents: one row per document, flattened columns, plus ``file``,
    ``label`` and ``raw``."""
    import pandas as pd

    rows = []
    for doc in docs:
        row = dict(flatten({k: v for k, v in doc.items() if k != "_file"}))
        row["file"] = doc.get("_file")
        row["label"] = config_label(doc)
        row["raw"] = doc
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["raw"] = docs
    return df


def load_results(directory: str | os.PathLike = "results"):
    """:func:`frame` of every result file of ``directory``."""
    return frame(load_raw(directory))


def summary(frame, by: str | list[str] = "label", metrics: Iterable[str] | None = None):
    """One row per row of ``frame`` (from :func:`load_results`): the tidy :data:`METRICS` (per request,
    where a count) and ``provider_calls`` (every call the mock received, per client request), indexed by
    ``by``; the table the notebooks and the report's figures are drawn from."""
    import pandas as pd

    if isinstance(by, str):
        index = pd.Index(frame[by].values if by in frame else [], name=by)
    else:
        index = pd.MultiIndex.from_frame(frame[list(by)])
    out = pd.DataFrame(index=index)
    for name in metrics or METRICS:
        col = METRICS[name]
        out[name] = frame[col].values if col in frame else float("nan")
    if metrics is None:
        calls = frame["mock.total_calls"] if "mock.total_calls" in frame else pd.Series(float("nan"), frame.index)
        out["provider_calls"] = (calls / frame["requests"].where(frame["requests"] > 0)).values
    return out
