"""The benchmark harness: seeding, a seconds-long real run, result files, and the report.

The smoke runs start the real mock and server as subprocesses (about 10 s for SQLite + memory, a
few more for one PostgreSQL + Redis job, which needs those servers: it skips without them unless
``FORGE_REQUIRE_SERVICES=1``); the report test uses the small committed sample under
``tests/data/sample_results/``, made by the real runner.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from benchmarks import analysis, runner
from benchmarks.plan import Job
from benchmarks.profiles import PROFILES
from benchmarks.report import BACKENDS_TITLE, render, report
from benchmarks.results import REQUIRED_FIELDS, config_label, load_raw, load_results, write_result
from benchmarks.seed import seed
from forge_ref.auth import hash_key

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).parent / "data" / "sample_results"


# --- seeding ----------------------------------------------------------------------------------


def test_seed_writes_users_keys_and_the_keys_file(tmp_path):
    doc = seed(tmp_path / "s.db", 400, "http://127.0.0.1:9/", tmp_path / "keys.json")
    assert json.loads((tmp_path / "keys.json").read_text()) == doc
    assert doc["mock_url"] == "http://127.0.0.1:9"
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 400
    counts = {len(t["providers"]) for t in doc["tenants"]}
    assert counts == {1, 2, 3}  # 1-3 provider keys per user
    assert all(t["providers"][0] == "openai" for t in doc["tenants"])
    rows = conn.execute("SELECT COUNT(*) FROM provider_keys").fetchone()[0]
    assert rows == sum(len(t["providers"]) for t in doc["tenants"])
    t = doc["tenants"][7]
    (uid,) = conn.execute("SELECT id FROM users WHERE key_hash = ?", (hash_key(t["key"]),)).fetchone()
    assert uid == t["id"]
    urls = dict(conn.execute("SELECT kind, base_url FROM provider_keys WHERE user_id = ?", (uid,)).fetchall())
    assert urls["openai"] == "http://127.0.0.1:9/openai/v1"


def test_seed_fixed_providers(tmp_path):
    doc = seed(tmp_path / "s.db", 5, "http://127.0.0.1:9", None, providers="openai,gemini")
    assert {tuple(t["providers"]) for t in doc["tenants"]} == {("openai", "gemini")}


# --- pieces -----------------------------------------------------------------------------------


def test_cli_leaves_stores_and_backends_unset_so_the_quick_shared_store_job_stays_optional(monkeypatch, tmp_path):
    from benchmarks.__main__ import main

    calls = []
    monkeypatch.setattr(runner, "run", lambda **kw: calls.append(kw) or [tmp_path / "r.json"])
    main(["run", "--quick"])
    main(["run", "--profiles", "steady", "--stores", "postgres", "--backends", "memory,redis", "--no-baselines"])
    assert [(c["stores"], c["backends"], c["quick"]) for c in calls] == [(None, None, True),
                                                                         ("postgres", "memory,redis", False)]
    assert calls[1]["profiles"] == ["steady"] and calls[1]["baselines"] is False


def test_cli_passes_round_trips_jitter_and_repeat_to_the_runner(monkeypatch, tmp_path):
    from benchmarks.__main__ import main

    calls = []
    monkeypatch.setattr(runner, "run", lambda **kw: calls.append(kw) or [tmp_path / "r.json"])
    main(["run", "--stores", "postgres", "--backends", "redis", "--db-rtt-ms", "0,0.5,2", "--redis-rtt-ms", "1",
          "--net-jitter-ms", "0.1", "--repeat", "3"])
    main(["run"])
    assert [(c["db_rtt_ms"], c["redis_rtt_ms"], c["net_jitter_ms"], c["repeat"]) for c in calls] == [
        ("0,0.5,2", "1", 0.1, 3), (None, None, 0.0, 1)]


def test_locustfile_has_exactly_one_shape_and_only_fast_http_users():
    code = (
        "import inspect, locustfile as m\n"
        "from locust import LoadTestShape, FastHttpUser, HttpUser, User\n"
        "shapes = [o for o in vars(m).values() if inspect.isclass(o) and issubclass(o, LoadTestShape) and o is not LoadTestShape]\n"
        "users = [o for o in vars(m).values() if inspect.isclass(o) and issubclass(o, User) and o not in (User, FastHttpUser, HttpUser)]\n"
        "assert len(shapes) == 1, shapes\n"
        "assert users and all(issubclass(u, FastHttpUser) for u in users), users\n"
        "assert set(m.CLASSES) == set(m.PROFILES)\n"
        "import benchmarks.profiles as bp\n"
        "assert m.PROFILES == {n: p for n, p in bp.PROFILES.items() if not p.probe}\n"
        "assert {n: [c.__name__ for c in cs] for n, cs in m.CLASSES.items()} == "
        "{n: list(p.user_classes) for n, p in m.PROFILES.items()}\n"
        "print('ok')\n"
    )
    # In a subprocess: importing Locust monkey-patches the standard library (gevent).
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


# --- a real run -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    files = runner.run(profiles=["steady"], configs=["all", "none"], duration=3, users=5, out=out,
                       baselines=False, verbose=False)
    return out, files


def test_smoke_run_writes_complete_immutable_result_files(smoke):
    out, files = smoke
    assert len(files) == 2 and all(p.parent == out for p in files)
    for path in files:
        doc = json.loads(path.read_text())
        missing = [f for f in REQUIRED_FIELDS if f not in doc]
        assert not missing, missing
        assert doc["target"] == "forge-ref" and doc["profile"] == "steady"
        assert path.name.startswith(doc["started_at"][:4]) and doc["commit"] in path.name
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "avg_ms", "failures", "endpoints"):
            assert key in doc["locust"]
        for key in ("cpu_seconds", "cpu_ms_per_request", "peak_rss_mb"):
            assert doc["server"][key] is not None
        for key in ("hostname", "cpu_count", "cpu_model", "python", "platform"):
            assert key in doc["machine"]
        for key in ("duration_s", "users", "processes", "upstream_client", "pinning"):
            assert key in doc["settings"]
        assert (doc["settings"]["store"], doc["settings"]["cache_backend"]) == ("sqlite", "memory")
        assert doc["variant"] == "" and "[" not in config_label(doc)
        hist = doc["locust"]["endpoints"][0]["response_times"]  # Locust's own buckets, for CDFs
        assert sum(hist.values()) == doc["locust"]["endpoints"][0]["requests"]
        assert doc["requests"] > 50 and doc["locust"]["failures"] == 0
        assert doc["counters"]["upstream_requests"] == doc["requests"]  # steady: every request is one chat
        assert doc["mock_calls"]["openai.chat"] == doc["requests"]
    # Never overwrite: the same name again gets a suffix.
    doc = json.loads(files[0].read_text())
    again = write_result(doc, out, Job("forge-ref", "steady", doc["config"]).label(),
                         datetime.strptime(doc["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                         .timestamp())
    assert again != files[0] and again.exists()
    again.unlink()


def test_smoke_run_counters_match_the_cost_model(smoke):
    out, _ = smoke
    docs = {d["config"]: d for d in load_results(out).attrs["raw"]}
    on, off = docs["all"], docs["none"]
    # Every layer on and warm: a proxied request costs no DB read and no decryption.
    assert on["counters"]["db_queries"] == 0 and on["per_request"]["db_queries"] == 0
    assert on["counters"]["decryptions"] == 0
    # Every layer off: 1 user query + 1 provider-keys query, and every key of the user decrypted
    # at build (steady tenants hold 3 keys).
    keys_per_user = len(PROFILES["steady"].providers.split(","))
    assert off["counters"]["db_queries"] == 2 * off["requests"]
    assert off["counters"]["decryptions"] == keys_per_user * off["requests"]
    assert off["caches_enabled"] == {k: False for k in off["caches_enabled"]}


# --- results and report -----------------------------------------------------------------------


def test_load_results_flattens_and_keeps_raw_dicts():
    df = load_results(SAMPLE)
    assert len(df) == len(list(SAMPLE.glob("*.json"))) >= 5
    for col in ("profile", "config", "target", "per_request.db_queries", "locust.rps", "server.peak_rss_mb",
                "caches.user.hit_ratio", "label", "file"):
        assert col in df.columns
    assert df.attrs["raw"][0]["_file"] == df["file"].iloc[0]
    assert list(df["file"]) == sorted(df["file"])


def test_report_is_byte_identical_when_regenerated(tmp_path):
    outs = []
    for name in ("a", "b"):
        md = report(SAMPLE, tmp_path / name / "RESULTS.md", tmp_path / name / "figures")
        outs.append((md.read_bytes(), {p.name: p.read_bytes() for p in sorted((tmp_path / name / "figures").glob("*.png"))}))
    report(SAMPLE, tmp_path / "a" / "RESULTS.md", tmp_path / "a" / "figures")  # in place, a second time
    assert (tmp_path / "a" / "RESULTS.md").read_bytes() == outs[0][0]
    assert outs[0] == outs[1]
    assert outs[0][1], "no figure written"
    text = outs[0][0].decode()
    for needle in ("Fewer DB queries per request", "Fewer decryptions", "Less memory", "Fewer provider API calls",
                   "Lower latency", "Higher throughput", "Pinning", "python -m benchmarks run"):
        assert needle in text
    assert "](figures/" in text


def test_smoke_run_on_postgres_and_redis(tmp_path, pg_url, redis_url):
    import psycopg
    import redis

    files = runner.run(profiles=["steady"], configs=["all"], stores="postgres", backends="redis", duration=2,
                       users=5, out=tmp_path, baselines=False, verbose=False, postgres_url=pg_url,
                       redis_url=redis_url)
    assert len(files) == 1 and "postgres+redis" in files[0].name
    (doc,) = load_raw(tmp_path)
    s = doc["settings"]
    assert (s["store"], s["cache_backend"], doc["variant"]) == ("postgres", "redis", "postgres+redis")
    assert config_label(doc) == "all [postgres+redis]"
    assert analysis.backend(doc) == ("postgres", "redis")
    assert doc["requests"] > 20 and doc["locust"]["failures"] == 0
    # warm, every layer on: no DB read and no decryption per request, on PostgreSQL as on SQLite
    assert doc["counters"]["db_queries"] == 0 and doc["per_request"]["db_queries"] == 0
    assert doc["counters"]["decryptions"] == 0
    assert analysis.latency_hist(doc)
    # the job's schema and Redis keys are gone
    schema = s["db"].rsplit(" ", 1)[1]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
    client = redis.Redis.from_url(redis_url)
    assert not list(client.scan_iter(match=s["redis_prefix"] + "*"))
    client.close()


def test_smoke_run_with_postgres_a_network_hop_away(tmp_path, pg_url):
    """`--db-rtt-ms 0,2`: the same job direct and through a 2 ms delay proxy, each recording what it asked,
    the round trip it measured and the proxy's CPU."""
    files = runner.run(profiles=["steady"], configs=["none"], stores="postgres", db_rtt_ms="0,2", duration=2, users=5,
                       out=tmp_path, baselines=False, verbose=False, postgres_url=pg_url)
    assert [f.name.split("_", 2)[2] for f in files] == ["steady_none_postgres.json", "steady_none_postgres+db-rtt2.json"]
    direct, far = (json.loads(f.read_text()) for f in files)
    for doc, rtt in ((direct, 0), (far, 2)):
        s, net = doc["settings"], doc["network"]
        assert (s["db_rtt_ms"], s["redis_rtt_ms"], s["net_jitter_ms"], s["repeat"], s["repeats"]) == (rtt, 0, 0, 1, 1)
        assert net["redis"] is None and net["db"]["rtt_ms"] == rtt and net["db"]["target"] == "127.0.0.1:5432"
        assert net["db"]["round_trip"]["samples"] == 200 and net["db"]["round_trip"]["probe"].startswith("SELECT 1")
        assert doc["locust"]["failures"] == 0 and doc["counters"]["db_queries"] == 2 * doc["requests"]
    assert direct["network"]["db"]["proxy"] is None and direct["network"]["db"]["round_trip"]["p50_ms"] < 2
    proxy, measured = far["network"]["db"]["proxy"], far["network"]["db"]["round_trip"]
    assert 2 <= measured["min_ms"] <= measured["p50_ms"] <= measured["p99_ms"]
    assert proxy["delay_ms"] == 1 and proxy["cpu"] == (far["settings"]["pinning"] or {}).get("load")
    assert proxy["cpu_seconds"] > 0 and proxy["cpu_ms_per_request"] > 0
    # every layer off: two queries per request, one after the other, each 2 ms away
    assert far["locust"]["p50_ms"] >= 4 and far["locust"]["avg_ms"] >= 4
    line = next(x for x in render(load_raw(tmp_path), "f", []).splitlines() if x.startswith("- Network distance"))
    assert re.search(r"PostgreSQL direct: p50 [\d.]+ ms, p99 up to [\d.]+ ms; PostgreSQL 2 ms asked: p50 [\d.]+ ms", line)
    assert "Redis" not in line


def test_report_compares_stores_and_backends_only_when_measured():
    docs = sorted((d for d in load_raw(SAMPLE) if "locust" in d), key=lambda d: d["_file"])
    text = render(docs, "figures", [])
    assert BACKENDS_TITLE in text and "Not measured in these results" in text.split(BACKENDS_TITLE)[1][:200]
    assert "Multi-node (`forge-ref-nodes`): not measured" in text
    steady = [d for d in docs if d["target"] == "forge-ref" and d["profile"] == "steady"
              and d["config"] in ("none", "all")]
    pg = []
    for d in steady:
        d = json.loads(json.dumps(d))
        d["variant"], d["_file"] = "postgres", d["_file"].replace(".json", "_postgres.json")
        d["settings"].update(store="postgres", cache_backend="memory")
        d["per_request"]["cpu_ms"] = d["server"]["cpu_ms_per_request"] = 9.5
        pg.append(d)
    text = render(docs + pg, "figures", [])
    section = text.split(BACKENDS_TITLE)[1].split("\n## ")[0]
    assert "| postgres | memory | `all` |" in section and "| sqlite | memory | `none` |" in section
    assert "9.500" in section and "Not measured" not in section
    assert render(docs + pg, "figures", []) == text  # deterministic


def test_report_describes_the_latest_main_matrix_not_the_biggest_or_latest_run():
    from benchmarks.report import _primary_run

    every = sorted((d for d in load_raw(SAMPLE) if "locust" in d), key=lambda d: d["_file"])
    (sample_run,) = {d["run_id"] for d in every if d["profile"] == "steady"}  # the sample's --quick run
    docs = [d for d in every if d["run_id"] == sample_run]  # (its other run: --plan future-work)

    def copy_as(run: str, keep) -> list[dict]:
        out = []
        for d in docs:
            if keep(d):
                d = json.loads(json.dumps(d))
                d["run_id"], d["_file"] = run, d["_file"].replace(sample_run, run)
                out.append(d)
        return out

    # an older, bigger matrix: three copies of every forge-ref job
    older = [d for i in range(3) for d in copy_as("20200101T000000Z_0000000", lambda d: d["target"] == "forge-ref")]
    for i, d in enumerate(older):
        d["variant"] = f"v{i}" if d["profile"] != "steady" else d.get("variant", "")
    # a later follow-up run: steady on PostgreSQL only, not a main matrix
    later = copy_as("20991231T000000Z_9999999", lambda d: d["target"] == "forge-ref" and d["profile"] == "steady")
    for d in later:
        d["settings"].update(store="postgres", cache_backend="memory")
    assert _primary_run(older + docs + later) == sample_run
    assert _primary_run(later) == "20991231T000000Z_9999999"  # no main matrix at all: the biggest run
