"""``python -m benchmarks report``: RESULTS.md and the figures, derived from result files only.

Every number in the report is computed here from ``results/*.json``; comparisons are made
between files of the same run (same ``run_id``: same machine, commit and mock), using the
latest run that holds the files a comparison needs. The repetitions of a job (``--repeat``) are
grouped first (``repeats``): each figure is then the median and the range over the repetitions,
and a verdict the repetitions disagree on is "not settled". Output is deterministic: sorted
inputs, fixed figure sizes, no timestamps in the PNG metadata, so regenerating from the same
files gives byte-identical output.
"""

from __future__ import annotations

import os
from pathlib import Path

from forge_ref.settings import LAYERS

from . import future_report, phases, plots, production_report
from .profiles import FULL_CONFIGS
from .repeats import Spread, each, group, medians, repetition, settle, spread
from .results import config_label, frame, is_load_run, load_results, store_backend, summary

TARGET_ORDER = ["mock-direct", "bare-proxy-aiohttp", "bare-proxy-curl", "bare-proxy-httpx", "forge-ref",
                "forge-ref-aiohttp", "forge-ref-curl", "forge-ref-httpx", "litellm", "forge-ref-nodes"]
CLIENTS = ("aiohttp", "curl", "httpx")  # upstream clients a bare proxy or a forge-ref-<client> target may name
CONFIG_ORDER = {c: i for i, c in enumerate(FULL_CONFIGS)}
for _layer in plots.EARLIER_LAYERS:  # results from before the responses layer: their all-but-one where ours is
    CONFIG_ORDER[",".join(x for x in plots.EARLIER_LAYERS if x != _layer)] = CONFIG_ORDER[
        ",".join(x for x in LAYERS if x != _layer)]

# Measured on this kind of machine, outside the harness (see the issue): the per-operation
# costs that the layers save, against the cost of one proxied request.
LOCAL_COSTS = ("an indexed SQLite lookup costs 6-25 µs, a Fernet decryption 8 µs, while one proxied "
               "request costs 350-1,900 µs of server CPU depending on the upstream HTTP client")


# --- selection helpers ------------------------------------------------------------------------


def _config_key(doc: dict):
    return (CONFIG_ORDER.get(doc["config"], len(CONFIG_ORDER)), doc["config"], doc.get("variant", ""))


def _find(docs: list[dict], **match) -> dict | None:
    """The one doc matching every field (variant defaults to ""); the last file if several."""
    match.setdefault("variant", "")
    found = [d for d in docs if all(d.get(k) == v for k, v in match.items())]
    return found[-1] if found else None


def _runs(docs: list[dict]) -> list[str]:
    return sorted({d["run_id"] for d in docs}, reverse=True)  # latest first (run ids start with UTC time)


def _pair(docs: list[dict], a: dict, b: dict) -> tuple[dict, dict] | tuple[None, None]:
    """The latest run holding both a and b."""
    for run in _runs(docs):
        in_run = [d for d in docs if d["run_id"] == run]
        x, y = _find(in_run, **a), _find(in_run, **b)
        if x and y:
            return x, y
    return None, None


def _pr(doc: dict, key: str) -> float | None:
    return doc["per_request"].get(key)


def _num(v: float | Spread | None, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, Spread):
        return v.format(lambda x: _num(x, digits))
    if abs(v - round(v)) < 1e-9 and abs(v) >= 1:
        return f"{int(round(v)):,}"
    return f"{v:,.{digits}f}"


def _ratio(a, b):
    """a / b, repetition by repetition; None where it cannot be computed."""
    return each(lambda x, y: None if x is None or y is None or y == 0 else x / y, a, b)


NOISE = 0.05  # relative differences below this are reported as within noise, not as a verdict


def _gain_verdict(gain: float | None) -> str:
    if gain is None:
        return "not measured"
    if gain > 1 + NOISE:
        return "confirmed"
    if gain < 1 - NOISE:
        return "not confirmed (the opposite)"
    return f"within noise (±{NOISE:.0%})"


def _verdict(gain) -> str:
    """``gain`` > 1 means the claimed direction (e.g. old/new of a cost); "not settled" when the
    repetitions reach different verdicts."""
    return settle(each(_gain_verdict, gain))


def _meets(value, ok) -> str:
    """``met`` if ``ok(value)``, else ``missed``; "not settled" when the repetitions fall on both sides."""
    return settle(each(lambda v: "met" if ok(v) else "missed", value))


def _change(before: float, after: float) -> str:
    if after < before:
        return "eliminated" if after == 0 else "fewer"
    return "no change" if after == before else "more"


def _fewer(before, after, unit: str) -> tuple[str, str]:
    """(measured text, verdict) for a cost that should go down from ``before`` to ``after``."""
    if before is None or after is None:
        return "not measured in these results", "not measured"
    text = f"{_num(before, 3)} → {_num(after, 3)} {unit}"
    change = each(_change, before, after)
    if isinstance(change, Spread):  # the repetitions moved differently
        return text, settle(each(lambda c: "confirmed" if c in ("eliminated", "fewer") else "not confirmed", change))
    if change == "eliminated":
        return text + " (eliminated)", "confirmed"
    if change == "fewer":
        return text + f" ({before / after:.1f}× fewer)", "confirmed"
    if change == "no change":
        return text + " (no change)", "not confirmed"
    return text + f" ({after / before:.2f}× more)", "not confirmed"


# --- sections ---------------------------------------------------------------------------------


def _claims(docs: list[dict], files: list[dict] | None = None) -> list[list[str]]:
    """The claims table from ``docs`` (repetitions grouped); ``files``, every result file, for counts."""
    rows = []
    none, all_ = _pair(docs, {"target": "forge-ref", "profile": "steady", "config": "none"},
                       {"target": "forge-ref", "profile": "steady", "config": "all"})
    src = "steady, `none` vs `all`"
    if none:
        m, v = _fewer(_pr(none, "db_queries"), _pr(all_, "db_queries"), "DB queries/request")
        rows.append(["Fewer DB queries per request", src, m, v])
        m, v = _fewer(_pr(none, "decryptions"), _pr(all_, "decryptions"), "decryptions/request")
        rows.append(["Fewer decryptions", src, m, v])
    else:
        rows += [["Fewer DB queries per request", src, "not measured in these results", "not measured"],
                 ["Fewer decryptions", src, "not measured in these results", "not measured"]]
    mn, ma = _pair(docs, {"target": "forge-ref", "profile": "models-heavy", "config": "none"},
                   {"target": "forge-ref", "profile": "models-heavy", "config": "all"})
    if mn:
        m, v = _fewer(_pr(mn, "upstream_model_list_requests"), _pr(ma, "upstream_model_list_requests"),
                      "model-list calls/request")
        calls = f"; mock calls/request {_num(mn['mock']['total_calls'] / mn['requests'], 3)} → " \
                f"{_num(ma['mock']['total_calls'] / ma['requests'], 3)}" if mn["requests"] and ma["requests"] else ""
        rows.append(["Fewer provider API calls", "models-heavy, `none` vs `all`", m + calls, v])
    else:
        rows.append(["Fewer provider API calls", "models-heavy", "not measured in these results", "not measured"])
    if none:
        a, b = none["server"]["peak_rss_mb"], all_["server"]["peak_rss_mb"]
        rows.append(["Less memory", src + " (server peak RSS)",
                     f"{_num(a, 1)} MB → {_num(b, 1)} MB ({b - a:+.1f} MB)", _verdict(_ratio(a, b))])
    mt, mb = _pair(docs, {"target": "forge-ref", "profile": "many-tenants", "config": "all"},
                   {"target": "forge-ref", "profile": "many-tenants", "config": "all", "variant": "bounded"})
    if mt:
        a, b = mt["server"]["peak_rss_mb"], mb["server"]["peak_rss_mb"]
        rows.append(["Memory bounded by the cache limits", "many-tenants `all`, default vs bounded caches",
                     f"{_num(a, 1)} MB → {_num(b, 1)} MB; user cache size {mt['caches']['user']['size']:,} → "
                     f"{mb['caches']['user']['size']:,}, evictions {mb['caches']['user']['evictions']:,}",
                     _verdict(_ratio(a, b))])
    k_off, k_on = _pair(docs, {"target": "forge-ref", "profile": "many-tenants", "config": "user,service,models,adapters"},
                        {"target": "forge-ref", "profile": "many-tenants", "config": "all"})
    if k_off:
        a, b = k_off["server"]["peak_rss_mb"], k_on["server"]["peak_rss_mb"]
        rows.append(["Less memory from lazy decryption (`keys`)", "many-tenants, all but `keys` vs `all`",
                     f"{_num(a, 1)} MB → {_num(b, 1)} MB ({b - a:+.1f} MB); decryptions/request "
                     f"{_num(_pr(k_off, 'decryptions'), 3)} → {_num(_pr(k_on, 'decryptions'), 3)}",
                     _verdict(_ratio(a, b))])
    if none:
        a, b = none["locust"], all_["locust"]
        rows.append(["Lower latency", src + f" ({none['settings']['users']} users, closed loop; verdict on the mean)",
                     f"p50 {_num(a['p50_ms'])} → {_num(b['p50_ms'])} ms, p99 {_num(a['p99_ms'])} → "
                     f"{_num(b['p99_ms'])} ms, mean {_num(a['avg_ms'])} → {_num(b['avg_ms'])} ms",
                     _verdict(_ratio(a["avg_ms"], b["avg_ms"]))])
        r = _ratio(b["rps"], a["rps"])
        busy = f"; server CPUs busy {_num(none['server'].get('cpu_utilisation'))} → " \
               f"{_num(all_['server'].get('cpu_utilisation'))}"
        rows.append(["Higher throughput", src, f"{_num(a['rps'], 0)} → {_num(b['rps'], 0)} requests/s"
                     + (f" ({r:.2f}×)" if r else "") + busy, _verdict(r)])
        c = _ratio(none["server"]["cpu_ms_per_request"], all_["server"]["cpu_ms_per_request"])
        rows.append(["Less server CPU per request", src,
                     f"{_num(none['server']['cpu_ms_per_request'], 3)} → {_num(all_['server']['cpu_ms_per_request'], 3)}"
                     f" ms/request" + (f" ({c:.2f}× less)" if c else ""), _verdict(c)])
    c1, c0 = _pair(docs, {"target": "forge-ref", "profile": "cold-burst", "config": "all", "variant": "coalesce=1"},
                   {"target": "forge-ref", "profile": "cold-burst", "config": "all", "variant": "coalesce=0"})
    if c1:
        m, v = _fewer(c0["counters"].get("upstream_model_list_requests"),
                      c1["counters"].get("upstream_model_list_requests"), "model-list calls")
        drops = sum(((d.get("noise") or {}).get("tcp") or {}).get("ListenOverflows", 0) for d in (c0, c1))
        q0, q1 = c0["counters"].get("db_queries"), c1["counters"].get("db_queries")
        m += f"; DB queries {q0} → {q1}"
        if q0 == q1:
            m += (" (SQLite reads never suspend, so concurrent misses of one key cannot overlap and there is "
                  "nothing to merge; coalescing pays on awaited loads: upstream model lists, a remote database)")
        if drops:
            m += (f"; {drops} connection attempts overflowed a listen backlog during these bursts (1 s SYN "
                  "retries: the latency tail)")
        rows.append(["Coalescing saves duplicate loads in a cold burst",
                     f"cold-burst `all`, {c1['requests']} concurrent first requests, coalescing off vs on", m, v])
    else:
        rows.append(["Coalescing saves duplicate loads in a cold burst", "cold-burst",
                     "not measured in these results", "not measured"])
    churn = [d for d in (files or docs) if d["profile"] == "churn" and d["target"] == "forge-ref"]
    if churn:
        stale = sum(d.get("stale_responses") or 0 for d in churn)
        checks = sum(((d["locust"].get("checks") or {}).get("fresh_responses", 0)
                      + (d["locust"].get("checks") or {}).get("stale_responses", 0)) for d in churn)
        runs = f"{len(churn)} run" + ("s" if len(churn) > 1 else "")
        rows.append(["Invalidation is exact: no stale response after a write", f"churn, {runs}",
                     f"{stale} stale of {checks} checked reads", "confirmed" if stale == 0 else "not confirmed"])
    return rows


def _with_own_bare_proxy(docs: list[dict], profile: str) -> tuple[dict | None, dict | None, str | None]:
    """forge-ref `all` and the bare proxy with the same upstream client, in one run."""
    for client in CLIENTS:
        f, b = _pair(docs, {"target": "forge-ref", "profile": profile, "config": "all"},
                     {"target": f"bare-proxy-{client}", "profile": profile})
        if f and (f["settings"].get("upstream_client") or "curl") == client:
            return f, b, client
    return None, None, None


def _targets(docs: list[dict]) -> list[list[str]]:
    rows = []
    f, b, client = _with_own_bare_proxy(docs, "steady")
    if f:
        r = _ratio(f["locust"]["rps"], b["locust"]["rps"])
        rows.append([f"RPS, forge-ref `all` / bare proxy ({client})", "≥ 0.85",
                     (f"{_num(f['locust']['rps'], 0)} / {_num(b['locust']['rps'], 0)} = {r:.2f} (server CPUs busy "
                      f"{_num(f['server'].get('cpu_utilisation'))} / {_num(b['server'].get('cpu_utilisation'))}; "
                      "a ratio only says something about the servers when both are near 1.0)") if r else "n/a",
                     _meets(r, lambda x: x and x >= 0.85)])
        c = _ratio(f["server"]["cpu_ms_per_request"], b["server"]["cpu_ms_per_request"])
        rows.append([f"CPU per request, forge-ref `all` / bare proxy ({client})", "≤ 1.15×",
                     f"{_num(f['server']['cpu_ms_per_request'], 3)} / {_num(b['server']['cpu_ms_per_request'], 3)} ms"
                     f" = {c:.2f}×" if c else "n/a", _meets(c, lambda x: x and x <= 1.15)])
    else:
        rows += [["RPS, forge-ref `all` / bare proxy", "≥ 0.85", "not measured in these results", "-"],
                 ["CPU per request, forge-ref `all` / bare proxy", "≤ 1.15×", "not measured in these results", "-"]]
    f, lite = _pair(docs, {"target": "forge-ref", "profile": "steady", "config": "all"},
                    {"target": "litellm", "profile": "steady"})
    if f:
        r = _ratio(f["locust"]["rps"], lite["locust"]["rps"])
        c = _ratio(lite["server"]["cpu_ms_per_request"], f["server"]["cpu_ms_per_request"])
        rows.append(["RPS, forge-ref `all` / LiteLLM proxy", "≥ 10×",
                     f"{_num(f['locust']['rps'], 0)} / {_num(lite['locust']['rps'], 0)} = {r:.1f}×"
                     + (f" (CPU/request {c:.1f}× lower)" if c else "") if r else "n/a",
                     _meets(r, lambda x: x and x >= 10)])
    else:
        rows.append(["RPS, forge-ref `all` / LiteLLM proxy", "≥ 10×", "not measured in these results", "-"])
    f, m = _pair(docs, {"target": "forge-ref", "profile": "latency-c1", "config": "all"},
                 {"target": "mock-direct", "profile": "latency-c1"})
    if f:
        d = f["locust"]["p50_ms"] - m["locust"]["p50_ms"]
        rows.append(["Added p50 latency at concurrency 1 over mock-direct", "≤ 0.5 ms",
                     f"{_num(f['locust']['p50_ms'], 3)} − {_num(m['locust']['p50_ms'], 3)} = {d:.3f} ms",
                     _meets(d, lambda x: x <= 0.5)])
    else:
        rows.append(["Added p50 latency at concurrency 1 over mock-direct", "≤ 0.5 ms",
                     "not measured in these results", "-"])
    f, b, client = _with_own_bare_proxy(docs, "latency-c1")
    if f:
        rows.append([f"Added p50 latency at concurrency 1 over the bare proxy ({client}; forge-ref's own work)",
                     "(informational)",
                     f"{_num(f['locust']['p50_ms'], 3)} − {_num(b['locust']['p50_ms'], 3)} = "
                     f"{f['locust']['p50_ms'] - b['locust']['p50_ms']:.3f} ms", "-"])
    for other in CLIENTS:
        h, c = _pair(docs, {"target": f"forge-ref-{other}", "profile": "steady", "config": "all"},
                     {"target": "forge-ref", "profile": "steady", "config": "all"})
        if h:
            r = _ratio(h["server"]["cpu_ms_per_request"], c["server"]["cpu_ms_per_request"])
            default = c["settings"].get("upstream_client") or "curl"
            rows.append([f"Upstream client: {other} / {default} CPU per request (forge-ref `all`)", "(informational)",
                         f"{_num(h['server']['cpu_ms_per_request'], 3)} / {_num(c['server']['cpu_ms_per_request'], 3)}"
                         " ms" + (f" = {r:.2f}×" if r else ""), "-"])
    return rows


LAYER_PROFILE = {"models": "models-heavy"}  # steady never lists models: the models layer shows elsewhere


def _layers(docs: list[dict]) -> list[list[str]]:
    """Each layer alone against none, and all against all-but-that-layer (same run)."""
    from .profiles import all_but

    rows = []
    for layer in LAYERS:
        profile = LAYER_PROFILE.get(layer, "steady")
        for label, a_cfg, b_cfg in ((f"`{layer}` alone vs `none`", "none", layer),
                                    (f"`all` vs all but `{layer}`", all_but(layer), "all")):
            a, b = _pair(docs, {"target": "forge-ref", "profile": profile, "config": a_cfg},
                         {"target": "forge-ref", "profile": profile, "config": b_cfg})
            if not a and b_cfg == "all" and layer in plots.EARLIER_LAYERS:  # a result from before `responses`
                a, b = _pair(docs, {"target": "forge-ref", "profile": profile,
                                    "config": ",".join(x for x in plots.EARLIER_LAYERS if x != layer)},
                             {"target": "forge-ref", "profile": profile, "config": b_cfg})
            if not a:
                continue

            def delta(key: str, a: dict = a, b: dict = b) -> str:
                x, y = _pr(a, key), _pr(b, key)
                return "n/a" if x is None or y is None else f"{y - x:+.3f}"

            cpu_a, cpu_b = a["server"]["cpu_ms_per_request"], b["server"]["cpu_ms_per_request"]
            r = _ratio(b["locust"]["rps"], a["locust"]["rps"])
            rows.append([layer, profile, label, delta("db_queries"), delta("decryptions"),
                         delta("upstream_model_list_requests"), delta("adapters_built"),
                         f"{cpu_b - cpu_a:+.3f}" if cpu_a is not None and cpu_b is not None else "n/a",
                         f"{r:.2f}×" if r else "n/a"])
    return rows


COMBOS = [("sqlite", "memory"), ("sqlite", "redis"), ("postgres", "memory"), ("postgres", "redis")]
BACKENDS_TITLE = "What each cache layer saves on SQLite vs PostgreSQL (and memory vs Redis)"
BACKENDS_COMMAND = ("python -m benchmarks run --profiles steady --configs none all --stores sqlite,postgres "
                    "--backends memory,redis --no-baselines")
MULTI_NODE_COMMAND = ("python -m benchmarks run --profiles steady --configs all --stores postgres --backends redis "
                      "--multi-node 2 --no-baselines")


def _plain_store_variant(doc: dict) -> bool:
    """True if the variant names at most the store and backend (no ``bounded``, ``coalesce=…``, nodes)."""
    return all(x in ("postgres", "redis") for x in (doc.get("variant") or "").split("+") if x)


def _backend_docs(docs: list[dict]) -> tuple[str | None, dict]:
    """The latest run and profile (``steady`` first) with `none` or `all` on at least two store/backend
    combinations, and its results by (store, backend, config)."""
    for run in _runs(docs):
        cands = [d for d in docs if d["run_id"] == run and d["target"] == "forge-ref" and d["config"] in ("none", "all")
                 and _plain_store_variant(d)]
        profiles = sorted({d["profile"] for d in cands}, key=lambda p: (p != "steady", p))
        for profile in profiles:
            found = {}
            for d in cands:
                if d["profile"] == profile:
                    found[(*store_backend(d), d["config"])] = d  # the last file wins, as in _find
            combos = [c for c in COMBOS if (*c, "none") in found or (*c, "all") in found]
            if len(combos) >= 2:
                return profile, {k: v for k, v in found.items() if k[:2] in combos}
    return None, {}


def _backends_section(docs: list[dict]) -> list[str]:
    lines = [f"## {BACKENDS_TITLE}", ""]
    profile, found = _backend_docs(docs)
    if not found:
        return lines + ["Not measured in these results (they need `none` or `all` on at least two store/backend "
                        f"combinations of one run): run `{BACKENDS_COMMAND}`.", ""]
    any_doc = next(iter(found.values()))
    lines += [f"Profile `{profile}`, run `{any_doc['run_id']}`, `none` against `all` on each store and cache "
              "backend (PostgreSQL on this machine over loopback, Redis likewise; both unpinned, sharing the two "
              "CPUs). CPU ms/req is the gateway's own CPU: the PostgreSQL and Redis servers' CPU is not in it.", ""]
    rows = []
    for store, cache in COMBOS:
        for config in ("none", "all"):
            d = found.get((store, cache, config))
            if d is None:
                continue
            pr, loc = d["per_request"], d["locust"]
            rows.append([store, cache, f"`{config}`", _num(pr.get("db_queries"), 3), _num(pr.get("decryptions"), 3),
                         _num(loc["p50_ms"], 2), _num(loc["p99_ms"], 2), _num(loc["rps"], 0),
                         _num(d["server"]["cpu_ms_per_request"], 3)])
    lines += [_table(["store", "cache backend", "configuration", "DB queries/req", "decryptions/req", "p50 ms",
                      "p99 ms", "req/s", "CPU ms/req"], rows), ""]
    saved = []
    for store, cache in COMBOS:
        none, all_ = found.get((store, cache, "none")), found.get((store, cache, "all"))
        if none and all_:
            c0, c1 = none["server"]["cpu_ms_per_request"], all_["server"]["cpu_ms_per_request"]
            r = _ratio(all_["locust"]["rps"], none["locust"]["rps"])
            saved.append(f"{store}+{cache}: " + (f"{c0 - c1:.3f} ms CPU/req" if c0 is not None and c1 is not None
                                                 else "n/a") + (f", {r:.2f}× req/s" if r else ""))
    combos = [c for c in COMBOS if any(k[:2] == c for k in found)]
    partial = [f"{a}+{b}" for a, b in combos if not ((a, b, "none") in found and (a, b, "all") in found)]
    if saved:
        lines += ["What `all` saves against `none`: " + "; ".join(saved) + ".", ""]
    if partial:
        lines += [f"Only one of `none` and `all` in this run for {', '.join(partial)} (e.g. `--quick`); for every "
                  f"combination run `{BACKENDS_COMMAND}`.", ""]
    return lines


def _multi_node_lines(docs: list[dict]) -> list[str]:
    nodes = [d for d in docs if d["target"] == "forge-ref-nodes"]
    if not nodes:
        return [f"Multi-node (`forge-ref-nodes`): not measured in these results; run `{MULTI_NODE_COMMAND}`.", ""]
    run = _runs(nodes)[0]
    lines = []
    for d in sorted([d for d in nodes if d["run_id"] == run], key=lambda d: (d["profile"], *_config_key(d))):
        s, loc, pr, srv = d["settings"], d["locust"], d["per_request"], d["server"]
        n = s.get("nodes") or len(srv.get("nodes") or []) or "?"
        share = ", ".join(f"{x['requests']:,}" for x in srv.get("nodes") or [])
        line = (f"Multi-node: {n} forge-ref nodes (one process each) on one PostgreSQL and one Redis, profile "
                f"`{d['profile']}`, `{d['config']}` (run `{run}`): {_num(loc['rps'], 0)} req/s, p50 "
                f"{_num(loc['p50_ms'])} ms, p99 {_num(loc['p99_ms'])} ms, {_num(pr.get('db_queries'), 3)} DB "
                f"queries/req, {_num(srv['cpu_ms_per_request'], 3)} CPU ms/req and {_num(srv['peak_rss_mb'], 1)} MB "
                "peak RSS summed over the nodes" + (f" (requests per node: {share})" if share else ""))
        single = _find([x for x in docs if x["run_id"] == run], target="forge-ref", profile=d["profile"],
                       config=d["config"], variant="postgres+redis")
        if single:
            line += (f"; one node on the same store and cache: {_num(single['locust']['rps'], 0)} req/s, "
                     f"{_num(single['server']['cpu_ms_per_request'], 3)} CPU ms/req")
        note = (s.get("pinning") or {}).get("note")
        line += f". Pinning: {note}" if note else ". Pinning: none"
        lines += [line + "; with every node on one CPU this shows the cost of sharing state across nodes, "
                  "not a throughput gain.", ""]
    return lines


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _profile_rows(docs: list[dict]) -> list[list[str]]:
    rows = []
    for d in docs:
        pr, loc, srv = d["per_request"], d["locust"], d["server"]
        rows.append([d["profile"], f"`{config_label(d)}`", _num(loc["rps"], 0), _num(loc["p50_ms"], 2),
                     _num(loc["p99_ms"], 2), _num(pr.get("db_queries"), 3), _num(pr.get("decryptions"), 3),
                     _num(pr.get("upstream_model_list_requests"), 3), _num(srv["cpu_ms_per_request"], 3),
                     _num(srv["peak_rss_mb"], 1), _num(srv.get("cpu_utilisation"), 2),
                     _num((d.get("noise") or {}).get("other_cpu_utilisation"), 2), str(loc["failures"])])
    return rows


PROFILE_HEAD = ["profile", "configuration", "req/s", "p50 ms", "p99 ms", "DB queries/req", "decryptions/req",
                "model-list calls/req", "CPU ms/req", "peak RSS MB", "server CPUs busy", "other CPUs busy",
                "failures"]


# --- figures ----------------------------------------------------------------------------------


def _tidy(docs: list[dict], names: list[str]):
    """:func:`benchmarks.results.summary` of these docs, in their order, indexed by ``names``."""
    return summary(frame(docs).assign(name=names), by="name")


def figures(docs: list[dict], run: str | None, fig_dir: Path) -> list[tuple[str, str]]:
    """Write the figures of one run (drawn by :mod:`benchmarks.plots`, like the notebooks'); return
    (file name, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    plots.style()
    made = []
    in_run = [d for d in docs if d["run_id"] == run]
    steady = sorted([d for d in in_run if d["target"] == "forge-ref" and d["profile"] == "steady"], key=_config_key)
    if steady:
        table = _tidy(steady, [config_label(d) for d in steady])
        plots.save(plots.configurations(table, f"steady, run {run}: what each cache configuration costs"),
                   fig_dir / "layers_steady.png")
        made.append(("layers_steady.png", "Per cache configuration, profile `steady`, from `none` (top) to `all`: "
                                          "costs per request, server CPU, throughput and latency."))
    models = sorted([d for d in in_run if d["target"] == "forge-ref" and d["profile"] in ("models-heavy", "mixed")],
                    key=lambda d: (d["profile"], *_config_key(d)))
    if models:
        charts = {p: _tidy(grp, [config_label(d) for d in grp])[["model_list_calls", "provider_calls"]]
                  for p in dict.fromkeys(d["profile"] for d in models)
                  for grp in [[d for d in models if d["profile"] == p]]}
        order = list(dict.fromkeys(config_label(d) for d in sorted(models, key=_config_key)))
        plots.save(plots.grid(charts, "calls per client request", f"Upstream calls per client request, run {run}",
                              order, ncols=2), fig_dir / "provider_calls.png")
        made.append(("provider_calls.png", "Upstream calls per client request: model lists (the `models` layer) "
                                            "and every call the mock received."))
    base = [d for d in in_run if d["profile"] == "steady" and d["target"] in TARGET_ORDER
            and (d["target"] != "forge-ref" or d["config"] in ("all", "none")) and not d.get("variant")]
    base = sorted(base, key=lambda d: (TARGET_ORDER.index(d["target"]), *_config_key(d)))
    if len({d["target"] for d in base}) > 1:
        names = [config_label(d) if d["target"] != "forge-ref" else f"forge-ref ({d['config']})" for d in base]
        plots.save(plots.targets(_tidy(base, names), f"steady, run {run}: forge-ref against its baselines"),
                   fig_dir / "baselines.png")
        made.append(("baselines.png", "forge-ref against its baselines and peers, profile `steady` (for "
                                      "`mock-direct` the process under test is the mock itself)."))
    hits = sorted([d for d in in_run if d["target"] == "forge-ref" and d["caches"]
                   and d["profile"] in ("many-tenants", "mixed", "churn") and d["config"] == "all"],
                  key=lambda d: (d["profile"], d.get("variant", "")))
    if hits:
        ratios = pd.DataFrame([{layer: d["caches"].get(layer, {}).get("hit_ratio") for layer in ("user", "service",
                                                                                                  "models")}
                               for d in hits],
                              index=[d["profile"] + (f" [{d['variant']}]" if d.get("variant") else "") for d in hits])
        plots.save(plots.panels([plots.Panel(ratios, "fraction of look-ups served by the cache", ref=1)],
                                f"Cache hit ratios with every layer on (all), run {run}", width=9),
                   fig_dir / "hit_ratios.png")
        made.append(("hit_ratios.png", "Hit ratios of the user, service and models caches with every layer on."))
    return made


# --- the document -----------------------------------------------------------------------------


def _main_matrix(docs: list[dict]) -> bool:
    """Whether one run's docs are a main-matrix run (``--quick`` or full): forge-ref ``steady`` with
    ``none`` and with ``all``, on SQLite and in-process caches, with no added network distance."""
    plain = {d["config"] for d in docs
             if d["target"] == "forge-ref" and d["profile"] == "steady" and not d.get("variant")
             and store_backend(d) == ("sqlite", "memory") and not (d.get("settings") or {}).get("db_rtt_ms")}
    return {"none", "all"} <= plain


def _primary_run(docs: list[dict]) -> str | None:
    """The latest main-matrix run; without one, the run holding the most forge-ref result files.

    The report describes the code as it is, so a newer ``--quick`` run wins over an older full
    matrix (whose other configurations still feed the per-layer tables through ``_pair``).
    Follow-up runs (a peer, the store dimension, multi-node, production-like conditions) get
    their own sections; taking merely the latest run would make one of those the main table.
    """
    runs = _runs(docs)  # latest first
    if not runs:
        return None
    for run in runs:
        if _main_matrix([d for d in docs if d["run_id"] == run]):
            return run
    sizes = {run: sum(d["run_id"] == run and d["target"] == "forge-ref" for d in docs) for run in runs}
    return max(runs, key=lambda run: (sizes[run], run))


def _stores_text(docs: list[dict]) -> str:
    combos = sorted({store_backend(d) for d in docs if d["target"].startswith("forge-ref")},
                    key=lambda c: COMBOS.index(c) if c in COMBOS else 99)
    if combos in ([], [("sqlite", "memory")]):
        return "SQLite on local disk, in-process caches"
    names = {"sqlite": "SQLite on local disk", "postgres": "PostgreSQL on 127.0.0.1 (a fresh schema per job)",
             "memory": "in-process caches", "redis": "Redis on 127.0.0.1 (a key prefix per job)"}
    return ("stores and cache backends (the variant in brackets names them; none means SQLite and memory): "
            + "; ".join(f"{names[a]} + {names[b]}" for a, b in combos))


def _noise_line(docs: list[dict]) -> str:
    other = [(d.get("noise") or {}).get("other_cpu_utilisation") for d in docs]
    other = [x for x in other if x is not None]
    if not other:
        return "- Other load on the machine: not recorded in these results."
    return (f"- Other load on the machine during measured windows: {min(other):.2f}-{max(other):.2f} CPUs busy with "
            "processes outside the benchmark (column *other CPUs busy*; 0 is a quiet machine). Compare "
            "*server CPUs busy* with 1.0 to see whether the server or the load side (Locust + mock on one CPU) "
            "was the bottleneck: below ~0.9 the throughput figure is the load side's, not the server's.")


def _scale(docs: list[dict], micro: dict | None) -> str:
    """How big the per-request savings are next to the cost of a proxied request."""
    none, all_ = _pair(docs, {"target": "forge-ref", "profile": "steady", "config": "none"},
                       {"target": "forge-ref", "profile": "steady", "config": "all"})
    if micro is None:
        costs = LOCAL_COSTS + " (figures from the issue; run `python -m benchmarks.micro` to measure them here)"
        return f"Read the savings with scale in mind: on local SQLite {costs}."
    ops = micro["micro"]

    def us(name: str) -> str:
        return f"{ops[name]['us_per_op']:.1f} µs" if name in ops else "n/a"

    text = (f"Read the savings with scale in mind. Measured by `python -m benchmarks.micro` "
            f"(`{micro['_file']}`): an in-process cache hit costs {us('in_process_hit')}, a SQLite user "
            f"look-up {us('sqlite_user_lookup')}, a Fernet decryption {us('fernet_decrypt')}")
    if "postgres_user_lookup" in ops:
        text += f", a PostgreSQL look-up {us('postgres_user_lookup')}"
    if "redis_hit" in ops:
        text += f", a Redis hit {us('redis_hit')}"
    text += "."
    if none and "sqlite_user_lookup" in ops and "fernet_decrypt" in ops:
        saved = (_pr(none, "db_queries") * ops["sqlite_user_lookup"]["us_per_op"]
                 + _pr(none, "decryptions") * ops["fernet_decrypt"]["us_per_op"])
        cpu = all_["server"]["cpu_ms_per_request"] * 1000
        text += (f" The queries and decryptions that `all` removes from a steady request add up to about "
                 f"{saved:.0f} µs, against {cpu:.0f} µs of server CPU per proxied request with every layer on.")
    return text


def _repeats_line(docs: list[dict]) -> list[str]:
    counts = sorted({repetition(d)[1] for d in docs if d.get("_files")})
    if not counts:
        return []
    return [f"- Repetitions: {' or '.join(map(str, counts))} of every job, interleaved (`--repeat`). A figure is "
            "the median over the repetitions with its range, `median (min to max)`; a figure comparing two jobs "
            "is computed within each repetition first. A verdict the repetitions disagree on (the range crosses "
            "the target) is *not settled*."]


SERVICES = {"db": "PostgreSQL", "redis": "Redis"}


def _network_line(files: list[dict]) -> list[str]:
    """The round trips to PostgreSQL and Redis asked and measured, when a delay proxy was used."""
    if not any((h or {}).get("proxy") for d in files for h in (d.get("network") or {}).values()):
        return []
    parts = []
    for service, name in SERVICES.items():
        by_rtt: dict[float, list[dict]] = {}
        for d in files:
            hop = (d.get("network") or {}).get(service)
            if hop and hop.get("round_trip"):
                by_rtt.setdefault(hop["rtt_ms"], []).append(hop)
        for rtt, hops in sorted(by_rtt.items()):
            p50 = spread(dict(enumerate(h["round_trip"]["p50_ms"] for h in hops)))
            cpu = [h["proxy"]["cpu_ms_per_request"] for h in hops if h["proxy"] and h["proxy"]["cpu_ms_per_request"]]
            parts.append(f"{name} " + (f"{rtt:g} ms asked" if rtt else "direct") + f": p50 {_num(p50, 2)} ms, p99 up "
                         f"to {_num(max(h['round_trip']['p99_ms'] for h in hops), 2)} ms"
                         + (f", proxy CPU up to {_num(max(cpu), 3)} ms/request" if cpu else ""))
    return ["- Network distance (`--db-rtt-ms`, `--redis-rtt-ms`: a delay proxy pinned with the load side; round "
            "trips measured before each job with `SELECT 1` / `PING`): " + "; ".join(parts) + "."]


def render(docs: list[dict], fig_rel: str, made: list[tuple[str, str]], micro: dict | None = None) -> str:
    lines = ["# forge-ref benchmark results", "",
             "Generated by `python -m benchmarks report` from the result files in `results/`; do not edit by hand. "
             "Every number below is computed from those files.", ""]
    if not docs:
        return "\n".join(lines + ["No result files yet: run `python -m benchmarks run --quick`.", ""])
    files, docs = docs, group(docs)  # every result file; one document per job
    run = _primary_run(docs)
    primary = [d for d in docs if d["run_id"] == run]
    primary_files = [d for d in files if d["run_id"] == run]
    ref = next((d for d in primary if d["target"] == "forge-ref"), primary[0])
    m, s = ref["machine"], ref["settings"]
    pin = s.get("pinning")
    if not pin:
        pin_text = "none (taskset missing, fewer than 2 CPUs, or --no-pin)"
    elif pin.get("server") is None:
        pin_text = f"server unpinned ({s['processes']} processes), Locust and the mock on CPU {pin['load']} (`taskset -c`)"
    else:
        pin_text = f"server on CPU {pin['server']}, Locust and the mock on CPU {pin['load']} (`taskset -c`)"
    lines += ["## Machine and method", "",
              f"- Run `{run}` ({len(primary_files)} result files of {len(files)} in the directory), commit "
              f"`{ref['commit']}`"
              + (" with uncommitted changes" if ref.get("commit_dirty") else "") + ".",
              f"- Machine: {m['cpu_model']}, {m['cpu_count']} CPUs, {m.get('memory_gb')} GB, Python {m['python']}, "
              f"{m['platform']}, Locust {m.get('locust')}.",
              f"- Pinning: {pin_text}.",
              f"- Load: Locust `FastHttpUser`, closed loop (no wait), {s['users']} users, {s['duration_s']:g} s measured "
              f"per job after a warm-up; `DELETE /_stats` and `DELETE /_mock/stats` just before the measured "
              "window, so counters are deltas over it. The mock answers instantly (no latency), so every "
              "millisecond is the gateway's, the load generator's or the mock's own CPU.",
              f"- Server: {s['processes']} process(es), upstream client `{s['upstream_client']}` unless the target "
              "says otherwise; " + _stores_text(primary) + ".",
              _noise_line(primary_files), *_network_line(primary_files), *_repeats_line(primary),
              "- Commands:", "",
              "  ```",
              "  python -m benchmarks run" + (" --quick" if s.get("quick") else "")
              + (f" --repeat {s['repeats']}" if (s.get("repeats") or 1) > 1 else "") + "   # writes results/*.json",
              "  python -m benchmarks report                 # writes RESULTS.md and docs/figures/*.png",
              "  ```", "",
              _scale(docs, micro) + " Removing a query and a decryption per request therefore saves tens of "
              "microseconds against hundreds; the layers matter more when the database is remote, shared or "
              "contended (a network round trip per query) and when providers are real (a model-list call costs "
              "the provider's latency and quota).", ""]
    lines += ["## The design's claims", "", _table(["claim", "measured on", "measured", "verdict"], _claims(docs, files)),
              ""]
    lines += ["## Targets", "", _table(["target", "goal", "measured", "verdict"], _targets(docs)), ""]
    lines += phases.section(docs, micro, run)
    layer_rows = _layers(docs)
    if layer_rows:
        lines += ["## What each layer buys", "",
                  "Differences per request when the layer is switched on, measured two ways: added to nothing, "
                  "and taken away from everything (negative is a saving; throughput as a ratio).", "",
                  _table(["layer", "profile", "comparison", "Δ DB queries/req", "Δ decryptions/req", "Δ model-list calls/req",
                          "Δ adapters built/req", "Δ CPU ms/req", "req/s ratio"], layer_rows), ""]
    lines += _backends_section(docs) + _multi_node_lines(docs)
    lines += future_report.section(files)
    lines += ["## All results of this run", "", "Forge-ref by profile and cache configuration; baselines and peers "
              "below. Latency percentiles from Locust are bucketed (1 ms below 100 ms); the `latency-c1` rows "
              "come from a sequential single-connection probe with microsecond timing.", ""]
    forge = sorted([d for d in primary if d["target"] == "forge-ref"], key=lambda d: (d["profile"], *_config_key(d)))
    lines += [_table(PROFILE_HEAD, _profile_rows(forge)), ""]
    others = sorted([d for d in primary if d["target"] != "forge-ref"],
                    key=lambda d: (d["profile"], TARGET_ORDER.index(d["target"]) if d["target"] in TARGET_ORDER else 99))
    if others:
        lines += ["Baselines and peers:", "", _table(PROFILE_HEAD, _profile_rows(others)), ""]
    ttft = [d for d in forge if d["locust"].get("ttft")]
    if ttft:
        lines += ["Time to first token of streamed chats (`ttft`, from Locust, ms):", "",
                  _table(["profile", "configuration", "streams", "p50", "p90", "p99"],
                         [[d["profile"], f"`{config_label(d)}`", str(d["locust"]["ttft"]["requests"]),
                           _num(d["locust"]["ttft"]["p50_ms"]), _num(d["locust"]["ttft"]["p90_ms"]),
                           _num(d["locust"]["ttft"]["p99_ms"])] for d in ttft]), ""]
    if made:
        lines += ["## Figures", ""]
        for name, caption in made:
            lines += [f"![{caption}]({fig_rel}/{name})", "", f"*{caption}*", ""]
    lines += ["## Result files", "", "All in the results directory:", ""]
    lines += [f"- `{d['_file']}`" for d in files]
    if micro is not None:
        lines.append(f"- `{micro['_file']}` (per-operation costs)")
    lines.append("")
    return "\n".join(lines)


def report(results_dir: str | os.PathLike = "results", out: str | os.PathLike = "RESULTS.md",
           figures_dir: str | os.PathLike = "docs/figures") -> Path:
    df = load_results(results_dir)
    every = sorted(df.attrs["raw"], key=lambda d: d["_file"])
    # production's results have their own section (production_report): kept out of the main tables' selections
    production = [d for d in every if is_load_run(d) and production_report.is_production(d)]
    docs = [d for d in every if is_load_run(d) and not production_report.is_production(d)]
    micro = [d for d in every if d.get("profile") == "micro" and isinstance(d.get("micro"), dict)]
    soaks = [d for d in every if d.get("profile") == "soak" and isinstance(d.get("rss"), dict)]
    out, fig_dir = Path(out), Path(figures_dir)
    jobs = group(docs)
    made = figures([medians(d) for d in jobs], _primary_run(jobs), fig_dir) if docs else []
    fig_rel = Path(os.path.relpath(fig_dir.resolve(), out.resolve().parent)).as_posix()
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(docs, fig_rel, made, micro[-1] if micro else None)
    if soaks:
        text = text.rstrip("\n") + "\n\n" + soak_section(soaks[-1])
    text = text.rstrip("\n") + "\n\n" + "\n".join(production_report.section(production))
    out.write_text(text)
    return out


def soak_section(soak: dict) -> str:
    """Memory under a long mixed load (``python -m benchmarks.soak``), from its result file."""
    rss, st = soak["rss"], soak.get("settings", {})
    sizes = [smp["cache_sizes"] for smp in rss.get("samples", []) if smp.get("cache_sizes")]
    largest = {k: max(sz.get(k, 0) for sz in sizes) for k in sorted(sizes[0])} if sizes else {}
    evictions = rss["samples"][-1].get("evictions") if rss.get("samples") else None
    bits = ", ".join(f"{k} {v:,}" for k, v in largest.items())
    return "\n".join([
        "## Memory under a long load (soak)", "",
        f"`{soak['_file']}`: {soak['requests']:,} mixed requests at {soak.get('throughput_rps', 0):,.0f} req/s "
        f"with cache bounds of {st.get('cache_max', '?')} entries per layer "
        f"({st.get('tenants', '?')} tenants, so the caches evict all the time: {evictions or 0:,} evictions). "
        f"Server RSS grew {rss['growth_after_warmup_mb']:.2f} MB after the warm-up, peak "
        f"{rss['peak_mb']:.1f} MB; largest cache sizes seen: {bits or 'n/a'}. "
        "Command: `python -m benchmarks.soak --minutes N`.", ""])
