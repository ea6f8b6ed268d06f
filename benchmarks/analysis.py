"""Small shared functions for the notebooks: where the results are, which rows to compare, tidy frames.

Everything is read through :mod:`benchmarks.results` (the one parser of result files); this module
only selects, reshapes and subtracts. The notebooks call it so that no parsing is copied between
them, and so that every number they show comes from a result file.

    from benchmarks import analysis as an
    df = an.load(an.results_dir())                  # FORGE_RESULTS_DIR, else results/, else the sample
    steady = an.select(df, profile="steady", target="forge-ref")   # the latest run holding it
    an.summary(steady)                              # one row per configuration, per-request costs
    an.on_off(steady)                               # what switching layers on changes, pair by pair
    an.repeated(steady)                             # with run --repeat N: median, min, max per job

Micro results (``python -m benchmarks.micro``, ``profile: "micro"``) are looked for in the chosen
directory and in a sibling ``sample_micro/`` directory: the committed sample keeps its micro result
with Redis and PostgreSQL measured in ``tests/data/sample_micro/``, beside ``sample_results/``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import pandas as pd

from forge_ref.settings import LAYERS, parse_layers

from . import results
from .plots import config_name
from .production_report import is_production
from .repeats import job_key, repetition
from .report import BACKENDS_COMMAND, COMBOS, TARGET_ORDER, _config_key, _noise_line
from .results import METRICS, is_load_run, load_results, result_files, summary

REPO = Path(__file__).resolve().parent.parent
ENV_VAR = "FORGE_RESULTS_DIR"
DEFAULT_DIR = REPO / "results"
SAMPLE_DIR = REPO / "tests" / "data" / "sample_results"
MICRO_SIBLING = "sample_micro"
PRODUCTION_SIBLING = "sample_production"

PERCENTILES = ["p50_ms", "p90_ms", "p99_ms", "max_ms"]

# Commands that produce what a notebook looks for, for the "not in this directory" messages.
COMMANDS = {
    "layers": "python -m benchmarks run --profiles steady",  # without --quick: every layer alone, all but each
    "many-tenants": "python -m benchmarks run --profiles many-tenants",
    "cold-burst": "python -m benchmarks run --profiles cold-burst",
    "churn": "python -m benchmarks run --profiles churn --configs all",
    "churn-processes": "python -m benchmarks run --profiles churn --configs all --processes 2",
    "litellm": "python -m benchmarks run --profiles steady --configs all --peer litellm",
    "baselines": "python -m benchmarks run --profiles steady latency-c1 --configs all",
    "backends": BACKENDS_COMMAND,
    "micro": ("python -m benchmarks.micro --redis-url redis://127.0.0.1:6379/0 "
              "--postgres-url postgresql://postgres@127.0.0.1:5432/postgres"),
}


MISSING = {  # what a notebook looks for -> (what is missing, the command that produces it)
    "steady": ("no `steady` forge-ref results in this directory", COMMANDS["layers"]),
    "models-heavy": ("no `models-heavy` or `mixed` results in this directory",
                     "python -m benchmarks run --profiles models-heavy mixed --configs none all"),
    "many-tenants": ("no many-tenants results in this directory", COMMANDS["many-tenants"]),
    "cold-burst": ("no cold-burst results in this directory", COMMANDS["cold-burst"]),
    "churn": ("no churn results in this directory", COMMANDS["churn"]),
    "churn-processes": ("no multi-process churn results in this directory: every churn run here used one "
                        "process, where invalidation is synchronous", COMMANDS["churn-processes"]),
    "baselines": ("no baseline results (mock-direct, bare proxy) in this directory", COMMANDS["baselines"]),
    "litellm": ("no LiteLLM results in this directory", COMMANDS["litellm"]),
    "latency-c1": ("no `latency-c1` results in this directory", COMMANDS["baselines"]),
    "backends": ("no switch of layers (such as `none` → `all`) measured on more than one store + cache backend",
                 COMMANDS["backends"]),
    "micro": ("no micro results (`target: micro`) in this directory or a sibling `sample_micro/`",
              COMMANDS["micro"] + " --out DIR"),
    "server-timing": ("no `steady` results with Server-Timing phases (`server_timing`) in this directory: the "
                      "runner records them since the tracing issue", "python -m benchmarks run --quick"),
}


def have(frame: pd.DataFrame | None, what: str) -> bool:
    """True if ``frame`` has rows; else show (in the notebook) what is missing and how to produce it."""
    if frame is not None and not frame.empty:
        return True
    from IPython.display import Markdown, display

    missing, command = MISSING[what]
    display(Markdown(f"**{missing[0].upper() + missing[1:]}**; run `{command}`."))
    return False


# --- where and what ---------------------------------------------------------------------------


def results_dir(chosen: str | os.PathLike | None = None, environ: dict | None = None) -> Path:
    """``chosen``; else ``$FORGE_RESULTS_DIR``; else ``results/`` if it holds result files; else the committed
    sample. A relative path is taken from the current directory, else from the repository root."""
    environ = os.environ if environ is None else environ
    chosen = chosen or environ.get(ENV_VAR)
    if chosen:
        for path in (Path(chosen).expanduser().resolve(), (REPO / chosen).resolve()):
            if path.is_dir():
                return path
        raise FileNotFoundError(f"{chosen}: no such directory")
    return DEFAULT_DIR if result_files(DEFAULT_DIR) else SAMPLE_DIR


def _relative(directory: Path) -> str:
    try:
        return f"{directory.resolve().relative_to(REPO)}/"
    except ValueError:
        return str(directory)


def reading(directory: str | os.PathLike, environ: dict | None = None) -> str:
    """Markdown: which directory a notebook reads, why that one, and how to read another."""
    environ = os.environ if environ is None else environ
    directory = Path(directory).resolve()
    try:
        chosen = results_dir(environ=environ)
    except FileNotFoundError:
        chosen = None
    if directory != chosen:
        why = "the first cell names it"
    elif environ.get(ENV_VAR):
        why = f"`${ENV_VAR}` names it"
    elif directory == DEFAULT_DIR:
        why = f"`${ENV_VAR}` is unset and `results/` holds result files"
    else:
        why = (f"`${ENV_VAR}` is unset and `results/` holds no result files, so the committed sample (a "
               "`--quick` run on a shared machine: read it for the shape of the effects, not their size)")
    return (f"**Reading `{_relative(directory)}`**: {why}. To read another directory, start JupyterLab with "
            f"`{ENV_VAR}=DIR ./dev.sh notebooks`, or set `RESULTS = an.results_dir(\"DIR\")` in the first cell "
            "and run all cells.")


def start(directory: str | os.PathLike) -> pd.DataFrame:
    """A notebook's first cell: the plot style, every result of ``directory`` (:func:`load`), and, shown
    in the notebook, where they come from (:func:`reading`, :func:`provenance`)."""
    from IPython.display import Markdown, display

    from . import plots

    plots.style()
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_columns", 30)
    df = load(directory)
    display(Markdown(reading(directory) + "\n\n" + provenance(df, directory)))
    return df


def load_production(directory: str | os.PathLike) -> list[dict]:
    """The production results (``python -m benchmarks production``) of ``directory``, else of a sibling
    ``sample_production/`` (where the committed sample keeps a tiny real run): raw documents, oldest first."""
    directory = Path(directory).resolve()
    for where in (directory, directory.parent / PRODUCTION_SIBLING):
        if where.is_dir():
            docs = [d for d in results.load_raw(where) if is_load_run(d) and is_production(d)]
            if docs:
                return sorted(docs, key=lambda d: d["_file"])
    return []


def micro_dirs(directory: str | os.PathLike) -> list[Path]:
    """Where micro results are looked for: the directory itself and a sibling ``sample_micro/``."""
    directory = Path(directory).resolve()
    sibling = directory.parent / MICRO_SIBLING
    return [directory] + ([sibling] if sibling.is_dir() and sibling != directory else [])


def _coalesce(doc: dict) -> bool | None:
    value = ((doc.get("settings") or {}).get("server_env") or {}).get("FORGE_COALESCE")
    if value is None and "coalesce" in (doc.get("variant") or ""):
        value = doc["variant"].rstrip()[-1]  # "coalesce=1", "coalesce1"
    return None if value is None else value not in ("0", "false", "off")


def backend(doc: dict) -> tuple[str, str]:
    """(store, cache backend) a result ran with: ``sqlite``/``postgres``, ``memory``/``redis``.

    The runner records ``settings.store`` and ``settings.cache_backend``; older files are read from
    the server environment or the variant, and default to sqlite and memory."""
    return results.store_backend(doc)


def long_label(doc: dict, label: str) -> str:
    """A label that stays clear next to other targets: ``forge-ref (all)`` rather than ``all``."""
    return f"forge-ref ({label})" if doc["target"] == "forge-ref" else label


def load(directory: str | os.PathLike) -> pd.DataFrame:
    """:func:`benchmarks.results.load_results` plus derived columns the notebooks select on: ``kind``
    (``load`` for the runner's Locust/probe results, else the file's profile: ``micro``, ``soak``), and
    for load results ``long_label``, ``processes``, ``coalesce``, ``store``, ``cache_backend``, ``order``,
    ``repeat`` and ``repeats`` (``run --repeat``; 1 and 1 without), and ``job`` (what its repetitions share)."""
    df = load_results(directory)
    if df.empty:
        return df
    # production's results (python -m benchmarks production) are their own kind, read by notebook 06 and its
    # report section only: the other notebooks' selections (the fullest run per profile) never see them
    df["kind"] = ["production" if is_production(d) else "load" if is_load_run(d) else d.get("profile")
                  for d in df["raw"]]
    loads = [(d, lab) if k == "load" else (None, None) for d, lab, k in zip(df["raw"], df["label"], df["kind"])]
    forge = [d is not None and d["target"].startswith("forge-ref") for d, _ in loads]
    df["long_label"] = [long_label(d, lab) if d else None for d, lab in loads]
    df["processes"] = [(d.get("settings") or {}).get("processes") or 1 if d else None for d, _ in loads]
    df["coalesce"] = [_coalesce(d) if d else None for d, _ in loads]
    df["store"] = [backend(d)[0] if f else None for (d, _), f in zip(loads, forge)]
    df["cache_backend"] = [backend(d)[1] if f else None for (d, _), f in zip(loads, forge)]
    df["order"] = [(TARGET_ORDER.index(d["target"]) if d["target"] in TARGET_ORDER else 99, *_config_key(d))
                   if d else None for d, _ in loads]
    df["repeat"] = [repetition(d)[0] if d else None for d, _ in loads]
    df["repeats"] = [repetition(d)[1] if d else None for d, _ in loads]
    df["job"] = [job_key(d) if d else None for d, _ in loads]
    return df


def pinning_text(settings: dict) -> str:
    pin = settings.get("pinning")
    if not pin:
        return "none (taskset missing, fewer than 2 CPUs, or --no-pin)"
    load_cpu = f"Locust and the mock on CPU {pin.get('load')}"
    if pin.get("server") is None:
        return f"server unpinned ({settings.get('processes')} processes), {load_cpu} (`taskset -c`)"
    if pin.get("server") == pin.get("mock"):
        return f"the process under test shares CPU {pin['server']} with Locust and the mock (`taskset -c`)"
    return f"server on CPU {pin['server']}, {load_cpu} (`taskset -c`)"


def _count(items: Iterable[str]) -> str:
    counts = Counter(items)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{k} ({n} file{'s' if n > 1 else ''})" for k, n in counts.most_common())


def provenance(df: pd.DataFrame, directory: str | os.PathLike) -> str:
    """Markdown: which files, which machine, how processes were pinned, what load; all from the files."""
    where = _relative(Path(directory))
    if df.empty:
        return f"**No result files in `{where}`.** Run `python -m benchmarks run --quick`, or unset `{ENV_VAR}`."
    docs = list(df["raw"])
    loads = [d for d, k in zip(docs, df["kind"]) if k == "load"]
    runs = sorted({d["run_id"] for d in loads})
    others = Counter(k for k in df["kind"] if k != "load")
    dirty = " (uncommitted changes)"
    commits = sorted({str(d.get("commit")) + (dirty if d.get("commit_dirty") or d.get("dirty") else "") for d in docs})
    machines = _count("{cpu_model}, {cpu_count} CPUs, {memory_gb} GB, Python {python}, {platform}".format(
        **{k: (d.get("machine") or {}).get(k) for k in ("cpu_model", "cpu_count", "memory_gb", "python", "platform")})
        for d in docs)
    what = [f"{len(loads)} load results from {len(runs)} run(s) (`{'`, `'.join(runs)}`)"] if loads else []
    what += [f"{n} {k} result{'s' if n > 1 else ''}" for k, n in sorted(others.items())]
    if not loads:  # e.g. micro results alone: name the files
        what[-1] += f" (`{'`, `'.join(df['file'])}`)"
    lines = [f"- Results: `{where}`: {', '.join(what)}; commit {', '.join(f'`{c}`' for c in commits)}.",
             f"- Machine: {machines}."]
    if loads:
        lines.append(f"- Pinning: {_count(pinning_text(d.get('settings') or {}) for d in loads)}.")
        lines.append("- Load: " + _count(
            f"{s.get('users')} users, {s.get('duration_s')} s measured, warm-up: {s.get('warmup')}, "
            f"mock latency {(s.get('mock') or {}).get('latency_ms')} ms" + (", `--quick`" if s.get("quick") else "")
            for s in (d.get("settings") or {} for d in loads)) + ".")
        lines.append(_noise_line(loads))
    return "\n".join(lines)


def inventory(df: pd.DataFrame) -> pd.DataFrame:
    """What the directory holds: per profile and target, the configurations and how many files."""
    loads = df[df["kind"] == "load"].sort_values("order")
    return (loads.groupby(["profile", "target"], sort=False)
            .agg(configurations=("label", lambda s: ", ".join(dict.fromkeys(s))), files=("file", "size"),
                 runs=("run_id", "nunique"))
            .sort_index())


# --- selection --------------------------------------------------------------------------------


def select(df: pd.DataFrame, *, run: str | None = "fullest", need: Iterable[str] = (), **match) -> pd.DataFrame:
    """Load results matching every ``column=value`` (a list matches any of its values); of a job
    repeated within one run, the last file.

    Per profile, so that compared rows share a machine, commit and mock, one run that holds a match
    (and every target in ``need``): ``run="fullest"`` the one with the most matching results (the
    matrix rather than a follow-up run; ties: the latest), ``run="latest"`` the latest; ``run=None``
    keeps every run, ``run=ID`` that one.
    """
    if df.empty:
        return df
    rows = df[df["kind"] == "load"]
    for col, want in match.items():
        if col not in rows:
            return rows.iloc[0:0]
        rows = rows[rows[col].isin(want) if isinstance(want, (list, tuple, set)) else rows[col] == want]
    rows = rows.drop_duplicates(["run_id", "profile", "label"], keep="last")
    if run in ("fullest", "latest") and not rows.empty:
        keep = []
        for _, grp in rows.groupby("profile"):
            ok = {r: (len(g) if run == "fullest" else 0, r) for r, g in grp.groupby("run_id")
                  if set(need) <= set(g["target"])}
            if ok:
                keep.append(grp[grp["run_id"] == max(ok, key=ok.get)])
        rows = pd.concat(keep) if keep else rows.iloc[0:0]
    elif run is not None:
        rows = rows[rows["run_id"] == run]
    return rows.sort_values(["profile", "order"])


def repeated(frame: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per job, its repetitions (``run --repeat N``) taken together: the median, min and max of each
    tidy metric, and how many repetitions there were (a job run once: its value three times, and 1)."""
    t = summary(frame, "job", list(metrics or METRICS))
    out = t.groupby(level="job", sort=False).agg(["median", "min", "max"])
    jobs = frame.groupby("job", sort=False)
    out.insert(0, ("repetitions", ""), jobs.size().loc[out.index].values)
    out.insert(0, ("label", ""), jobs["label"].first().loc[out.index].values)
    return out


def endpoints(frame: pd.DataFrame, by: str = "label") -> pd.DataFrame:
    """Long frame of Locust's per-endpoint summaries (``locust.endpoints``)."""
    rows = [{by: label, **e} for d, label in zip(frame["raw"], frame[by])
            for e in (d.get("locust") or {}).get("endpoints") or []]
    return pd.DataFrame(rows)


# --- layers on against off --------------------------------------------------------------------


def _metric(row: pd.Series, name: str) -> float:
    value = row.get(METRICS[name])
    return float("nan") if value is None else float(value)


DELTAS = ["db_queries", "decryptions", "model_list_calls", "services_built", "adapters_built", "cpu_ms", "p50_ms",
          "p99_ms"]


def _layers_on(config: str, doc: dict) -> frozenset[str]:
    """The layers a configuration turned on, of those that existed when the result was made (its
    ``caches_enabled`` names them): ``all`` before the ``responses`` layer meant the five others."""
    known = doc.get("caches_enabled") or dict.fromkeys(LAYERS)
    return frozenset(x for x, on in parse_layers(config).items() if on and x in known)


def on_off(frame: pd.DataFrame) -> pd.DataFrame:
    """Every pair of forge-ref configurations of one run where the second only adds layers to the first,
    with nothing measured in between (``none`` → ``user``, all but ``keys`` → ``all``, or, in a sparse
    run, ``none`` → ``user,service,keys``). Columns: the layers added, both configurations, the change
    of each per-request cost (``Δ …``: on minus off) and the throughput ratio (on / off)."""
    rows = []
    forge = frame[frame["target"] == "forge-ref"]
    for _, grp in forge.groupby(["run_id", "profile", "variant", "store", "cache_backend"], dropna=False):
        by_cfg = {cfg: g.iloc[-1] for cfg, g in grp.groupby("config")}
        sets = {cfg: _layers_on(cfg, row["raw"]) for cfg, row in by_cfg.items()}
        for off, a in sets.items():
            for on, b in sets.items():
                if not a < b or any(a < c < b for c in sets.values()):
                    continue
                lo, hi = by_cfg[off], by_cfg[on]
                row = {"profile": hi["profile"], "added": "+" + " +".join(x for x in LAYERS if x in b - a),
                       "n_added": len(b - a), "off": off, "on": on, "variant": hi["variant"],
                       "store": hi["store"], "cache_backend": hi["cache_backend"], "run_id": hi["run_id"]}
                row["step"] = f"{row['added']}: {config_name(off)} → {config_name(on)}"
                for m in DELTAS:
                    row[f"Δ {m}"] = _metric(hi, m) - _metric(lo, m)
                row["rps ×"] = _metric(hi, "rps") / _metric(lo, "rps") if _metric(lo, "rps") else float("nan")
                rows.append(row)
    columns = ["profile", "added", "n_added", "off", "on", "variant", "store", "cache_backend", "run_id", "step",
               *(f"Δ {m}" for m in DELTAS), "rps ×"]
    out = pd.DataFrame(rows, columns=columns)
    if out.empty:
        return out
    order = {layer: i for i, layer in enumerate(LAYERS)}
    # from `none` upwards: first the layers added to nothing, last the ones added to all the others
    out["_k"] = [(p, sum(parse_layers(o).values()), n, min(order[x.strip(" +")] for x in a.split(" +")))
                 for p, n, a, o in zip(out["profile"], out["n_added"], out["added"], out["off"])]
    return out.sort_values("_k").drop(columns="_k").reset_index(drop=True)


def on_off_note(effects: pd.DataFrame, profile: str) -> str:
    """Markdown: whether each layer could be isolated in these results, and how to get the rest."""
    single = set(effects.loc[effects["n_added"] == 1, "added"].str.strip("+"))
    missing = [x for x in LAYERS if x not in single]
    if not missing:
        return f"Each of the {len(LAYERS)} layers has at least one on/off pair in `{profile}`."
    have = ", ".join(f"`{x}`" for x in LAYERS if x in single) or "none"
    steps = "; ".join(f"`{o}` → `{n}`" for o, n in zip(effects["off"], effects["on"]))
    return (f"Layers isolated by a one-layer pair in `{profile}`: {have}. For the others these results hold only "
            + (f"coarser steps ({steps}), which are shown instead" if steps else "no comparable configurations")
            + f". For every layer alone and every all-but-one, run `{COMMANDS['layers']}` (the full matrix, without "
            "`--quick`).")


COMPARISONS = {"none": "added to none", "all": "added last, to all the others"}


def layer_pairs(effects: pd.DataFrame) -> pd.DataFrame:
    """Of :func:`on_off` rows, the two one-layer comparisons that isolate a layer: ``none`` → the layer
    alone, and all but the layer → ``all``. Rows: the layers; columns: (``Δ …`` or ``rps ×``, comparison)."""
    one = effects[effects["n_added"] == 1]
    one = one.assign(layer=one["added"].str.strip("+"),
                     comparison=[COMPARISONS["none"] if off == "none" else COMPARISONS["all"] if on == "all" else None
                                 for off, on in zip(one["off"], one["on"])]).dropna(subset=["comparison"])
    if one.empty:
        return pd.DataFrame()
    values = [c for c in effects.columns if c.startswith("Δ ") or c == "rps ×"]
    pairs = one.pivot_table(index="layer", columns="comparison", values=values, aggfunc="last")
    columns = [(v, c) for v in values for c in COMPARISONS.values() if (v, c) in pairs.columns]
    return pairs.reindex(index=[x for x in LAYERS if x in pairs.index], columns=pd.MultiIndex.from_tuples(columns))


# --- latency distributions --------------------------------------------------------------------

HIST_KEYS = ("hist", "response_times", "histogram")


def latency_hist(doc: dict, endpoint: str | None = None) -> dict[float, int] | None:
    """A per-request latency histogram (ms → count) if the result holds one, merged over endpoints.

    The runner keeps Locust's own bucketed histogram per endpoint (``locust.endpoints[i].response_times``,
    ms → count; older result files have none); this looks in ``locust`` and in each of ``locust.endpoints``."""
    loc = doc.get("locust") or {}
    sources = [e for e in loc.get("endpoints") or [] if endpoint in (None, e.get("name"))]
    if endpoint is None and any(k in loc for k in HIST_KEYS):
        sources = [loc]
    merged: dict[float, int] = {}
    for src in sources:
        hist = next((src[k] for k in HIST_KEYS if isinstance(src.get(k), dict)), None) or {}
        for ms, n in hist.items():
            merged[float(ms)] = merged.get(float(ms), 0) + int(n)
    return merged or None


def has_histograms(frame: pd.DataFrame) -> bool:
    return any(latency_hist(d) for d in frame["raw"])


def cdf(hist: dict[float, int]) -> pd.DataFrame:
    """Empirical CDF of a bucketed histogram: ``ms`` and the fraction of requests at or below it."""
    s = pd.Series(hist).sort_index()
    return pd.DataFrame({"ms": s.index.astype(float), "fraction": (s.cumsum() / s.sum()).values})


def ladder(frame: pd.DataFrame, by: str = "label") -> pd.DataFrame:
    """The percentile ladder (p50, p90, p99, max), one row per result: the fallback without histograms."""
    return summary(frame, by, PERCENTILES)


# --- scaling, consistency ---------------------------------------------------------------------


def tenants_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Many-tenants: per result, tenant count, cache bound, hit ratios, evictions, sizes, memory, rps."""
    rows = []
    for d, label in zip(frame["raw"], frame["label"]):
        s, caches = d.get("settings") or {}, d.get("caches") or {}
        env = s.get("server_env") or {}
        bound = env.get("FORGE_USER_MAX")
        row = {"label": label, "run_id": d["run_id"], "config": d["config"], "variant": d["variant"],
               "tenants": s.get("tenants"), "user_bound": int(bound) if bound else None}
        for layer in ("user", "service", "models"):
            c = caches.get(layer) or {}
            row.update({f"{layer}_hit_ratio": c.get("hit_ratio"), f"{layer}_evictions": c.get("evictions"),
                        f"{layer}_size": c.get("size")})
        row.update({"db_queries": (d.get("per_request") or {}).get("db_queries"),
                    "peak_rss_mb": d["server"]["peak_rss_mb"], "rps": d["locust"]["rps"]})
        rows.append(row)
    out = pd.DataFrame(rows)
    several = out["tenants"].nunique() > 1 or out["user_bound"].nunique() > 1  # else the title says them
    out["name"] = [config_name(r.label) + (f", {r.tenants:,} tenants" if several else "")
                   + (f", bound {r.user_bound:,.0f}" if several and pd.notna(r.user_bound) else "")
                   for r in out.itertuples()]
    return out.set_index("name")


BURST_COUNTERS = ["db_queries", "decryptions", "services_built", "upstream_model_list_requests",
                  "coalesced_waits", "upstream_requests"]


def burst_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Cold burst: per result, coalescing on or off, the burst's total loads (counters, not per request),
    its latency, and connection attempts that overflowed a listen backlog (they retry after 1 s)."""
    rows = []
    for d, label, on in zip(frame["raw"], frame["label"], frame["coalesce"]):
        c, loc = d.get("counters") or {}, d.get("locust") or {}
        tcp = (d.get("noise") or {}).get("tcp") or {}
        rows.append({"label": label, "config": d["config"], "coalescing": on,
                     "users": (d.get("settings") or {}).get("users"),
                     "requests": d.get("requests"), **{k: c.get(k) for k in BURST_COUNTERS},
                     **{k: loc.get(k) for k in PERCENTILES}, "listen_overflows": tcp.get("ListenOverflows")})
    return pd.DataFrame(rows).set_index("label")


def coalescing(bursts: pd.DataFrame, column: str) -> pd.DataFrame:
    """One :func:`burst_table` column with configurations as rows and coalescing on / off as columns
    (``no layer to coalesce`` where the configuration has no user, service or models cache)."""
    state = bursts["coalescing"].map({True: "coalescing on", False: "coalescing off"}).fillna("no layer to coalesce")
    table = bursts.assign(state=state).pivot_table(index="config", columns="state", values=column, aggfunc="last")
    states = [s for s in ("coalescing off", "coalescing on", "no layer to coalesce") if s in table.columns]
    return table.reindex(index=list(dict.fromkeys(bursts["config"])), columns=states)


def relative(table: pd.DataFrame, base: str, columns: list[str], how: str = "ratio") -> pd.DataFrame | None:
    """Each row's ``columns`` divided by (``how="ratio"``) or minus (``"diff"``) the ``base`` row; None
    without a base row."""
    if base not in table.index:
        return None
    ref = table.loc[base, columns]
    out = table[columns] / ref if how == "ratio" else table[columns] - ref
    return out.rename(columns=lambda c: f"{c} {'/' if how == 'ratio' else '−'} {base}")


def _is_write(e: dict) -> bool:
    name = e.get("name") or ""
    return e.get("method") in ("PUT", "PATCH", "DELETE") or "reset-key" in name or (
        e.get("method") == "POST" and "provider-keys" in name)


def churn_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Churn: per result, processes, the allowed staleness window, writes, checked reads, stale ones."""
    rows = []
    for d, label in zip(frame["raw"], frame["label"]):
        s, c, checks = d.get("settings") or {}, d.get("counters") or {}, (d.get("locust") or {}).get("checks") or {}
        eps = (d.get("locust") or {}).get("endpoints") or []
        rows.append({
            "file": d["_file"], "label": label, "cache_backend": backend(d)[1], "processes": s.get("processes"),
            "stale_bound_s": s.get("stale_bound_s"), "writes": sum(e["requests"] for e in eps if _is_write(e)),
            "checked_reads": checks.get("fresh_responses", 0) + checks.get("stale_responses", 0),
            "fresh": checks.get("fresh_responses"), "stale_responses": d.get("stale_responses"),
            "invalidations": c.get("invalidations"), "db_background_queries": c.get("db_background_queries"),
            "requests": d.get("requests")})
        rows[-1]["run_id"] = d["run_id"]
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["name"] = [config_name(r.label) + (f", {r.processes} processes, window {r.stale_bound_s:g} s"
                                           if (r.processes or 1) > 1 else "") for r in out.itertuples()]
    several = out.duplicated("name", keep=False)  # the same job in several runs: name the run
    out["name"] = out["name"] + [f" ({run})" if dup else "" for run, dup in zip(out["run_id"], several)]
    return out.drop(columns="run_id")


# --- micro costs and backends -----------------------------------------------------------------

OPS = {  # micro op -> what it is
    "in_process_hit": "in-process cache hit",
    "service_build_3_keys_lazy": "build a ProviderService (3 keys, lazy)",
    "sqlite_user_lookup": "SQLite user look-up",
    "fernet_decrypt": "Fernet decryption",
    "redis_hit": "Redis hit (L1 miss)",
    "postgres_user_lookup": "PostgreSQL user look-up",
}


def load_micro(directory: str | os.PathLike) -> pd.DataFrame:
    """Every micro result in :func:`micro_dirs` of ``directory`` (one row per file, like :func:`load`)."""
    frames = [f.assign(dir=str(d)) for d, f in ((d, load(d)) for d in micro_dirs(directory)) if not f.empty]
    frames = [f[(f["kind"] == "micro") & f["raw"].map(lambda d: isinstance(d.get("micro"), dict))] for f in frames]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    micro = pd.concat(frames, ignore_index=True)
    micro["ops"] = micro["raw"].map(lambda d: len(d["micro"]))
    # the most complete measurement last (Redis and PostgreSQL need their servers), then the latest
    return micro.sort_values(["ops", "started_at"]).reset_index(drop=True)


def micro_costs(micro: pd.DataFrame) -> pd.DataFrame:
    """The last row of :func:`load_micro` (the most operations, then the latest) as a table: µs per
    operation (best of the repeats, and their median), sorted by cost."""
    if micro.empty:
        return pd.DataFrame(columns=["op", "what", "us_per_op", "median_us", "n"]).set_index("op")
    doc = micro["raw"].iloc[-1]
    rows = [{"op": op, "what": OPS.get(op, op), **m} for op, m in doc["micro"].items()]
    return pd.DataFrame(rows).sort_values("us_per_op").set_index("op")


def backend_effects(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`on_off` steps measured on more than one store + cache backend, the latest run of each step on
    each; rows ordered sqlite + memory, sqlite + redis, postgres + memory, postgres + redis."""
    effects = on_off(frame)
    if effects.empty:
        return effects
    effects["backend"] = effects["store"] + " + " + effects["cache_backend"]
    latest = effects.sort_values("run_id").drop_duplicates(["profile", "step", "backend"], keep="last")
    compared = latest[latest.groupby(["profile", "step"])["backend"].transform("nunique") > 1]
    rank = {f"{s} + {c}": i for i, (s, c) in enumerate(COMBOS)}
    return compared.sort_values(["profile", "step", "backend"], key=lambda s: s.map(rank) if s.name == "backend"
                                else s).reset_index(drop=True)


def lookup_cost_model(frame: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame | None:
    """µs per request spent on DB look-ups and decryptions, per configuration, priced with the micro costs
    of each store: the measured counts of the load results × the measured cost of one operation. An
    estimate of the work the layers remove, not a measurement of a run on that store."""
    need = {"sqlite_user_lookup", "fernet_decrypt"}
    if frame.empty or not need <= set(costs.index):
        return None
    t = summary(frame)
    out = pd.DataFrame(index=t.index)
    for store in ("sqlite", "postgres"):
        op = f"{store}_user_lookup"
        if op in costs.index:
            out[f"{store} (µs/request)"] = (t["db_queries"] * costs.loc[op, "us_per_op"]
                                            + t["decryptions"] * costs.loc["fernet_decrypt", "us_per_op"])
    return out



def round_trips(frame: pd.DataFrame) -> pd.DataFrame:
    """Load results along ``run --db-rtt-ms``: the tidy metrics (:func:`summary`) indexed by ``series``, the
    label without its round trip (``none [postgres+db-rtt=2]`` → ``none [postgres]``; the profile first when
    there are several), and ``db_rtt_ms`` (0: direct); the median of repetitions. Plus ``added_p50_ms``, the
    p50 above the direct one of its series, and ``db_wait_ms``, DB queries per request × the round trip:
    what the hop adds to a request whose queries run one after another, which ``added_p50_ms`` is read against."""
    rows = frame[frame["kind"] == "load"] if "kind" in frame else frame
    if rows.empty:
        return pd.DataFrame(columns=[*METRICS, "added_p50_ms", "db_wait_ms"])
    series = rows["label"].str.replace(r"\+db-rtt=[^+\]]+", "", regex=True)
    if rows["profile"].nunique() > 1:
        series = rows["profile"] + ": " + series
    rtt = rows["settings.db_rtt_ms"].fillna(0.0) if "settings.db_rtt_ms" in rows else pd.Series(0.0, rows.index)
    t = summary(rows.assign(series=series.values, db_rtt_ms=rtt.astype(float).values), by=["series", "db_rtt_ms"])
    t = t.groupby(level=["series", "db_rtt_ms"], sort=False).median()
    order = {s: i for i, s in enumerate(dict.fromkeys(series))}  # series as the frame gives them (none first)
    t = t.sort_index(key=lambda idx: idx.map(order) if idx.name == "series" else idx)
    direct = t["p50_ms"].xs(0.0, level="db_rtt_ms") if 0.0 in t.index.get_level_values("db_rtt_ms") else None
    t["added_p50_ms"] = (t["p50_ms"] - t.index.get_level_values("series").map(direct).values
                         if direct is not None else float("nan"))
    t["db_wait_ms"] = t["db_queries"] * t.index.get_level_values("db_rtt_ms")
    return t
