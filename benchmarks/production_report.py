"""RESULTS.md's section "Under production-like conditions", from ``python -m benchmarks production`` results.

Every figure is computed from the result files of the latest production run (``settings.production``
names a file's phase and its simulated conditions), each forge-ref (or LiteLLM) figure against
mock-direct under the same load: *added* means the target's figure minus mock-direct's. The design's
claims and the issue's targets are judged here, each with its conditions; a target without the
results it needs says "not measured in these results", and one measured while the load generator was
saturated is "not settled" (a saturated generator measures itself).

The same tables, as lists of dicts, feed ``notebooks/06_production.py``.
"""

from __future__ import annotations

NOT_MEASURED = "not measured in these results"
NOT_SETTLED = "not settled"
COMMAND = "python -m benchmarks production"
TTFT_LIMIT_MS = 50.0  # "streams held": the concurrency before added TTFT p99 passes this
STREAM_TARGET = 2000
MODELS_429 = ".models.429"


def is_production(doc: dict) -> bool:
    return bool((doc.get("settings") or {}).get("production"))


def latest(docs) -> list[dict]:
    """The result files of the latest production run (of any iterable of result documents)."""
    docs = list(docs)
    runs = sorted({d["run_id"] for d in docs if is_production(d)})
    return [d for d in docs if is_production(d) and d["run_id"] == runs[-1]] if runs else []


def _phase(doc: dict) -> str:
    return doc["settings"]["production"]["phase"]


def _find(docs: list[dict], **match) -> dict | None:
    found = [d for d in docs if all(d.get(k) == v for k, v in match.items())]
    return found[-1] if found else None


def _sub(a, b):
    return None if a is None or b is None else round(a - b, 3)


def _fmt(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def _saturated(*docs: dict | None) -> bool:
    return any(d and (d.get("load_generator") or {}).get("saturated") for d in docs)


def _ttft(doc: dict, key: str):
    return ((doc.get("locust") or {}).get("ttft") or {}).get(key)


def _icd(doc: dict, key: str):
    return ((doc.get("locust") or {}).get("inter_chunk") or {}).get(key)


def _failures(doc: dict) -> int:
    return (doc.get("locust") or {}).get("failures") or 0


# --- the tables -------------------------------------------------------------------------------


def streams(docs: list[dict]) -> list[dict]:
    """long-streams, one row per target and concurrency level, each against mock-direct at that level."""
    rows = []
    for d in sorted((d for d in docs if d["profile"] == "long-streams" and d["target"] != "mock-direct"),
                    key=lambda d: (d["settings"]["users"], d["target"])):
        n = d["settings"]["users"]
        base = _find(docs, profile="long-streams", target="mock-direct", variant=d["variant"])
        server, loc = d["server"], d["locust"]
        per_stream = (_icd(d, "chunks") or 0) / loc["requests"] if _icd(d, "chunks") and loc.get("requests") else None
        chunks = per_stream * d["requests"] if per_stream and d.get("requests") else None
        rows.append({
            "target": d["target"], "streams": n, "requests": d.get("requests"), "failures": _failures(d),
            "ttft_p50_ms": _ttft(d, "p50_ms"), "ttft_p99_ms": _ttft(d, "p99_ms"),
            "added_ttft_p50_ms": _sub(_ttft(d, "p50_ms"), base and _ttft(base, "p50_ms")),
            "added_ttft_p99_ms": _sub(_ttft(d, "p99_ms"), base and _ttft(base, "p99_ms")),
            "added_icd_p50_ms": _sub(_icd(d, "p50_ms"), base and _icd(base, "p50_ms")),
            "added_icd_p99_ms": _sub(_icd(d, "p99_ms"), base and _icd(base, "p99_ms")),
            "rss_kb_per_stream": round((server["peak_rss_mb"] - server["rss_start_mb"]) * 1024 / n, 1),
            "cpu_ms_per_request": server.get("cpu_ms_per_request"),
            "cpu_ms_per_chunk": round(1000 * server["cpu_seconds"] / chunks, 4) if chunks else None,
            "load_cpu_utilisation": (d.get("load_generator") or {}).get("cpu_utilisation"),
            "saturated": _saturated(d, base), "baseline": base is not None,
        })
    return rows


def held(rows: list[dict], target: str = "forge-ref", limit: float = TTFT_LIMIT_MS) -> int | None:
    """The most concurrent streams measured before added TTFT p99 passes ``limit`` ms (None: not even the
    fewest stayed under it, or nothing measured)."""
    best = None
    for r in sorted((r for r in rows if r["target"] == target), key=lambda r: r["streams"]):
        if r["added_ttft_p99_ms"] is None or r["added_ttft_p99_ms"] > limit or r["failures"]:
            break
        best = r["streams"]
    return best


def chat(docs: list[dict]) -> list[dict]:
    """realistic-chat: every target and configuration, with the model-list 429s per hour."""
    base = _find(docs, profile="realistic-chat", target="mock-direct")
    rows = []
    for d in (d for d in docs if d["profile"] == "realistic-chat"):
        window = (d.get("noise") or {}).get("window_s") or d["settings"]["duration_s"]
        refused = sum(v for k, v in (d.get("mock_calls") or {}).items() if k.endswith(MODELS_429))
        listed = sum(v for k, v in (d.get("mock_calls") or {}).items() if k.endswith(".models"))
        rows.append({
            "target": d["target"], "config": d["config"], "users": d["settings"]["users"],
            "requests": d.get("requests"), "failures": _failures(d), "rps": d["locust"].get("rps"),
            "ttft_p50_ms": _ttft(d, "p50_ms"), "ttft_p99_ms": _ttft(d, "p99_ms"),
            "added_ttft_p50_ms": None if d is base else _sub(_ttft(d, "p50_ms"), base and _ttft(base, "p50_ms")),
            "added_ttft_p99_ms": None if d is base else _sub(_ttft(d, "p99_ms"), base and _ttft(base, "p99_ms")),
            "cpu_ms_per_request": d["server"].get("cpu_ms_per_request"),
            "model_list_calls": listed, "models_429": refused,
            "models_429_per_hour": round(refused * 3600 / window) if window else None,
            "saturated": _saturated(d),
        })
    return rows


def db(docs: list[dict]) -> list[dict]:
    """The db phase: per configuration and round trip, latency at concurrency 1 (added over mock-direct's
    probe) and, where measured, agent-loop under load; DB queries and pool waits per request."""
    probe_base = _find(docs, profile="latency-c1", target="mock-direct")
    load_base = _find(docs, profile="agent-loop", target="mock-direct")
    rows = []
    for d in (d for d in docs if d["target"] == "forge-ref" and d["profile"] in ("latency-c1", "agent-loop")):
        base = probe_base if d["profile"] == "latency-c1" else load_base
        loc, pr = d["locust"], d.get("per_request") or {}
        rows.append({
            "profile": d["profile"], "config": d["config"], "db_rtt_ms": d["settings"].get("db_rtt_ms") or 0.0,
            "measured_rtt_p50_ms": (((d.get("network") or {}).get("db") or {}).get("round_trip") or {}).get("p50_ms"),
            "p50_ms": loc.get("p50_ms"), "p99_ms": loc.get("p99_ms"), "rps": loc.get("rps"),
            "added_p50_ms": _sub(loc.get("p50_ms"), base and base["locust"].get("p50_ms")),
            "added_p99_ms": _sub(loc.get("p99_ms"), base and base["locust"].get("p99_ms")),
            "db_queries_per_request": pr.get("db_queries"), "decryptions_per_request": pr.get("decryptions"),
            "pool_waits_per_request": pr.get("db_pool_waits"),
            "pool_wait_ms_per_request": pr.get("db_pool_wait_ms"),
            "failures": _failures(d), "saturated": _saturated(d),
        })
    return sorted(rows, key=lambda r: (r["profile"], r["db_rtt_ms"], r["config"]))


# --- verdicts ---------------------------------------------------------------------------------


def _verdict(ok: bool, saturated: bool = False) -> str:
    if saturated:
        return NOT_SETTLED + " (load generator saturated)"
    return "met" if ok else "missed"


def _row(docs: list[dict], profile: str, config: str, rtt: float) -> dict | None:
    return next((r for r in db(docs) if r["profile"] == profile and r["config"] == config
                 and r["db_rtt_ms"] == rtt), None)


def targets(docs: list[dict]) -> list[list[str]]:
    """The issue's targets: [target, conditions, measured, verdict]."""
    out = []
    rtts = sorted({r["db_rtt_ms"] for r in db(docs)})
    hi = max(rtts) if rtts else None
    cond = f"PostgreSQL {hi:g} ms round trip, concurrency 1, warm" if hi else "PostgreSQL with a round trip"
    a0, a2 = _row(docs, "latency-c1", "all", 0.0), hi and _row(docs, "latency-c1", "all", hi)
    n0, n2 = _row(docs, "latency-c1", "none", 0.0), hi and _row(docs, "latency-c1", "none", hi)
    if a2 and hi >= 2:
        q = a2["db_queries_per_request"]
        out.append(["`all`: 0 DB round trips per request", cond, f"{_fmt(q, 2)} queries/request",
                    _verdict(q == 0)])
    else:
        out.append(["`all`: 0 DB round trips per request", "PostgreSQL 2 ms round trip", NOT_MEASURED, NOT_MEASURED])
    if a0 and a2 and hi >= 2:
        d = _sub(a2["p50_ms"], a0["p50_ms"])
        out.append(["`all`: p50 within 0.5 ms of the 0 ms case", cond, f"{_fmt(d, 3)} ms ({_fmt(a0['p50_ms'], 3)} → "
                    f"{_fmt(a2['p50_ms'], 3)})", _verdict(d is not None and d <= 0.5)])
    else:
        out.append(["`all`: p50 within 0.5 ms of the 0 ms case", "PostgreSQL 2 ms round trip", NOT_MEASURED,
                    NOT_MEASURED])
    if n0 and n2 and hi >= 2:
        d, q = _sub(n2["p50_ms"], n0["p50_ms"]), n2["db_queries_per_request"]
        out.append(["`none`: ≥ 2 round trips per request, visible as +4 ms or more", cond,
                    f"{_fmt(q, 2)} queries/request, p50 +{_fmt(d, 3)} ms",
                    _verdict(q is not None and q >= 2 and d is not None and d >= 4)])
    else:
        out.append(["`none`: ≥ 2 round trips per request, visible as +4 ms or more", "PostgreSQL 2 ms round trip",
                    NOT_MEASURED, NOT_MEASURED])
    rows = streams(docs)
    top = max((r for r in rows if r["target"] == "forge-ref"), key=lambda r: r["streams"], default=None)
    cond = f"{top['streams']:,} concurrent streams, one gateway process on one CPU" if top else ""
    enough = top is not None and top["streams"] >= STREAM_TARGET
    for name, value, ok in (
            ("added TTFT p99 ≤ 25 ms", top and top["added_ttft_p99_ms"],
             lambda v: v is not None and v <= 25),
            ("≤ 20 KB RSS per open stream", top and top["rss_kb_per_stream"], lambda v: v is not None and v <= 20),
            ("0 failed requests", top and top["failures"], lambda v: v == 0)):
        goal = f"{STREAM_TARGET:,} streams: {name}"
        if not enough:
            out.append([goal, f"{STREAM_TARGET:,} concurrent streams", NOT_MEASURED if not top else
                        f"only {top['streams']:,} streams measured", NOT_MEASURED])
            continue
        unit = " ms" if "TTFT" in name else " KB" if "RSS" in name else ""
        out.append([goal, cond, f"{_fmt(value, 1 if unit else 0)}{unit}", _verdict(ok(value), top["saturated"])])
    out.append(_models_target(docs))
    return out


def _models_target(docs: list[dict]) -> list[str]:
    goal = "`models` keeps model-list 429s at 0 where it off hits the limit"
    rows = [r for r in chat(docs) if r["target"] == "forge-ref"]
    on = next((r for r in rows if r["config"] == "all"), None)
    off = next((r for r in rows if r["config"] != "all"), None)
    if not on or not off:
        return [goal, "a rate-limited model list", NOT_MEASURED, NOT_MEASURED]
    cond = "realistic-chat, model lists rate limited per key (see the conditions)"
    measured = f"on: {on['models_429']} 429s ({on['models_429_per_hour']:,}/h); off: {off['models_429']} " \
               f"({off['models_429_per_hour']:,}/h)"
    if not off["models_429"]:
        return [goal, cond, measured, NOT_SETTLED + " (with it off the limit was not reached)"]
    return [goal, cond, measured, _verdict(on["models_429"] == 0)]


def claims(docs: list[dict]) -> list[list[str]]:
    """The design's claims re-judged here: [claim, conditions, measured, verdict]."""
    out = []
    rtts = sorted({r["db_rtt_ms"] for r in db(docs)})
    hi = max(rtts) if rtts else None
    if hi:
        n, a = _row(docs, "latency-c1", "none", hi), _row(docs, "latency-c1", "all", hi)
        if n and a:
            saved = _sub(n["p50_ms"], a["p50_ms"])
            out.append(["Fewer DB queries → lower latency", f"PostgreSQL {hi:g} ms away, concurrency 1",
                        f"`none` {_fmt(n['db_queries_per_request'], 2)} queries/request, p50 {_fmt(n['p50_ms'], 3)} ms;"
                        f" `all` {_fmt(a['db_queries_per_request'], 2)}, {_fmt(a['p50_ms'], 3)} ms",
                        "holds" if saved is not None and saved > 0.1 else "does not hold here"])
        n, a = _row(docs, "agent-loop", "none", hi), _row(docs, "agent-loop", "all", hi)
        if n and a and n["rps"] and a["rps"]:
            ratio = a["rps"] / n["rps"]
            out.append(["… higher throughput, less DB load", f"PostgreSQL {hi:g} ms away, agent-loop under load",
                        f"`all` {ratio:.2f}× the requests/s of `none`; DB queries/request "
                        f"{_fmt(n['db_queries_per_request'], 2)} → {_fmt(a['db_queries_per_request'], 2)}; pool waits/"
                        f"request {_fmt(n['pool_waits_per_request'], 2)} → {_fmt(a['pool_waits_per_request'], 2)}",
                        _verdict(ratio > 1.05, _saturated(*(_find(docs, profile="agent-loop", config=c) for c in
                                                            ("none", "all")))).replace("met", "holds")
                        .replace("missed", "does not hold here")])
    rows = streams(docs)
    if rows:
        n = held(rows)
        top = max(r["streams"] for r in rows if r["target"] == "forge-ref")
        out.append(["One gateway core holds thousands of streams", f"up to {top:,} concurrent streams, slow provider",
                    f"{n:,} streams held before added TTFT p99 passes {TTFT_LIMIT_MS:g} ms" if n else
                    f"added TTFT p99 above {TTFT_LIMIT_MS:g} ms already at the fewest streams measured",
                    "holds" if n and n >= 1000 else "does not hold here"])
    return out


# --- the section ------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def where(doc: dict) -> str:
    pin = doc["settings"].get("pinning")
    lg = doc.get("load_generator") or {}
    if not pin:
        return "processes not pinned"
    return (f"gateway on CPU {pin['server']}; Locust ({lg.get('processes') or 1} process(es)), the mock and the delay "
            f"proxies on CPU {pin['load']}")


def section(all_docs: list[dict]) -> list[str]:
    docs = latest(all_docs)
    lines = ["## Under production-like conditions", ""]
    if not docs:
        return lines + [f"Not measured in these results: run `{COMMAND}` (about 10 minutes), then the report.", ""]
    m = docs[0]["machine"]
    lines += [f"From run `{docs[0]['run_id']}` of `{COMMAND}` ({len(docs)} result files; commit `{docs[0]['commit']}`"
              + (", `--quick`: too small to judge" if docs[0]["settings"].get("quick") else "") + f"), on "
              f"{m['cpu_model']}, {m['cpu_count']} CPUs. *Added* is the figure minus mock-direct's under the "
              "same load. Conditions, one line each:", ""]
    for phase in ("streams", "db"):
        d = next((d for d in docs if _phase(d) == phase and d["target"] == "forge-ref"), None)
        if d:
            lines.append(f"- `{phase}`: {d['settings']['production']['conditions']}; {where(d)}.")
    lines += ["", "### The targets", "", *_table(["target", "conditions", "measured", "verdict"], targets(docs)), "",
              "### The design's claims, re-judged", ""]
    c = claims(docs)
    lines += [*_table(["claim", "conditions", "measured", "verdict"], c), ""] if c else [NOT_MEASURED + ".", ""]
    rows = streams(docs)
    if rows:
        lines += ["### Streams held open (long-streams)", "",
                  *_table(["target", "streams", "added TTFT p50 / p99 ms", "added inter-chunk p50 / p99 ms",
                           "RSS KB per stream", "CPU ms per request / chunk", "failures", "Locust CPU"],
                          [[r["target"], f"{r['streams']:,}", f"{_fmt(r['added_ttft_p50_ms'])} / "
                            f"{_fmt(r['added_ttft_p99_ms'])}", f"{_fmt(r['added_icd_p50_ms'])} / "
                            f"{_fmt(r['added_icd_p99_ms'])}", _fmt(r["rss_kb_per_stream"]),
                            f"{_fmt(r['cpu_ms_per_request'], 2)} / {_fmt(r['cpu_ms_per_chunk'], 3)}",
                            str(r["failures"]), _fmt(r["load_cpu_utilisation"], 2)
                            + (" (saturated)" if r["saturated"] else "")] for r in rows]), ""]
    rows = chat(docs)
    if rows:
        lines += ["### A chat application (realistic-chat)", "",
                  *_table(["target", "configuration", "req/s", "TTFT p50 / p99 ms", "added TTFT p50 / p99 ms",
                           "CPU ms/request", "model-list calls", "429s (per hour)", "failures"],
                          [[r["target"], f"`{r['config']}`", _fmt(r["rps"]), f"{_fmt(r['ttft_p50_ms'])} / "
                            f"{_fmt(r['ttft_p99_ms'])}", f"{_fmt(r['added_ttft_p50_ms'])} / "
                            f"{_fmt(r['added_ttft_p99_ms'])}", _fmt(r["cpu_ms_per_request"], 2),
                            str(r["model_list_calls"]), f"{r['models_429']} ({_fmt(r['models_429_per_hour'], 0)})",
                            str(r["failures"])] for r in rows]), ""]
    rows = db(docs)
    if rows:
        lines += ["### Latency and throughput against the round trip to PostgreSQL", "",
                  "`latency-c1`: one connection, sequential (the probe, µs timing); `agent-loop`: under load. "
                  "Pool waits: requests that waited for one of the pool's connections.", "",
                  *_table(["profile", "configuration", "round trip ms (measured p50)", "p50 / p99 ms",
                           "added p50 / p99 ms", "req/s", "DB queries/req", "pool waits/req (ms/req)"],
                          [[r["profile"], f"`{r['config']}`",
                            f"{r['db_rtt_ms']:g} ({_fmt(r['measured_rtt_p50_ms'], 2)})",
                            f"{_fmt(r['p50_ms'], 3)} / {_fmt(r['p99_ms'], 3)}",
                            f"{_fmt(r['added_p50_ms'], 3)} / {_fmt(r['added_p99_ms'], 3)}", _fmt(r["rps"]),
                            _fmt(r["db_queries_per_request"], 2),
                            f"{_fmt(r['pool_waits_per_request'], 2)} ({_fmt(r['pool_wait_ms_per_request'], 3)})"]
                           for r in rows]), ""]
    return lines
