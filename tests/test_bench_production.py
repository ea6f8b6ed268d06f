"""benchmarks.production (the plan), its profiles and options, production_report (tables and verdicts), and one
tiny real run of ``python -m benchmarks production --quick`` (its streams phase)."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

from benchmarks import mock_timing
from benchmarks import production_report as pr
from benchmarks.locust_stats import summarize_locust
from benchmarks.production import DEFAULT, MODELS_OFF, QUICK, production_plan, run_production
from benchmarks.profiles import LOAD_PROFILES, PROFILES
from benchmarks.targets import mock_flags

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "sample_production"


# --- profiles and plan ------------------------------------------------------------------------


def test_the_three_profiles_are_rows_with_user_classes_the_locustfile_defines():
    tree = ast.parse((REPO / "locustfile.py").read_text())
    classes = {n.name: [b.id for b in n.bases if isinstance(b, ast.Name)] for n in tree.body
               if isinstance(n, ast.ClassDef)}
    for name, cls in (("realistic-chat", "RealisticChatUser"), ("agent-loop", "AgentLoopUser"),
                      ("long-streams", "LongStreamUser")):
        assert name in LOAD_PROFILES and PROFILES[name].user_classes == (cls,)
        assert PROFILES[name].providers == "openai"  # mock-direct and LiteLLM serve the same traffic
        assert classes[cls] == ["ForgeUser"] and "FastHttpUser" in classes["ForgeUser"]
    assert PROFILES["long-streams"].stages == ((1.0, 1.0, "all"),)
    assert [p for p in PROFILES if PROFILES[p].streams] == ["realistic-chat", "long-streams"]


def test_the_default_plan_counts():
    streams, db = production_plan()
    assert (streams.name, db.name) == ("streams", "db")
    levels = [j.users for j in streams.jobs if j.profile == "long-streams"]
    assert levels == [200, 200, 1000, 1000, 2000, 2000]
    assert [j.target for j in streams.jobs if j.profile == "long-streams"] == ["mock-direct", "forge-ref"] * 3
    chat = [(j.target, j.config) for j in streams.jobs if j.profile == "realistic-chat"]
    assert chat == [("mock-direct", "n/a"), ("forge-ref", "all"), ("forge-ref", MODELS_OFF)]
    assert "models" not in MODELS_OFF.split(",") and len(MODELS_OFF.split(",")) == 5
    assert len(db.jobs) == 2 + 3 * (8 + 2)
    probes = [j for j in db.jobs if j.profile == "latency-c1" and j.target == "forge-ref"]
    assert len(probes) == 24 and {j.db_rtt_ms for j in probes} == {0.0, 0.5, 2.0}
    assert all(j.store == "postgres" for j in db.jobs if j.target == "forge-ref")
    configs = {j.config for j in probes}  # none, all, each chat layer alone, all but each of them
    assert len(configs) == 8 and {"none", "all", "user", "service", "keys"} < configs
    assert sum(len(c.split(",")) == 5 for c in configs) == 3
    for phase in (streams, db):
        labels = [j.label() for j in phase.jobs]
        assert len(labels) == len(set(labels))  # one result file name per job
    assert streams.options["load_processes"] == 1 and streams.options["mock_timing"] == DEFAULT.mock
    assert production_plan(quick=True)[0].options["load_processes"] == 2  # the tests drive Locust's --processes
    assert "lognormal, median 300 ms" in streams.conditions and "2000 streams" in streams.conditions
    assert "0, 0.5, 2 ms" in db.conditions and "pool of 10" in db.conditions


def test_the_peer_runs_where_it_supports_the_profile_and_quick_is_small():
    streams, db = production_plan(peer="litellm")
    assert sum(j.target == "litellm" for j in streams.jobs) == 3 + 1
    assert not any(j.target == "litellm" for j in db.jobs)  # LiteLLM has no cache layers or store to compare
    quick = production_plan(quick=True)
    assert [len(p.jobs) for p in quick] == [2 + 3, 2 + 2 * (2 + 2)]
    assert quick[0].options["mock_timing"] == QUICK.mock
    assert [p.name for p in production_plan(phases=["db"])] == ["db"]


def test_bad_plan_options_stop_with_a_message():
    with pytest.raises(SystemExit, match="unknown phase"):
        production_plan(phases=["nope"])
    with pytest.raises(SystemExit, match="unknown peer"):
        production_plan(peer="other")


def test_the_mock_timing_model_as_flags_and_checked_by_the_mock_itself():
    assert mock_flags({"ttft_ms": 300.0, "token_rate": (20, 40), "tokens_per_chunk": 15, "seed": None}) == [
        "--ttft-ms", "300", "--token-rate", "20-40", "--tokens-per-chunk", "15"]
    assert mock_timing.check({"ttft_ms": 1.0, "seed": None}) == {"ttft_ms": 1.0}
    with pytest.raises(SystemExit, match="LOW cannot be above HIGH"):
        mock_timing.check({"token_rate": (40, 20)})
    with pytest.raises(SystemExit, match="unknown mock timing"):
        mock_timing.check({"latency": 1})


def test_inter_chunk_events_are_kept_apart_with_their_chunk_count():
    entries = [
        {"method": "POST", "name": "/v1/chat/completions (stream)", "num_requests": 2, "num_failures": 0,
         "total_response_time": 20.0, "max_response_time": 12, "response_times": {"10": 2},
         "start_time": 1.0, "last_request_timestamp": 3.0, "total_content_length": 900},
        {"method": "ICD", "name": "inter_chunk", "num_requests": 2, "num_failures": 0, "total_response_time": 4.0,
         "max_response_time": 3, "response_times": {"2": 1, "3": 1}, "start_time": 1.0,
         "last_request_timestamp": 3.0, "total_content_length": 17}]
    s = summarize_locust(entries)
    assert s["requests"] == 2 and len(s["endpoints"]) == 1
    assert s["inter_chunk"]["requests"] == 2 and s["inter_chunk"]["chunks"] == 17
    assert (s["inter_chunk"]["p50_ms"], s["inter_chunk"]["p99_ms"]) == (2.0, 3.0)


# --- the report -------------------------------------------------------------------------------


def _doc(target, profile, *, config="n/a", variant="", users=10, phase="streams", ttft=(300, 350), icd=(50, 60),
         rss=(100.0, 100.0), failures=0, requests=100, chunks=1000, cpu=1.0, rtt=0.0, p=(1.0, 2.0), rps=100.0,
         queries=0.0, calls=None, saturated=False):
    return {
        "run_id": "R", "target": target, "profile": profile, "config": config, "variant": variant,
        "requests": requests, "commit": "c", "machine": {"cpu_model": "CPU", "cpu_count": 2},
        "settings": {"users": users, "duration_s": 10, "db_rtt_ms": rtt, "quick": False,
                     "pinning": {"server": "0", "load": "1", "mock": "1"},
                     "production": {"phase": phase, "conditions": f"{phase} conditions"}},
        "locust": {"requests": requests, "failures": failures, "p50_ms": p[0], "p99_ms": p[1], "rps": rps,
                   "ttft": {"p50_ms": ttft[0], "p99_ms": ttft[1]},
                   "inter_chunk": {"p50_ms": icd[0], "p99_ms": icd[1], "chunks": chunks}},
        "server": {"cpu_seconds": cpu, "cpu_ms_per_request": 1000 * cpu / requests, "rss_start_mb": rss[0],
                   "peak_rss_mb": rss[1]},
        "per_request": {"db_queries": queries, "db_pool_waits": 0.0, "db_pool_wait_ms": 0.0},
        "mock_calls": calls or {}, "noise": {"window_s": 10.0},
        "load_generator": {"cpu_utilisation": 0.5, "saturated": saturated, "processes": 2},
        "network": {"db": {"round_trip": {"p50_ms": rtt}}},
    }


def _streams_docs(added_p99=(5, 20, 30), rss_mb=(102.0, 110.0, 130.0)):
    docs = []
    for n, extra, peak in zip((200, 1000, 2000), added_p99, rss_mb):
        docs.append(_doc("mock-direct", "long-streams", variant=f"c{n}", users=n))
        docs.append(_doc("forge-ref", "long-streams", config="all", variant=f"c{n}", users=n, ttft=(302, 350 + extra),
                         icd=(51, 61), rss=(100.0, peak)))
    return docs


def _db_docs(none_extra=6.0, all_extra=0.2):
    docs = [_doc("mock-direct", "latency-c1", phase="db", p=(0.5, 0.9)),
            _doc("mock-direct", "agent-loop", phase="db", p=(3.0, 9.0))]
    for rtt in (0.0, 2.0):
        docs.append(_doc("forge-ref", "latency-c1", config="none", phase="db", rtt=rtt, queries=2.0,
                         p=(1.5 + (none_extra if rtt else 0), 3.0)))
        docs.append(_doc("forge-ref", "latency-c1", config="all", phase="db", rtt=rtt,
                         p=(1.2 + (all_extra if rtt else 0), 2.0)))
        docs.append(_doc("forge-ref", "agent-loop", config="none", phase="db", rtt=rtt, queries=2.0, rps=200.0))
        docs.append(_doc("forge-ref", "agent-loop", config="all", phase="db", rtt=rtt, rps=400.0))
    return docs


def _chat_docs(off_429=7, on_429=0):
    calls = lambda n: {"openai.models": 10 + n, "openai.models.429": n}  # noqa: E731
    return [_doc("mock-direct", "realistic-chat", calls=calls(3)),
            _doc("forge-ref", "realistic-chat", config="all", calls=calls(on_429)),
            _doc("forge-ref", "realistic-chat", config=MODELS_OFF, calls=calls(off_429))]


def test_streams_table_is_added_over_mock_direct_at_each_level():
    rows = pr.streams(_streams_docs())
    assert [(r["target"], r["streams"]) for r in rows] == [("forge-ref", 200), ("forge-ref", 1000), ("forge-ref", 2000)]
    top = rows[-1]
    assert (top["added_ttft_p50_ms"], top["added_ttft_p99_ms"]) == (2, 30)
    assert (top["added_icd_p50_ms"], top["added_icd_p99_ms"]) == (1, 1)
    assert top["rss_kb_per_stream"] == round(30 * 1024 / 2000, 1)
    assert top["cpu_ms_per_chunk"] == round(1000 * 1.0 / (10 * 100), 4)  # 1,000 chunks over 100 streams
    assert pr.held(rows) == 2000 and pr.held(rows, limit=25) == 1000 and pr.held(rows, limit=1) is None


def test_targets_met_missed_not_measured_and_not_settled():
    docs = _streams_docs() + _db_docs() + _chat_docs()
    verdicts = {row[0]: row[3] for row in pr.targets(docs)}
    assert len(verdicts) == 7
    assert verdicts["`all`: 0 DB round trips per request"] == "met"
    assert verdicts["`all`: p50 within 0.5 ms of the 0 ms case"] == "met"
    assert verdicts["`none`: ≥ 2 round trips per request, visible as +4 ms or more"] == "met"
    assert verdicts["2,000 streams: added TTFT p99 ≤ 25 ms"] == "missed"  # 30 ms
    assert verdicts["2,000 streams: ≤ 20 KB RSS per open stream"] == "met"  # 15.4 KB
    assert verdicts["2,000 streams: 0 failed requests"] == "met"
    assert verdicts["`models` keeps model-list 429s at 0 where it off hits the limit"] == "met"

    worse = {row[0]: row[3] for row in pr.targets(_db_docs(none_extra=3.0, all_extra=0.8) + _chat_docs(on_429=2))}
    assert worse["`all`: p50 within 0.5 ms of the 0 ms case"] == "missed"
    assert worse["`none`: ≥ 2 round trips per request, visible as +4 ms or more"] == "missed"
    assert worse["`models` keeps model-list 429s at 0 where it off hits the limit"] == "missed"
    assert sum(v == pr.NOT_MEASURED for v in worse.values()) == 3  # no streams in these results

    assert {row[3] for row in pr.targets([])} == {pr.NOT_MEASURED}
    unreached = {row[0]: row[3] for row in pr.targets(_chat_docs(off_429=0))}
    assert unreached["`models` keeps model-list 429s at 0 where it off hits the limit"].startswith(pr.NOT_SETTLED)
    saturated = _streams_docs()
    saturated[-1]["load_generator"]["saturated"] = True
    assert [row[3] for row in pr.targets(saturated)][3].startswith(pr.NOT_SETTLED)


def test_chat_rows_count_the_429s_per_hour():
    rows = {r["config"]: r for r in pr.chat(_chat_docs())}
    assert (rows["all"]["models_429"], rows[MODELS_OFF]["models_429"]) == (0, 7)
    assert rows[MODELS_OFF]["models_429_per_hour"] == 7 * 360  # over a 10 s window
    assert rows["n/a"]["added_ttft_p50_ms"] is None and rows["all"]["added_ttft_p50_ms"] == 0


def test_the_section_states_conditions_and_only_the_latest_run():
    old = [dict(copy.deepcopy(d), run_id="A") for d in _db_docs()]
    lines = pr.section(old + _streams_docs() + _db_docs() + _chat_docs())
    text = "\n".join(lines)
    assert lines[0] == "## Under production-like conditions"
    assert "- `streams`: streams conditions; gateway on CPU 0" in text and "- `db`: db conditions;" in text
    assert "From run `R`" in text and text.count("| forge-ref | 2,000 |") == 1
    assert "### Latency and throughput against the round trip to PostgreSQL" in text
    empty = "\n".join(pr.section([]))
    assert "Not measured in these results: run `python -m benchmarks production`" in empty


def test_the_committed_sample_reads_back():
    docs = pr.latest(json.loads(p.read_text()) | {"_file": p.name} for p in sorted(SAMPLE.glob("*.json")))
    assert len(docs) == len(list(SAMPLE.glob("*.json"))) == 15
    assert {d["settings"]["production"]["phase"] for d in docs} == {"streams", "db"}
    assert len(pr.streams(docs)) == 1 and len(pr.chat(docs)) == 3 and len(pr.db(docs)) == 8
    assert len(pr.targets(docs)) == 7


# --- a tiny real run ----------------------------------------------------------------------------


def test_a_quick_streams_phase_end_to_end(tmp_path):
    files = run_production(quick=True, phases=["streams"], out=tmp_path, verbose=False)
    docs = [json.loads(f.read_text()) for f in files]
    assert [(d["profile"], d["target"], d["config"]) for d in docs] == [
        ("long-streams", "mock-direct", "n/a"), ("long-streams", "forge-ref", "all"),
        ("realistic-chat", "mock-direct", "n/a"), ("realistic-chat", "forge-ref", "all"),
        ("realistic-chat", "forge-ref", MODELS_OFF)]
    for d in docs:
        assert d["settings"]["production"]["phase"] == "streams"
        mock = d["settings"]["mock"]  # the mock's own /_mock/config
        assert mock["timing_model"] is True and mock["tokens_per_chunk"] == QUICK.mock["tokens_per_chunk"]
        assert mock["models_rate_limit"]["calls"] == 1
        assert d["load_generator"]["processes"] == 2 and d["load_generator"]["cpu_seconds"] > 0
        # distributed, nothing fails (a previous job's Locust worker left running once sent its old keys: 401s)
        # except what the mock's model-list limit refuses where the gateway's models layer is not in front of it
        assert d["locust"]["requests"] > 0
        refused = sum(e["occurrences"] for e in d["locust"]["errors"]
                      if e["name"] == "/v1/models" and e["error"] == "LocustBadStatusCode(code=429)")
        assert d["locust"]["failures"] == refused
        if d["profile"] == "long-streams" or d["config"] == "all":
            assert refused == 0
    streams = docs[1]
    assert streams["settings"]["users"] == QUICK.stream_levels[0] and streams["locust"]["inter_chunk"]["chunks"] > 0
    assert streams["locust"]["ttft"]["requests"] > 0
    assert len({d["run_id"] for d in docs}) == 1
    assert pr.streams(docs)[0]["streams"] == QUICK.stream_levels[0]
