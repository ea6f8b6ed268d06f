"""benchmarks.analysis: which results a notebook reads and why, which run a comparison uses, and the
tables the figures are drawn from. On copies of the committed sample, with jobs repeated or moved to
other runs where a test needs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import analysis as an

SAMPLE = Path(__file__).resolve().parent / "data" / "sample_results"


def _copy(tmp_path: Path, extra: dict[str, dict] | None = None) -> Path:
    for path in SAMPLE.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    for name, doc in (extra or {}).items():
        (tmp_path / name).write_text(json.dumps(doc))
    return tmp_path


def _doc(sample_config: str, **changes) -> dict:
    path = next(SAMPLE.glob(f"*_steady_{sample_config}.json"))
    return {**json.loads(path.read_text()), **changes}


def test_results_dir_and_reading_say_which_directory_and_why(tmp_path):
    env = {an.ENV_VAR: str(SAMPLE)}
    assert an.results_dir(environ=env) == SAMPLE
    assert an.results_dir("tests/data/sample_results", environ={}) == SAMPLE  # from the repository root
    assert an.reading(SAMPLE, env).startswith(
        "**Reading `tests/data/sample_results/`**: `$FORGE_RESULTS_DIR` names it. To read another directory, "
        "start JupyterLab with `FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`")
    assert f"**Reading `{tmp_path}`**: the first cell names it." in an.reading(tmp_path, env)
    with pytest.raises(FileNotFoundError, match="no-such-dir: no such directory"):
        an.results_dir(environ={an.ENV_VAR: "no-such-dir"})


def test_select_takes_the_fullest_run_and_the_last_file_of_a_repeated_job(tmp_path):
    later = "20991231T000000Z_later"
    directory = _copy(tmp_path, {
        # a later, smaller follow-up run: `latest` picks it, `fullest` keeps the sample's three configurations
        "20991231T000001Z_steady_all.json": _doc("all", run_id=later),
        # the same job twice in the sample's run: the later file wins
        "20991231T000002Z_steady_none.json": _doc("none", locust={**_doc("none")["locust"], "rps": 1.0}),
    })
    df = an.load(directory)
    fullest = an.select(df, profile="steady", target="forge-ref")
    assert list(fullest["label"]) == ["none", "all", "user,service,keys"]
    assert fullest.set_index("label").loc["none", "locust.rps"] == 1.0
    latest = an.select(df, profile="steady", target="forge-ref", run="latest")
    assert list(latest["run_id"]) == [later]
    assert len(an.select(df, profile="steady", target="forge-ref", run=None)) == 4


def test_layer_pairs_isolate_each_layer_both_ways(tmp_path):
    directory = _copy(tmp_path, {
        "20991231T000001Z_steady_user.json": _doc("none", config="user"),
        "20991231T000002Z_steady_all_but_keys.json": _doc("all", config="user,service,models,adapters"),
    })
    effects = an.on_off(an.select(an.load(directory), profile="steady", target="forge-ref"))
    pairs = an.layer_pairs(effects)
    assert list(pairs.index) == ["user", "keys"]
    assert list(pairs["Δ db_queries"].columns) == ["added to none", "added last, to all the others"]
    assert pairs.loc["user", ("Δ db_queries", "added to none")] == 0.0  # a copy of `none`: nothing changes
    assert pairs["Δ db_queries"].loc["user"].isna().tolist() == [False, True]
    assert an.layer_pairs(effects[effects["n_added"] > 1]).empty


def test_round_trips_line_up_each_configuration_along_the_db_round_trip(tmp_path):
    def rtt_doc(config: str, rtt: float, p50: float, repeat: int = 1) -> dict:
        doc = _doc(config, variant="postgres" + (f"+db-rtt={rtt:g}" if rtt else ""))
        doc["settings"] = {**doc["settings"], "store": "postgres", "db_rtt_ms": rtt, "repeat": repeat, "repeats": 2}
        doc["locust"] = {**doc["locust"], "p50_ms": p50}
        return doc

    docs = {f"20991231T00000{i}Z_{c}_{r:g}_{k}.json": rtt_doc(c, r, p50, k)
            for i, (c, r, p50, k) in enumerate([("none", 0, 10.0, 1), ("none", 2, 14.0, 1), ("all", 0, 6.0, 1),
                                                 ("all", 2, 6.0, 1), ("none", 2, 16.0, 2)])}
    for name, doc in docs.items():
        (tmp_path / name).write_text(json.dumps(doc))
    t = an.round_trips(an.load(tmp_path))
    assert list(t.index) == [("none [postgres]", 0.0), ("none [postgres]", 2.0), ("all [postgres]", 0.0),
                             ("all [postgres]", 2.0)]
    none_queries = _doc("none")["per_request"]["db_queries"]
    assert none_queries == 2.0  # steady, every layer off: the user, then the provider keys
    assert list(t["p50_ms"]) == [10.0, 15.0, 6.0, 6.0]  # two repetitions of none, 2 ms: their median
    assert list(t["added_p50_ms"]) == [0.0, 5.0, 0.0, 0.0]
    assert list(t["db_wait_ms"]) == [0.0, 4.0, 0.0, 0.0]
    assert an.round_trips(an.load(tmp_path / "missing")).empty
