"""The design's future work, measured: the profiles and the named plan, the figures and verdicts of
``benchmarks.future_report`` (on made-up documents with round numbers, and on the committed sample
of a tiny real run), the locustfile's turnover split, and a real ``cache-hit-c1`` probe."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import future_report as fw
from benchmarks import runner
from benchmarks.plan import named_plan, plan
from benchmarks.profiles import DUPLICATES_MAX_BYTES, LOAD_PROFILES, PROFILES, QUICK_PLAN
from benchmarks.report import render
from benchmarks.results import load_raw

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).parent / "data" / "sample_results"
OFF = "user,service,keys,models,adapters"


# --- the plan ---------------------------------------------------------------------------------------


def test_named_plan_runs_each_part_with_its_own_configurations_store_and_variants():
    jobs = named_plan("future-work")
    assert [(j.label(), j.store, j.db_rtt_ms) for j in jobs] == [
        ("duplicates_all", "sqlite", 0.0),
        (f"duplicates_{OFF.replace(',', '+')}", "sqlite", 0.0),
        ("cache-hit-c1_all", "sqlite", 0.0),
        ("short-ttl_all_postgres+db-rtt2+refreshoff", "postgres", 2.0),
        ("short-ttl_all_postgres+db-rtt2+refreshon", "postgres", 2.0),
        ("embeddings-burst_all_batchoff", "sqlite", 0.0),
        ("embeddings-burst_all_batch5ms", "sqlite", 0.0),
    ]
    env = [dict(j.server_env) for j in jobs]
    assert env[0] == env[1] == {"FORGE_RESPONSES_MAX_BYTES": str(DUPLICATES_MAX_BYTES)}
    ttls = {"FORGE_USER_TTL": "5", "FORGE_SERVICE_TTL": "6", "FORGE_MODELS_TTL": "8"}
    assert env[3] == ttls
    assert env[4] == {**ttls, "FORGE_USER_REFRESH_AHEAD": "0.8", "FORGE_SERVICE_REFRESH_AHEAD": "0.8",
                      "FORGE_MODELS_REFRESH_AHEAD": "0.8"}
    assert all(j.target == "forge-ref" and j.backend == "memory" for j in jobs)  # no baselines
    twice = named_plan("future-work", repeat=2)
    assert [(j.label(), j.repeat, j.repeats) for j in twice] == [(j.label(), r, 2) for r in (1, 2) for j in jobs]
    with pytest.raises(SystemExit):
        named_plan("everything")


def test_future_profiles_keep_to_their_configurations_and_stay_out_of_the_quick_plan():
    assert PROFILES["duplicates"].warmup == "locust"  # the repeated answers are stored before the window
    assert "cache-hit-c1" not in LOAD_PROFILES and PROFILES["cache-hit-c1"].probe
    assert [(j.config, j.variant) for j in plan(profiles=["duplicates", "short-ttl"], baselines=False)] == [
        ("all", ""), (OFF, ""), ("all", "refresh=off"), ("all", "refresh=on")]
    assert {j.profile for j in plan(quick=True)} == set(QUICK_PLAN) | {"latency-c1"}
    full = plan(baselines=False)
    assert len([j for j in full if j.profile in ("duplicates", "short-ttl")]) == 4


def test_cli_passes_the_named_plan_to_the_runner(monkeypatch, tmp_path):
    from benchmarks.__main__ import main

    calls = []
    monkeypatch.setattr(runner, "run", lambda **kw: calls.append(kw) or [tmp_path / "r.json"])
    main(["run", "--plan", "future-work", "--repeat", "2"])
    main(["run", "--quick"])
    assert [(c["named"], c["repeat"]) for c in calls] == [("future-work", 2), (None, 1)]
    with pytest.raises(SystemExit):
        main(["run", "--plan", "nothing"])
    with pytest.raises(SystemExit):  # the plan names its own profiles, configurations and stores
        main(["run", "--plan", "future-work", "--profiles", "steady"])
    assert len(calls) == 2


# --- the figures and verdicts -------------------------------------------------------------------------


def _doc(profile: str, config: str = "all", variant: str = "", *, run: str = "20990101T000000Z_abc", rep: int = 1,
         reps: int = 1, counters: dict | None = None, caches: dict | None = None, endpoints: list | None = None,
         timing: dict | None = None, p50: float = 10.0, p99: float = 40.0, env: dict | None = None) -> dict:
    return {"run_id": run, "target": "forge-ref", "profile": profile, "config": config, "variant": variant,
            "counters": counters or {}, "caches": caches or {}, "server_timing": timing,
            "locust": {"endpoints": endpoints or [], "p50_ms": p50, "p99_ms": p99, "rps": 500.0,
                       "requests": sum(e["requests"] for e in endpoints or []), "failures": 0},
            "server": {"peak_rss_mb": 100.0}, "settings": {"repeat": rep, "repeats": reps, "server_env": env or {}}}


def _ep(name: str, n: int, p50: float = 1.0) -> dict:
    return {"name": name, "requests": n, "p50_ms": p50}


DUP_ENDPOINTS = [_ep("/v1/chat/completions [repeat]", 250), _ep("/v1/chat/completions (stream) [repeat]", 150),
                 _ep("/v1/chat/completions [burst first]", 100), _ep("/v1/chat/completions [burst copy]", 150),
                 _ep("/v1/chat/completions (stream) [burst copy]", 150), _ep("/v1/chat/completions [unique]", 200)]


def _duplicates(upstream_on: int, **kw) -> list[dict]:
    on = _doc("duplicates", counters={"requests": 1000, "upstream_requests": upstream_on, "dedup_joins": 280},
              caches={"responses": {"hits": 700, "misses": 300, "bytes": 900_000, "size": 800, "evictions": 120}},
              endpoints=DUP_ENDPOINTS, env={"FORGE_RESPONSES_MAX_BYTES": "1048576"}, **kw)
    off = _doc("duplicates", OFF, counters={"requests": 1000, "upstream_requests": 1000}, endpoints=DUP_ENDPOINTS, **kw)
    return [on, off]


def _gateway(hit_us: float, bypass_us: float) -> dict:
    return {"phases_us": {"responses:hit gateway": {"p50": hit_us}, "responses:bypass gateway": {"p50": bypass_us}}}


def _short_ttl(on_near: float, **kw) -> list[dict]:
    turn = lambda near, away: {"layers_ms": {"* turnover:near": {"n": 100, "p50": 20, "p99": near},  # noqa: E731
                                             "* turnover:away": {"n": 900, "p50": 20, "p99": away}}}
    off = _doc("short-ttl", variant="postgres+db-rtt=2+refresh=off", counters={"requests": 900, "coalesced_waits": 30},
               caches={"user": {"misses": 40}, "service": {"misses": 20}, "models": {"misses": 10}},
               timing=turn(90, 55), **kw)
    on = _doc("short-ttl", variant="postgres+db-rtt=2+refresh=on", counters={"requests": 950},
              caches={"user": {"misses": 0, "refreshes": 30}, "service": {"refreshes": 20},
                      "models": {"refreshes": 10}}, timing=turn(on_near, 60), **kw)
    return [off, on]


def _batching(**kw) -> list[dict]:
    off = _doc("embeddings-burst", variant="batch=off", counters={"requests": 800, "upstream_requests": 800},
               p50=20, p99=60, **kw)
    on = _doc("embeddings-burst", variant="batch=5ms", p50=25, p99=50, counters={
        "requests": 1000, "upstream_requests": 40, "embeddings_batches": 40, "embeddings_batched_requests": 1000,
        "embeddings_batch_waits": 1000, "embeddings_batch_wait_ms": 3000.0}, **kw)
    return [off, on]


def test_duplicates_figures_count_the_share_from_the_requests_sent():
    on, off = _duplicates(310)
    d = fw.duplicates(on, off)
    assert d["duplicate_share"] == 0.7  # repeats 400 + burst copies 300, of 1000
    assert (d["upstream_per_request_on"], d["upstream_per_request_off"]) == (0.31, 1.0)
    assert d["gap_pp"] == pytest.approx(-1.0)
    assert (d["hits"], d["joins"], d["misses"], d["bytes"], d["bound"], d["entries"], d["evictions"]) == (
        700, 280, 300, 900_000, 1_048_576, 800, 120)
    del on["settings"]["server_env"]["FORGE_RESPONSES_MAX_BYTES"]
    assert fw.duplicates(on, off)["bound"] == 64 * 2**20  # the default bound


def test_targets_are_met_missed_or_not_measured():
    files = _duplicates(310) + [_doc("cache-hit-c1", timing=_gateway(180, 170),
                                     endpoints=[_ep("/v1/chat/completions [hit]", 500, 0.6),
                                                _ep("/v1/chat/completions [bypass]", 500, 1.5)])]
    files += _short_ttl(50) + _batching()
    rows = fw.targets(fw.measured(files))
    assert [r[3] for r in rows] == ["met", "met", "met", "met"]
    assert "1.000 → 0.310 calls/request" in rows[0][2] and "70.0 % duplicate traffic: 1.0 points apart" in rows[0][2]
    assert rows[1][2].startswith("0.180 − 0.170 = 0.010 ms")
    assert rows[2][2] == "0 (refresh-ahead off: 70; background refreshes on: 60)"
    assert rows[3][2] == "50 ms at turnovers vs 60 ms away from them (refresh-ahead off: 90 vs 55 ms)"
    b = fw.measured(files)["batching"]
    assert (b["saved"], b["batches"], b["inputs_per_batch"], b["mean_wait_ms"]) == (pytest.approx(0.96), 40, 25.0, 3.0)

    files = _duplicates(330) + [_doc("cache-hit-c1", timing=_gateway(480, 170))] + _short_ttl(70)
    files[4]["caches"]["user"]["misses"] = 2  # refresh-ahead on, yet two requests waited for a reload
    assert [r[3] for r in fw.targets(fw.measured(files))] == ["missed", "missed", "missed", "missed"]

    rows = fw.targets(fw.measured([]))
    assert [r[2:] for r in rows] == [[fw.NOT_MEASURED, "not measured"]] * 4


def test_repetitions_that_disagree_leave_a_verdict_not_settled():
    run = "20990102T000000Z_abc"
    files = _duplicates(310, run=run, rep=1, reps=2) + _duplicates(340, run=run, rep=2, reps=2)
    files += _short_ttl(50, run=run, rep=1, reps=2) + _short_ttl(50, run=run, rep=2, reps=2)
    rows = fw.targets(fw.measured(files))
    assert rows[0][3] == "not settled" and "0.310 calls/request" not in rows[0][2]
    assert "0.325 (0.310 to 0.340) calls/request" in rows[0][2]
    assert [r[3] for r in rows[2:]] == ["met", "met"]  # the same in both repetitions


def test_the_latest_run_holding_both_jobs_of_a_comparison_is_used():
    old = _duplicates(310)
    new = _duplicates(500, run="20990301T000000Z_abc")
    assert fw.measured(old + new[:1])["duplicates"]["upstream_per_request_on"] == 0.31  # new run lacks `off`
    assert fw.measured(old + new)["duplicates"]["upstream_per_request_on"] == 0.5


def test_the_section_from_the_committed_sample():
    files = load_raw(SAMPLE)
    m = fw.measured(files)
    d, h, off, on = m["duplicates"], m["hit"], m["short_ttl_off"], m["short_ttl_on"]
    # the tiny real run's own counts
    assert (d["requests"], d["hits"], d["joins"], d["misses"], d["evictions"]) == (6800, 4119, 2072, 2681, 1984)
    assert d["bytes"] <= d["bound"] == DUPLICATES_MAX_BYTES
    assert (off["sync_reloads"], on["sync_reloads"], on["refreshes"]) == (72, 0, 50)
    assert h["failures"] == 0 and m["short_ttl_store"] == "postgres+db-rtt=2"
    text = render(files, "docs/figures", [])
    section = text[text.index(f"## {fw.TITLE}"):]
    assert section.count("| met |") + section.count("| missed |") == 4
    assert "**Duplicates**" in section and "**Short TTLs**" in section and "**Embeddings batching**" in section
    empty = render([copy.deepcopy(f) for f in files if f["profile"] == "steady"], "docs/figures", [])
    assert empty[empty.index(f"## {fw.TITLE}"):].count(fw.NOT_MEASURED) == 4


# --- the locustfile's turnover split, and a real probe ---------------------------------------------


def test_turnover_split_puts_requests_in_flight_while_entries_turned_over_near():
    code = (
        "import json, locustfile as m\n"
        "t = m.Turnover('http://127.0.0.1:1', 'token')\n"
        "t.samples = [(10.0, 0), (11.0, 0), (12.0, 3), (13.0, 3), (14.0, 5)]  # turnovers in (11, 12] and (13, 14]\n"
        "for start, end in [(10.2, 10.5), (10.5, 11.2), (12.2, 12.8), (12.9, 13.1), (13.5, 13.6), (9.0, 10.5),\n"
        "                   (13.9, 14.5)]:\n"
        "    t.clock = lambda end=end: end\n"
        "    t.on_request('POST', 'x', (end - start) * 1000)\n"
        "print(json.dumps([[round(x) for x in side] for side in t.split()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == [[700, 200, 100], [300, 600]]


def test_cache_hit_probe_against_a_real_server(tmp_path):
    [path] = runner.run(profiles=["cache-hit-c1"], duration=1, out=tmp_path, baselines=False, verbose=False)
    doc = json.loads(path.read_text())
    hit, bypass = doc["locust"]["endpoints"][1], doc["locust"]["endpoints"][0]
    assert bypass["name"].endswith("[bypass]") and hit["name"].endswith("[hit]")
    n = hit["requests"]
    assert n > 0 and bypass["requests"] == n and doc["locust"]["failures"] == 0  # every hit answered from the cache
    phases = doc["server_timing"]["phases_us"]
    assert phases["responses:hit gateway"]["n"] == phases["responses:bypass gateway"]["n"] == n
    # counters from before the probe's own warm-up (25 rounds): the first opted-in request went upstream
    assert doc["counters"]["requests"] == 2 * (25 + n)
    assert doc["counters"]["upstream_requests"] == 25 + 1 + n
    assert doc["caches"]["responses"]["hits"] == 24 + n and doc["caches"]["responses"]["misses"] == 1
