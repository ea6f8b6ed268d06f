"""The plan: options, jobs and their labels, built without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.plan import BACKENDS, DEFAULT_POSTGRES_URL, STORES, Job, Options, plan, store_variant
from benchmarks.profiles import (
    FULL_CONFIGS,
    LOAD_PROFILES,
    MATRIX_PROFILES,
    PRODUCTION_PROFILES,
    PROFILE_CONFIGS,
    PROFILES,
    QUICK_PLAN,
)


def test_quick_plan_is_small_and_full_plan_covers_the_matrix():
    quick = plan(quick=True)
    forge = [j for j in quick if j.target == "forge-ref" and j.profile != "latency-c1"]
    assert {j.profile for j in forge} == set(QUICK_PLAN)
    assert len(quick) <= 20
    assert {j.target for j in quick} >= {"mock-direct", "bare-proxy-aiohttp", "forge-ref-curl"}
    full = plan(quick=False, baselines=False, profiles=["steady"])
    assert len(full) == 14  # none, 6 alone, 6 all-but-one, all
    assert len({j.label() for j in plan(quick=False, peer="litellm")}) == len(plan(quick=False, peer="litellm"))


def test_store_and_backend_dimensions_multiply_forge_jobs_with_distinct_labels():
    jobs = plan(profiles=["steady"], configs=["none", "all"], baselines=False, stores="sqlite,postgres",
                backends=["memory,redis"], multi_node=2)
    forge = [j for j in jobs if j.target == "forge-ref"]
    assert {(j.store, j.backend) for j in forge} == {(s, b) for s in STORES for b in BACKENDS}
    assert {j.variant for j in forge} == {"", "redis", "postgres", "postgres+redis"}
    nodes = [j for j in jobs if j.target == "forge-ref-nodes"]
    assert [(j.config, j.store, j.backend, j.nodes) for j in nodes] == [("none", "postgres", "redis", 2),
                                                                         ("all", "postgres", "redis", 2)]
    labels = [j.label() for j in jobs]
    assert len(set(labels)) == len(labels)
    assert "steady_all_postgres+redis" in labels and "steady_forge-ref-nodes_all_postgres+redis+nodes2" in labels
    with pytest.raises(SystemExit):
        plan(profiles=["steady"], stores="mysql")
    # the default is SQLite + memory only; --quick adds one PostgreSQL + Redis job
    assert {(j.store, j.backend) for j in plan(profiles=["steady"])} == {("sqlite", "memory")}
    assert [(j.profile, j.config) for j in plan(quick=True) if j.store == "postgres"] == [("steady", "all")]


def test_full_plan_is_every_load_profile_by_every_configuration_plus_variants_and_baselines():
    jobs = plan(baselines=False)
    assert {j.profile for j in jobs} == set(MATRIX_PROFILES) == set(LOAD_PROFILES) - set(PRODUCTION_PROFILES)
    # production's profiles run by name (their own command measures them against a slow mock)
    assert {j.profile for j in plan(profiles=["long-streams", "agent-loop"], configs=["all"], baselines=False)} == {
        "long-streams", "agent-loop"}
    for profile in MATRIX_PROFILES:  # the future-work profiles run with their own configurations only
        assert {j.config for j in jobs if j.profile == profile} == set(PROFILE_CONFIGS.get(profile, FULL_CONFIGS))
    # cold-burst: with a layer that loads on a miss, coalescing on and off; many-tenants: default and bounded
    assert {j.variant for j in jobs if j.profile == "cold-burst" and j.config == "all"} == {"coalesce=1", "coalesce=0"}
    assert [j.variant for j in jobs if j.profile == "cold-burst" and j.config == "keys"] == [""]
    assert [j.variant for j in jobs if j.profile == "many-tenants" and j.config == "user"] == ["", "bounded"]
    assert [j.variant for j in jobs if j.profile == "many-tenants" and j.config == "keys"] == [""]
    # embeddings-burst: batching off and on, once, with every layer on
    assert [j.variant for j in jobs if j.profile == "embeddings-burst" and j.config == "all"] == ["batch=off", "batch=5ms"]
    assert [j.variant for j in jobs if j.profile == "embeddings-burst" and j.config == "none"] == [""]
    baselines = [(j.target, j.profile, j.config) for j in plan(profiles=[], baselines=True)]
    # forge-ref (aiohttp, the default) against the bare proxy with the same client; the other clients
    assert baselines == [("mock-direct", "steady", "n/a"), ("bare-proxy-aiohttp", "steady", "n/a"),
                         ("forge-ref-curl", "steady", "all"), ("forge-ref-httpx", "steady", "all"),
                         ("bare-proxy-curl", "steady", "n/a"), ("bare-proxy-httpx", "steady", "n/a"),
                         ("mock-direct", "latency-c1", "n/a"), ("bare-proxy-aiohttp", "latency-c1", "n/a"),
                         ("forge-ref", "latency-c1", "all"), ("forge-ref", "latency-c1", "none")]
    quick = [(j.target, j.profile, j.config) for j in plan(profiles=[], quick=True)]
    assert quick == [b for b in baselines if b not in {("forge-ref-httpx", "steady", "all"),
                                                       ("bare-proxy-curl", "steady", "n/a"),
                                                       ("bare-proxy-httpx", "steady", "n/a"),
                                                       ("forge-ref", "latency-c1", "none")}]


def test_bounded_variant_is_sized_from_the_tenant_count_given():
    (_, bounded) = plan(profiles=["many-tenants"], configs=["all"], baselines=False, tenants_of=lambda p: 20_000)
    assert dict(bounded.server_env) == {"FORGE_USER_MAX": "200", "FORGE_SERVICE_MAX": "200",
                                        "FORGE_MODELS_MAX": "200"}
    (_, small) = plan(profiles=["many-tenants"], configs=["all"], baselines=False, tenants_of=lambda p: 100)
    assert dict(small.server_env)["FORGE_USER_MAX"] == "50"  # never below 50


def test_bad_choices_stop_before_anything_runs():
    for kwargs in ({"profiles": ["nope"]}, {"configs": ["user,bogus"]}, {"backends": "memcached"},
                   {"stores": []}, {"peer": "kong"}, {"multi_node": 1}):
        with pytest.raises(SystemExit) as err:
            plan(**kwargs)
        assert str(err.value)
    with pytest.raises(SystemExit, match="bogus"):
        plan(configs=["user,bogus"])


def test_multi_node_jobs_skip_the_probe_profile_and_default_to_steady_all():
    jobs = plan(profiles=["steady", "latency-c1"], configs=["all"], baselines=False, multi_node=3)
    assert [(j.target, j.profile, j.variant, j.nodes) for j in jobs if j.nodes > 1] == [
        ("forge-ref-nodes", "steady", "postgres+redis+nodes=3", 3)]
    (nodes,) = [j for j in plan(baselines=False, profiles=None, configs=None, multi_node=2) if j.nodes > 1]
    assert (nodes.profile, nodes.config) == ("steady", "all")


def test_job_labels_upstream_clients_and_store_variants():
    assert Job("forge-ref", "steady", "user,service").label() == "steady_user+service"
    assert Job("forge-ref-httpx", "steady", "all").label() == "steady_forge-ref-httpx_all"
    assert Job("mock-direct", "latency-c1").label() == "latency-c1_mock-direct"
    assert Job("forge-ref", "cold-burst", "all", "coalesce=1").label() == "cold-burst_all_coalesce1"
    assert [Job(t, "steady").upstream_client for t in ("forge-ref", "forge-ref-nodes", "forge-ref-curl",
                                                       "forge-ref-httpx", "bare-proxy-httpx", "mock-direct",
                                                       "litellm")] == ["aiohttp", "aiohttp", "curl", "httpx", "httpx",
                                                                       None, None]
    assert [Job(t, "steady").is_forge for t in ("forge-ref-nodes", "bare-proxy-curl")] == [True, False]
    assert store_variant("sqlite", "memory") == ""
    assert store_variant("postgres", "redis", "bounded", 2) == "postgres+redis+bounded+nodes=2"
    assert store_variant("sqlite", "redis", "coalesce=0") == "redis+coalesce=0"


def test_options_defaults_depend_on_quick_and_the_environment(monkeypatch):
    monkeypatch.delenv("FORGE_BENCH_POSTGRES_URL", raising=False)
    monkeypatch.setenv("FORGE_BENCH_REDIS_URL", "redis://127.0.0.1:6390/2")
    full, quick = Options(), Options(quick=True, out="x")
    assert (full.duration, full.warmup, full.users) == (15.0, 5.0, 32)
    assert (quick.duration, quick.warmup) == (8.0, 2.0)
    assert quick.out == Path("x").resolve()
    assert (full.postgres_url, full.redis_url) == (DEFAULT_POSTGRES_URL, "redis://127.0.0.1:6390/2")
    assert Options(redis_url="redis://h/0", warmup=0).redis_url == "redis://h/0"
    assert Options(warmup=0).warmup == 0  # 0 is a choice (no Locust warm-up), not "unset"


def test_tenant_counts_follow_the_profile_quick_and_the_many_tenants_option():
    assert Options().tenants_for("many-tenants") == PROFILES["many-tenants"].tenants
    assert Options(quick=True).tenants_for("many-tenants") == PROFILES["many-tenants"].quick_tenants
    assert Options(quick=True, tenants=777).tenants_for("many-tenants") == 777
    assert Options(tenants=777).tenants_for("steady") == PROFILES["steady"].tenants  # only many-tenants


def test_every_quick_plan_profile_is_a_locust_profile_with_user_classes():
    assert set(QUICK_PLAN) <= set(LOAD_PROFILES)
    assert all(p.user_classes and p.stages for p in LOAD_PROFILES.values())
    assert [name for name, p in PROFILES.items() if p.probe] == ["cache-hit-c1", "latency-c1"]


def test_round_trips_multiply_only_the_jobs_that_use_the_store_or_cache_they_delay():
    jobs = plan(profiles=["steady"], configs=["none"], baselines=False, stores="sqlite,postgres",
                backends="memory,redis", db_rtt_ms="0,0.5,2", redis_rtt_ms=["0", "1"])
    assert [(j.store, j.backend, j.db_rtt_ms, j.redis_rtt_ms, j.variant) for j in jobs] == [
        ("sqlite", "memory", 0, 0, ""),
        ("sqlite", "redis", 0, 0, "redis"), ("sqlite", "redis", 0, 1, "redis+redis-rtt=1"),
        ("postgres", "memory", 0, 0, "postgres"), ("postgres", "memory", 0.5, 0, "postgres+db-rtt=0.5"),
        ("postgres", "memory", 2, 0, "postgres+db-rtt=2"),
        ("postgres", "redis", 0, 0, "postgres+redis"), ("postgres", "redis", 0, 1, "postgres+redis+redis-rtt=1"),
        ("postgres", "redis", 0.5, 0, "postgres+redis+db-rtt=0.5"),
        ("postgres", "redis", 0.5, 1, "postgres+redis+db-rtt=0.5+redis-rtt=1"),
        ("postgres", "redis", 2, 0, "postgres+redis+db-rtt=2"),
        ("postgres", "redis", 2, 1, "postgres+redis+db-rtt=2+redis-rtt=1")]
    labels = [j.label() for j in jobs]
    assert len(set(labels)) == len(labels) and "steady_none_postgres+redis+db-rtt0.5+redis-rtt1" in labels
    # multi-node jobs and the profile's own variants get every round trip too, named before the variant
    nodes = plan(profiles=["steady"], configs=["all"], baselines=False, multi_node=2, db_rtt_ms=[2.0])
    assert [(j.target, j.db_rtt_ms, j.variant) for j in nodes if j.nodes > 1] == [
        ("forge-ref-nodes", 2.0, "postgres+redis+db-rtt=2+nodes=2")]
    # baselines other than forge-ref on SQLite never go through a proxy
    base = plan(profiles=[], stores="postgres", db_rtt_ms="0,2")
    assert [(j.target, j.profile, j.db_rtt_ms) for j in base if j.db_rtt_ms or j.store == "postgres"] == [
        ("forge-ref", "latency-c1", 0), ("forge-ref", "latency-c1", 2),
        ("forge-ref", "latency-c1", 0), ("forge-ref", "latency-c1", 2)]
    assert {j.db_rtt_ms for j in base if j.store == "sqlite"} == {0}
    # 0 alone is the default: nothing changes
    assert plan(profiles=["steady"], stores="postgres", db_rtt_ms="0") == plan(profiles=["steady"], stores="postgres")


def test_round_trips_that_no_job_would_use_or_that_are_not_numbers_stop_the_run():
    with pytest.raises(SystemExit, match="add --stores postgres"):
        plan(profiles=["steady"], db_rtt_ms="0,2")
    with pytest.raises(SystemExit, match="add --backends redis"):
        plan(profiles=["steady"], stores="postgres", redis_rtt_ms="1")
    for bad in ("fast", "-1", "nan", "inf", ","):
        with pytest.raises(SystemExit, match="--db-rtt-ms"):
            plan(profiles=["steady"], stores="postgres", db_rtt_ms=bad)
    # --quick's PostgreSQL + Redis job is one to delay
    quick = plan(quick=True, db_rtt_ms="2")
    assert [(j.profile, j.config, j.variant) for j in quick if j.db_rtt_ms] == [("steady", "all", "postgres+redis+db-rtt=2")]


def test_repeat_runs_the_whole_plan_again_interleaved_and_numbers_each_pass():
    once = plan(profiles=["steady"], configs=["none", "all"], baselines=False)
    thrice = plan(profiles=["steady"], configs=["none", "all"], baselines=False, repeat=3)
    assert [(j.label(), j.repeat, j.repeats) for j in thrice] == [
        (j.label(), r, 3) for r in (1, 2, 3) for j in once]  # A B C A B C A B C, not A A A B B B
    assert [j.file_label() for j in thrice[:3]] == ["steady_none_rep1of3", "steady_all_rep1of3",
                                                     "steady_none_rep2of3"]
    assert [(j.repeat, j.repeats, j.file_label()) for j in once] == [(1, 1, j.label()) for j in once]
    with pytest.raises(SystemExit, match="--repeat 0"):
        plan(repeat=0)
