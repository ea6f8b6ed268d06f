"""The design's future work, measured: the figures of ``--plan future-work`` and their RESULTS.md section.

Every figure is computed here from result files (the notebook ``07_future_work`` uses the same
functions): ``duplicates`` with the response cache on and off, ``cache-hit-c1`` (what a hit costs at
concurrency 1), ``short-ttl`` with refresh-ahead off and on, ``embeddings-burst`` with batching off
and a 5 ms window. A comparison pairs two jobs of one run, repetition by repetition (``--repeat``):
a figure that differs between repetitions is a ``Spread`` and a verdict they disagree on is
"not settled".
"""

from __future__ import annotations

from typing import Callable

from .profiles import BURST_COPIES, REPEATED_PROMPTS, all_but
from .repeats import Spread, each, merge, repetition, settle

TITLE = "The design's future work, measured"
COMMAND = "python -m benchmarks run --plan future-work"
RESPONSES_OFF = all_but("responses")
# Request-name tags of the traffic that repeats an answer already asked for (locustfile: DuplicatesUser).
DUPLICATE_TAGS = ("[repeat]", "[burst copy]")
RELOAD_LAYERS = ("user", "service", "models")
NOT_MEASURED = "not measured in these results"
SHARE_TOLERANCE_PP = 2.0  # the issue's targets
HIT_BUDGET_MS = 0.3

Match = Callable[[dict], bool]


# --- choosing the files -------------------------------------------------------------------------


def _last_part(doc: dict) -> str:
    """The profile's own variant (``refresh=on``), after the store's (``postgres+db-rtt=2+refresh=on``)."""
    return (doc.get("variant") or "").split("+")[-1]


def _is(profile: str, config: str | None = None, variant: str | None = None) -> Match:
    return lambda d: (d.get("target") == "forge-ref" and d.get("profile") == profile
                      and (config is None or d.get("config") == config)
                      and (variant is None or _last_part(d) == variant))


def pairs(files: list[dict], a: Match, b: Match) -> dict[int, tuple[dict, dict]]:
    """{repetition: (a's file, b's file)} of the latest run that holds both (the last file of each wins)."""
    for run in sorted({d["run_id"] for d in files if a(d) or b(d)}, reverse=True):
        found: dict[int, list[dict | None]] = {}
        for d in files:
            if d["run_id"] == run:
                for i, match in enumerate((a, b)):
                    if match(d):
                        found.setdefault(repetition(d)[0], [None, None])[i] = d
        both = {rep: (x, y) for rep, (x, y) in sorted(found.items()) if x and y}
        if both:
            return both
    return {}


def singles(files: list[dict], a: Match) -> dict[int, dict]:
    """{repetition: file} of the latest run holding a file that matches."""
    return {rep: x for rep, (x, _) in pairs(files, a, a).items()}


def over(figures: dict[int, dict]) -> dict:
    """Figures by repetition as one dict: a number that differs between repetitions becomes a ``Spread``."""
    return merge(figures) if len(figures) > 1 else next(iter(figures.values()))


# --- figures of one job or one pair -------------------------------------------------------------


def _per_request(doc: dict, counter: str) -> float | None:
    requests = doc["counters"].get("requests")
    return doc["counters"].get(counter, 0) / requests if requests else None


def duplicate_share(doc: dict) -> float | None:
    """The share of the requests sent that asked for an answer already asked for (Locust's counts by name)."""
    endpoints = doc["locust"].get("endpoints") or []
    total = sum(e["requests"] for e in endpoints)
    dup = sum(e["requests"] for e in endpoints if any(tag in e["name"] for tag in DUPLICATE_TAGS))
    return dup / total if total else None


def _bound(doc: dict) -> int:
    from forge_ref.settings import Settings

    env = (doc.get("settings") or {}).get("server_env") or {}
    return int(env.get("FORGE_RESPONSES_MAX_BYTES") or Settings.responses_max_bytes)


def duplicates(on: dict, off: dict) -> dict:
    """The response cache on against off, on the same duplicate traffic."""
    cache = on["caches"].get("responses", {})
    up_on, up_off = _per_request(on, "upstream_requests"), _per_request(off, "upstream_requests")
    share = duplicate_share(on)
    reduction = up_off - up_on if up_on is not None and up_off is not None else None
    return {
        "requests": on["counters"].get("requests", 0), "duplicate_share": share,
        "upstream_per_request_on": up_on, "upstream_per_request_off": up_off, "reduction": reduction,
        "gap_pp": 100 * (reduction - share) if reduction is not None and share is not None else None,
        "hits": cache.get("hits", 0), "misses": cache.get("misses", 0),
        "joins": on["counters"].get("dedup_joins", 0), "bytes": cache.get("bytes", 0), "bound": _bound(on),
        "entries": cache.get("size", 0), "evictions": cache.get("evictions", 0),
        "rss_on_mb": on["server"]["peak_rss_mb"], "rss_off_mb": off["server"]["peak_rss_mb"],
        "p50_on_ms": on["locust"]["p50_ms"], "p50_off_ms": off["locust"]["p50_ms"],
        "p99_on_ms": on["locust"]["p99_ms"], "p99_off_ms": off["locust"]["p99_ms"],
    }


def _phase_p50_ms(doc: dict, phase: str) -> float | None:
    value = (((doc.get("server_timing") or {}).get("phases_us") or {}).get(phase) or {}).get("p50")
    return value / 1000 if value is not None else None


def _endpoint_p50(doc: dict, suffix: str) -> float | None:
    return next((e["p50_ms"] for e in doc["locust"].get("endpoints") or [] if e["name"].endswith(suffix)), None)


def hit_cost(doc: dict) -> dict:
    """cache-hit-c1: the gateway's own time on a hit against a warm request that does not opt in."""
    hit, bypass = _phase_p50_ms(doc, "responses:hit gateway"), _phase_p50_ms(doc, "responses:bypass gateway")
    return {"hit_gateway_ms": hit, "bypass_gateway_ms": bypass,
            "added_ms": hit - bypass if hit is not None and bypass is not None else None,
            "hit_p50_ms": _endpoint_p50(doc, "[hit]"), "bypass_p50_ms": _endpoint_p50(doc, "[bypass]"),
            "requests": doc["locust"]["requests"], "failures": doc["locust"]["failures"]}


def _turnover(doc: dict, side: str) -> dict:
    return ((doc.get("server_timing") or {}).get("layers_ms") or {}).get(f"* turnover:{side}") or {}


def short_ttl(doc: dict) -> dict:
    """One short-ttl job: requests that paid a synchronous reload (a miss of a warm layer is a request
    that waited for a load), background refreshes, and p99 near turnovers against away from them."""
    caches, near, away = doc["caches"], _turnover(doc, "near"), _turnover(doc, "away")
    return {
        "requests": doc["counters"].get("requests", 0),
        "sync_reloads": sum(caches.get(layer, {}).get("misses", 0) for layer in RELOAD_LAYERS),
        **{f"{layer}_misses": caches.get(layer, {}).get("misses", 0) for layer in RELOAD_LAYERS},
        "coalesced_waits": doc["counters"].get("coalesced_waits", 0),
        "refreshes": sum(caches.get(layer, {}).get("refreshes", 0) for layer in RELOAD_LAYERS),
        "near_requests": near.get("n"), "near_p50_ms": near.get("p50"), "near_p99_ms": near.get("p99"),
        "away_requests": away.get("n"), "away_p50_ms": away.get("p50"), "away_p99_ms": away.get("p99"),
        "p50_ms": doc["locust"]["p50_ms"], "p99_ms": doc["locust"]["p99_ms"],
    }


def batching(off: dict, on: dict) -> dict:
    """embeddings-burst: the upstream calls a 5 ms window saves, and what it costs in latency."""
    up_off, up_on = _per_request(off, "upstream_requests"), _per_request(on, "upstream_requests")
    c = on["counters"]
    waits = c.get("embeddings_batch_waits", 0)
    return {
        "requests_off": off["counters"].get("requests", 0), "requests_on": on["counters"].get("requests", 0),
        "upstream_per_request_off": up_off, "upstream_per_request_on": up_on,
        "saved": 1 - up_on / up_off if up_off else None,
        "batches": c.get("embeddings_batches", 0),
        "inputs_per_batch": c.get("embeddings_batched_requests", 0) / c["embeddings_batches"]
        if c.get("embeddings_batches") else None,
        "mean_wait_ms": c.get("embeddings_batch_wait_ms", 0) / waits if waits else None,
        "p50_off_ms": off["locust"]["p50_ms"], "p50_on_ms": on["locust"]["p50_ms"],
        "p99_off_ms": off["locust"]["p99_ms"], "p99_on_ms": on["locust"]["p99_ms"],
        "rps_off": off["locust"]["rps"], "rps_on": on["locust"]["rps"],
    }


# --- all of them, from a directory's files -------------------------------------------------------


def measured(files: list[dict]) -> dict[str, dict | None]:
    """Each part's figures (None when its files are not there), over repetitions."""
    out: dict[str, dict | None] = {}
    dup = pairs(files, _is("duplicates", "all"), _is("duplicates", RESPONSES_OFF))
    out["duplicates"] = over({r: duplicates(a, b) for r, (a, b) in dup.items()}) if dup else None
    hit = singles(files, _is("cache-hit-c1", "all"))
    out["hit"] = over({r: hit_cost(d) for r, d in hit.items()}) if hit else None
    ttl = pairs(files, _is("short-ttl", "all", "refresh=off"), _is("short-ttl", "all", "refresh=on"))
    out["short_ttl_off"] = over({r: short_ttl(a) for r, (a, _) in ttl.items()}) if ttl else None
    out["short_ttl_on"] = over({r: short_ttl(b) for r, (_, b) in ttl.items()}) if ttl else None
    if ttl:
        doc = next(iter(ttl.values()))[1]
        out["short_ttl_store"] = "+".join(doc.get("variant", "").split("+")[:-1]) or "sqlite"
        env = (doc.get("settings") or {}).get("server_env") or {}
        out["short_ttls"] = ", ".join(f"{env.get(f'FORGE_{layer.upper()}_TTL', '?')} s" for layer in RELOAD_LAYERS)
    emb = pairs(files, _is("embeddings-burst", "all", "batch=off"), _is("embeddings-burst", "all", "batch=5ms"))
    out["batching"] = over({r: batching(a, b) for r, (a, b) in emb.items()}) if emb else None
    return out


# --- the section -----------------------------------------------------------------------------------


def _n(v, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, Spread):
        return v.format(lambda x: _n(x, digits)) + unit
    return f"{v:,.{digits}f}" + unit


def _pct(v, digits: int = 1) -> str:
    return _n(each(lambda x: None if x is None else 100 * x, v), digits, " %")


def _verdict(value, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return settle(each(lambda v: "not measured" if v is None else ("met" if ok(v) else "missed"), value))


def targets(m: dict) -> list[list[str]]:
    rows = []
    d = m["duplicates"]
    goal = f"within {SHARE_TOLERANCE_PP:g} percentage points"
    name = "duplicates: upstream calls per request reduced by the share of duplicate traffic"
    if d:
        rows.append([name, goal, f"{_n(d['upstream_per_request_off'], 3)} → {_n(d['upstream_per_request_on'], 3)} "
                     f"calls/request, {_pct(d['reduction'])} fewer, for {_pct(d['duplicate_share'])} duplicate "
                     f"traffic: {_n(each(abs, d['gap_pp']), 1)} points apart",
                     _verdict(d["gap_pp"], lambda g: abs(g) <= SHARE_TOLERANCE_PP)])
    else:
        rows.append([name, goal, NOT_MEASURED, "not measured"])
    h = m["hit"]
    name = "Added p50 on a response-cache hit over a warm request's gateway overhead"
    if h:
        rows.append([name, f"≤ {HIT_BUDGET_MS:g} ms", f"{_n(h['hit_gateway_ms'], 3)} − {_n(h['bypass_gateway_ms'], 3)} "
                     f"= {_n(h['added_ms'], 3)} ms (cache-hit-c1: concurrency 1, Server-Timing `gateway`)",
                     _verdict(h["added_ms"], lambda a: a <= HIT_BUDGET_MS)])
    else:
        rows.append([name, f"≤ {HIT_BUDGET_MS:g} ms", NOT_MEASURED, "not measured"])
    off, on = m["short_ttl_off"], m["short_ttl_on"]
    name = "Refresh-ahead on: requests that pay a synchronous reload of a hot entry"
    if on:
        rows.append([name, "0", f"{_n(on['sync_reloads'], 0)} (refresh-ahead off: {_n(off['sync_reloads'], 0)}; "
                     f"background refreshes on: {_n(on['refreshes'], 0)})",
                     _verdict(on["sync_reloads"], lambda n: n == 0)])
        gap = each(lambda a, b: None if a is None or b is None else a - b, on["near_p99_ms"], on["away_p99_ms"])
        rows.append(["Refresh-ahead on: p99 at expiry against steady state", "no worse",
                     f"{_n(on['near_p99_ms'], 0)} ms at turnovers vs {_n(on['away_p99_ms'], 0)} ms away from them "
                     f"(refresh-ahead off: {_n(off['near_p99_ms'], 0)} vs {_n(off['away_p99_ms'], 0)} ms)",
                     _verdict(gap, lambda g: g <= 0)])
    else:
        rows.append([name, "0", NOT_MEASURED, "not measured"])
        rows.append(["Refresh-ahead on: p99 at expiry against steady state", "no worse", NOT_MEASURED, "not measured"])
    return rows


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def section(files: list[dict]) -> list[str]:
    """The RESULTS.md section, from every result file (raw, not grouped)."""
    m = measured(files)
    lines = [f"## {TITLE}", "",
             f"Measured by `{COMMAND}` (about 3 minutes): the response cache and in-flight dedup on duplicate "
             "traffic, what a cache hit costs, refresh-ahead on short TTLs, and embeddings batching. Each "
             "comparison is two jobs of one run.", "",
             *_table(["target", "goal", "measured", "verdict"], targets(m)), ""]
    d = m["duplicates"]
    if d:
        lines += ["**Duplicates** (`duplicates`: every chat opts in with `Cache-Control: max-age=600`; part "
                  f"repeats {REPEATED_PROMPTS} prompts per tenant, part is bursts of {BURST_COPIES} identical copies "
                  "of a fresh prompt sent at "
                  "once, half of them streaming, the rest unique; the response cache bounded to "
                  f"{_n(d['bound'] / 2**20, 0)} MiB). The duplicate share is counted from the requests sent; "
                  "upstream calls from the gateway's counters. Joins are requests that shared a call in flight.", "",
                  *_table(["", "response cache on (`all`)", f"off (`{RESPONSES_OFF}`)"], [
                      ["requests", _n(d["requests"], 0), ""],
                      ["duplicate share of the traffic", _pct(d["duplicate_share"]), ""],
                      ["upstream calls per request", _n(d["upstream_per_request_on"], 3),
                       _n(d["upstream_per_request_off"], 3)],
                      ["cache hits / joins / misses", f"{_n(d['hits'], 0)} / {_n(d['joins'], 0)} / "
                       f"{_n(d['misses'], 0)}", ""],
                      ["bytes cached / bound", f"{_n(d['bytes'], 0)} / {_n(d['bound'], 0)} "
                       f"({_pct(each(lambda b, c: b / c, d['bytes'], d['bound']))})", ""],
                      ["entries held / evicted", f"{_n(d['entries'], 0)} / {_n(d['evictions'], 0)}", ""],
                      ["server peak RSS MB", _n(d["rss_on_mb"], 1), _n(d["rss_off_mb"], 1)],
                      ["p50 / p99 ms (closed loop)", f"{_n(d['p50_on_ms'], 0)} / {_n(d['p99_on_ms'], 0)}",
                       f"{_n(d['p50_off_ms'], 0)} / {_n(d['p99_off_ms'], 0)}"]]), ""]
    h = m["hit"]
    if h:
        lines += [f"**What a hit costs** (`cache-hit-c1`, one connection, alternately the same warm chat without "
                  f"opting in and with `max-age`; {_n(h['requests'], 0)} requests, {_n(h['failures'], 0)} not "
                  f"answered as asked): the gateway's own time (`Server-Timing` `gateway`, p50) "
                  f"{_n(h['hit_gateway_ms'], 3)} ms on a hit against {_n(h['bypass_gateway_ms'], 3)} ms on a "
                  f"request that goes upstream; as the client sees it, p50 {_n(h['hit_p50_ms'], 3)} ms against "
                  f"{_n(h['bypass_p50_ms'], 3)} ms (the hit also spares the upstream round trip).", ""]
    off, on = m["short_ttl_off"], m["short_ttl_on"]
    if on:
        rows = [[label, _n(x["requests"], 0), _n(x["sync_reloads"], 0),
                 " / ".join(_n(x[f"{layer}_misses"], 0) for layer in RELOAD_LAYERS), _n(x["coalesced_waits"], 0),
                 _n(x["refreshes"], 0), _n(x["near_requests"], 0), _n(x["near_p99_ms"], 0), _n(x["away_p99_ms"], 0),
                 f"{_n(x['p50_ms'], 0)} / {_n(x['p99_ms'], 0)}"] for label, x in (("off", off), ("on (0.8)", on))]
        lines += [f"**Short TTLs** (`short-ttl` on `{m['short_ttl_store']}`: user, service and models TTLs of "
                  f"{m['short_ttls']} over 10 hot tenants, chats and model lists). A synchronous reload is a request "
                  "that "
                  "found a warm layer's entry expired and waited for its load (a miss: the caches were warm before "
                  "the window). *At turnover* are the requests in flight during a 50 ms poll interval of `/_stats` "
                  "in which entries were reloaded or refreshed; the others are the steady state.", "",
                  *_table(["refresh-ahead", "requests", "synchronous reloads", "user / service / models",
                           "coalesced waits", "background refreshes", "requests at turnover",
                           "p99 at turnover ms", "p99 steady ms", "p50 / p99 all ms"], rows), ""]
    b = m["batching"]
    if b:
        lines += ["**Embeddings batching** (`embeddings-burst`: bursts of 8 concurrent embeddings of one tenant; "
                  "batching off and a 5 ms window). Latency is the closed loop's: where the server is the "
                  "bottleneck, the calls saved can pay for the window.", "",
                  *_table(["batching", "requests", "upstream calls/request", "batches", "inputs per batch",
                           "mean wait ms", "req/s", "p50 ms", "p99 ms"], [
                      ["off", _n(b["requests_off"], 0), _n(b["upstream_per_request_off"], 3), "", "", "",
                       _n(b["rps_off"], 0), _n(b["p50_off_ms"], 0), _n(b["p99_off_ms"], 0)],
                      ["5 ms window", _n(b["requests_on"], 0), _n(b["upstream_per_request_on"], 3),
                       _n(b["batches"], 0), _n(b["inputs_per_batch"], 1), _n(b["mean_wait_ms"], 2),
                       _n(b["rps_on"], 0), _n(b["p50_on_ms"], 0), _n(b["p99_on_ms"], 0)]]), "",
                  f"Upstream calls saved: {_pct(b['saved'])}; p50 {_n(b['p50_off_ms'], 0)} → "
                  f"{_n(b['p50_on_ms'], 0)} ms, p99 {_n(b['p99_off_ms'], 0)} → {_n(b['p99_on_ms'], 0)} ms.", ""]
    if not any(v for k, v in m.items() if k not in ("short_ttl_store", "short_ttls")):
        lines += [f"None of these jobs are in these results: run `{COMMAND}`.", ""]
    return lines
