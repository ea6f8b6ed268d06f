"""benchmarks.api: an experiment plans what the same command line plans and runs it through the command's
own function; bad options fail before anything starts; and one tiny real run (one job of two seconds on
SQLite) writes one complete result file, reports its progress in lines and reads back as a frame."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.__main__ import main
from benchmarks.api import Experiment, ExperimentError
from benchmarks.results import REQUIRED_FIELDS


@pytest.fixture
def executed(monkeypatch, tmp_path):
    """Replaces the runner's one path (``runner.execute``) and records what reaches it."""
    calls = []

    def execute(opts, jobs, progress=None, *, optional=False, verbose=True):
        calls.append({"opts": opts, "jobs": jobs, "optional": optional})
        return runner.Outcome([tmp_path / "r.json"], [], [], tmp_path / "raw", time.time())

    monkeypatch.setattr(runner, "execute", execute)
    return calls


def test_an_experiment_runs_what_its_command_runs_through_the_same_function(executed, tmp_path, capsys):
    exp = Experiment(profiles=["steady", "mixed"], configs=["none", "user,service"], stores="postgres",
                     backends=["memory", "redis"], db_rtt_ms=[0, 1.5], redis_rtt_ms=0.5, users=3, duration=2.5,
                     warmup=1, processes=2, repeat=2, pin=False, mock_latency_ms=1.0,
                     postgres_url="postgresql://u@db:5432/x", redis_url="redis://cache:6379/1", out=tmp_path / "exp")
    jobs = exp.jobs()
    # 2 profiles x 2 configurations x PostgreSQL at 2 round trips x (memory, Redis 0.5 ms away), twice over
    assert len(jobs) == 32 and len({j.file_label() for j in jobs}) == 32
    assert {(j.store, j.db_rtt_ms, j.backend, j.redis_rtt_ms) for j in jobs} == {
        ("postgres", 0.0, "memory", 0.0), ("postgres", 1.5, "memory", 0.0),
        ("postgres", 0.0, "redis", 0.5), ("postgres", 1.5, "redis", 0.5)}
    assert not any(j.target != "forge-ref" for j in jobs)  # no baselines unless asked

    run = exp.run(progress=None)
    argv = shlex.split(exp.command())
    assert argv[:4] == ["python", "-m", "benchmarks", "run"]
    main(argv[3:])
    api, cli = executed
    assert api["jobs"] == cli["jobs"] == jobs
    assert api["opts"] == cli["opts"] == exp.options()
    opts = api["opts"]
    assert (opts.out, opts.users, opts.duration, opts.warmup, opts.pin) == (tmp_path / "exp", 3, 2.5, 1, False)
    assert api["optional"] is cli["optional"] is False  # the stores asked for must answer
    assert run.files == [tmp_path / "r.json"] and run.failed == []
    assert capsys.readouterr().out.count("\n") > 0  # the command prints its table; the quiet API printed nothing
    exp.run(progress=None)
    assert capsys.readouterr().out == ""


def test_defaults_are_the_commands_and_the_output_a_new_directory_under_results_experiments(executed):
    exp = Experiment()
    opts = exp.options()
    assert (opts.users, opts.duration, opts.warmup, opts.processes) == (32, 15.0, 5.0, 1)
    assert exp.out.parent == Path(__file__).resolve().parents[1] / "results" / "experiments"
    assert [j.label() for j in exp.jobs()] == ["steady_none", "steady_all"]
    assert "--no-baselines" in exp.command() and "--db-rtt-ms" not in exp.command()


@pytest.mark.parametrize(("options", "message"), [
    ({"profiles": "nope"}, "unknown profile 'nope'"),
    ({"configs": "user,bogus"}, "configuration 'user,bogus'"),
    ({"stores": "mysql"}, "unknown store"),
    ({"db_rtt_ms": 2}, "delays PostgreSQL, which no job of this plan uses"),
    ({"stores": "postgres", "db_rtt_ms": -1}, "must be a round trip >= 0 ms"),
    ({"repeat": 0}, "at least once"),
])
def test_bad_options_raise_before_anything_starts(executed, options, message):
    exp = Experiment(**options)
    with pytest.raises(ExperimentError, match=re.escape(message)):
        exp.jobs()
    with pytest.raises(ExperimentError, match=re.escape(message)):
        exp.run(progress=None)
    assert executed == []


def test_a_store_that_does_not_answer_stops_the_run_before_it_starts(tmp_path):
    exp = Experiment(stores="postgres", postgres_url="postgresql://postgres@127.0.0.1:1/postgres", out=tmp_path)
    with pytest.raises(ExperimentError, match="PostgreSQL at postgresql://postgres@127.0.0.1:1/postgres does not"):
        exp.run(progress=None)
    assert list(tmp_path.iterdir()) == []  # no session: no raw directory, no result


def test_a_tiny_real_run_writes_one_result_file_and_says_how_it_goes(tmp_path):
    lines: list[str] = []
    run = Experiment(configs="all", users=3, duration=2, out=tmp_path).run(progress=lines.append, every=0.5)
    assert run.failed == [] and len(run.files) == 1 and run.files[0].parent == tmp_path
    assert [p.name for p in tmp_path.glob("*.json")] == [run.files[0].name]
    doc = json.loads(run.files[0].read_text())
    assert run.docs == [doc]
    assert not [f for f in REQUIRED_FIELDS if f not in doc]
    assert (doc["target"], doc["profile"], doc["config"], doc["variant"]) == ("forge-ref", "steady", "all", "")
    s = doc["settings"]
    assert (s["users"], s["duration_s"], s["store"], s["cache_backend"]) == (3, 2, "sqlite", "memory")
    assert s["db_rtt_ms"] == 0 and doc["network"] == {"db": None, "redis": None}
    assert doc["requests"] > 0 and doc["locust"]["failures"] == 0
    assert doc["counters"]["upstream_requests"] == doc["requests"] and doc["counters"]["db_queries"] == 0
    assert run.raw.parent == tmp_path / "raw" and run.raw.name == doc["run_id"]

    # started, then a line every half second of silence while it runs (a job lasts longer than its 2 s), then
    # the runner's note, then where the files are
    assert lines[0] == "[1/1] steady, all: started"
    running = lines[1:-2]
    assert running and all(re.fullmatch(r"\[1/1\] steady, all: running, \d+ s", x) for x in running)
    assert re.fullmatch(r"\[1/1\] steady, all: [\d.]+ rps, p50 [\d.]+ ms, [\d.]+s", lines[-2])
    assert re.fullmatch(rf"1 result file in {re.escape(str(tmp_path))}/ \(\d+ s\)", lines[-1])

    df = run.frame()
    assert len(df) == 1 and list(df["label"]) == ["all"] and df["requests"].iloc[0] == doc["requests"]
    assert "steady" in run.table() and "all" in run.table()
