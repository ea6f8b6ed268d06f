"""Repetitions (``run --repeat N``): grouping result files, median and range, and "not settled" verdicts
(benchmarks/repeats.py, and their use in benchmarks/report.py and benchmarks/analysis.py)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd

from benchmarks import analysis, report
from benchmarks.repeats import NOT_SETTLED, Spread, each, group, medians, settle, spread
from benchmarks.results import load_raw

SAMPLE = Path(__file__).parent / "data" / "sample_results"


def rep(doc: dict, i: int, n: int, **changes) -> dict:
    """A copy of ``doc`` as repetition ``i`` of ``n``."""
    d = copy.deepcopy(doc)
    d["settings"].update(repeat=i, repeats=n)
    d["_file"] = d["_file"].replace(".json", f"_rep{i}of{n}.json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = d
        for key in parents:
            node = node[key]
        node[leaf] = value
    return d


def test_a_spread_is_the_median_and_range_of_values_that_differ():
    s = spread({1: 0.72, 2: 1.13, 3: 1.18})
    assert isinstance(s, Spread) and (s.median, s.lo, s.hi) == (1.13, 0.72, 1.18)
    assert f"{s:.2f}×" == "1.13 (0.72 to 1.18)×" and str(spread({1: 0, 2: 0, 3: 3})) == "0 (0 to 3)"
    assert f"{spread({1: 0.0271, 2: 0.0274}):.2f}" == "0.03"  # a range too small to show is not shown
    assert spread({1: 1520, 2: 1520.0}) == 1520  # agreeing repetitions are one plain number
    assert spread({1: None, 2: 4, 3: None}) == 4 and spread({1: None}) is None
    assert spread({1: "met", 2: "met"}) == "met" and isinstance(spread({1: "met", 2: "missed"}), Spread)


def test_arithmetic_pairs_values_of_the_same_repetition():
    a, b = Spread({1: 100, 2: 200}), Spread({1: 200, 2: 100})
    assert (a / b).values == {1: 0.5, 2: 2.0}  # not 1 and 1, which pairing by size would give
    assert (a - b).values == {1: -100, 2: 100} and (b - a).values == {1: 100, 2: -100}
    assert (a * 2).values == {1: 200, 2: 400} and (1000 / a).values == {1: 10.0, 2: 5.0}
    assert a + b == 300  # every repetition gives 300: no spread left
    assert sum([a, 1]).values == {1: 101, 2: 201}
    assert each(lambda x, y: x > y, a, 150).values == {1: False, 2: True}
    # a job that failed in one repetition: only the repetitions both have are compared
    assert (Spread({1: 10, 2: 20, 3: 30}) / Spread({2: 10, 3: 10})).values == {2: 2.0, 3: 3.0}
    assert (Spread({1: 10, 2: 20}) - Spread({3: 1, 4: 2})).values == {1: 9, 2: 8, 3: 19, 4: 18}


def test_a_verdict_is_settled_only_when_every_repetition_reaches_it():
    assert settle("met") == "met" and settle(Spread({1: "met", 2: "missed"})) == NOT_SETTLED
    # the three runs of the issue: CPU per request of forge-ref `all` over the bare proxy, target <= 1.15
    crossing = Spread({1: 0.72, 2: 1.13, 3: 1.18})
    assert report._meets(crossing, lambda x: x and x <= 1.15) == NOT_SETTLED
    assert report._meets(Spread({1: 0.72, 2: 1.13}), lambda x: x and x <= 1.15) == "met"
    assert report._meets(Spread({1: 1.16, 2: 1.18}), lambda x: x and x <= 1.15) == "missed"
    assert report._meets(None, lambda x: x and x <= 1.15) == "missed"
    assert report._verdict(Spread({1: 1.5, 2: 1.2})) == "confirmed"
    assert report._verdict(Spread({1: 1.5, 2: 1.01})) == NOT_SETTLED  # one repetition within noise
    assert report._verdict(None) == "not measured" and report._verdict(0.5) == "not confirmed (the opposite)"
    assert report._fewer(2, Spread({1: 0, 2: 0.5}), "q") == ("2 → 0.250 (0.000 to 0.500) q", "confirmed")
    assert report._fewer(2, Spread({1: 1, 2: 3}), "q")[1] == NOT_SETTLED
    assert report._fewer(Spread({1: 4, 2: 8}), 2, "q") == ("6 (4 to 8) → 2 q (3.0 (2.0 to 4.0)× fewer)", "confirmed")
    assert report._ratio(Spread({1: 1, 2: 2}), Spread({1: 0, 2: 4})) == 0.5  # no ratio where it divides by 0


def test_group_merges_the_repetitions_of_each_job_and_passes_single_results_through():
    none, all_ = (next(d for d in load_raw(SAMPLE) if d["profile"] == "steady" and d["config"] == c)
                  for c in ("none", "all"))
    docs = [rep(none, 1, 2, locust__rps=100.0), rep(all_, 1, 2, locust__rps=300.0),
            rep(none, 2, 2, locust__rps=120.0), rep(all_, 2, 2, locust__rps=300.0), all_]
    jobs = group(docs)
    assert [(d["config"], d.get("_files")) for d in jobs] == [
        ("none", [docs[0]["_file"], docs[2]["_file"]]), ("all", [docs[1]["_file"], docs[3]["_file"]]), ("all", None)]
    merged_none, merged_all, single = jobs
    assert single is all_  # untouched
    assert merged_none["locust"]["rps"].values == {1: 100.0, 2: 120.0} and merged_all["locust"]["rps"] == 300.0
    assert merged_none["counters"] == none["counters"]  # the same in both repetitions: plain numbers
    assert merged_none["_file"] == docs[0]["_file"] and merged_none["settings"]["repeats"] == 2
    endpoint = merged_none["locust"]["endpoints"][0]  # lists of the same length merge item by item
    assert endpoint["name"] == none["locust"]["endpoints"][0]["name"]
    assert medians(merged_none)["locust"]["rps"] == 110.0
    # files written without --repeat are never grouped, even with the same job key
    twice = [all_, {**copy.deepcopy(all_), "_file": "later.json"}]
    assert group(twice) == twice


def test_report_gives_median_and_range_and_leaves_a_crossing_target_not_settled():
    docs = sorted((d for d in load_raw(SAMPLE) if "locust" in d), key=lambda d: d["_file"])
    run = report._primary_run(docs)
    in_run = [d for d in docs if d["run_id"] == run]
    cpu = {"forge-ref": [0.36, 0.565, 0.59], "bare-proxy-curl": [0.5, 0.5, 0.5]}
    repeated = []
    for i in (1, 2, 3):
        for d in in_run:
            steady_all = d["profile"] == "steady" and d["config"] in ("all", "n/a") and d["target"] in cpu
            changes = {"server__cpu_ms_per_request": cpu[d["target"]][i - 1]} if steady_all else {}
            repeated.append(rep(d, i, 3, **changes))
    text = report.render(sorted(repeated, key=lambda d: d["_file"]), "figures", [])
    row = next(line for line in text.splitlines() if line.startswith("| CPU per request, forge-ref `all`"))
    assert row == ("| CPU per request, forge-ref `all` / bare proxy (curl) | ≤ 1.15× "
                   "| 0.565 (0.360 to 0.590) / 0.500 ms = 1.13 (0.72 to 1.18)× | not settled |")
    assert "- Repetitions: 3 of every job, interleaved" in text and "run --quick --repeat 3   # writes" in text
    assert f"({len(in_run) * 3} result files of {len(repeated)} in the directory)" in text
    for d in repeated:  # every file is still listed
        assert f"- `{d['_file']}`" in text
    # without repetitions nothing changes, whether the files predate --repeat or say "1 of 1"
    plain = report.render(docs, "figures", [])
    assert "Repetitions" not in plain and "not settled" not in plain and not re.search(r"\(\d[\d.,]* to \d", plain)
    assert report.render([rep(d, 1, 1) for d in docs], "figures", []) == plain.replace(".json`", "_rep1of1.json`")


def test_analysis_takes_the_repetitions_of_a_job_together():
    docs = [d for d in load_raw(SAMPLE) if d["profile"] == "steady" and d["config"] == "all"]
    frame = analysis.load(SAMPLE)
    steady = analysis.select(frame, profile="steady", target="forge-ref", config="all")
    assert list(steady["repeats"]) == [1] and analysis.repeated(steady)[("repetitions", "")].tolist() == [1]
    raw = [rep(docs[0], i, 3, locust__rps=float(100 * i)) for i in (1, 2, 3)]
    rows = pd.DataFrame({"job": [analysis.job_key(d) for d in raw], "label": "all",
                         "locust.rps": [d["locust"]["rps"] for d in raw]})
    out = analysis.repeated(rows, ["rps"])
    assert out[("repetitions", "")].tolist() == [3]
    assert (out[("rps", "median")].iloc[0], out[("rps", "min")].iloc[0], out[("rps", "max")].iloc[0]) == (200, 100, 300)


def test_every_section_of_the_report_renders_when_every_number_varies():
    def vary(x, i: int):
        if isinstance(x, dict):
            return {k: vary(v, i) for k, v in x.items()}
        if isinstance(x, list):
            return [vary(v, i) for v in x]
        if isinstance(x, float):
            return x * (1 + 0.07 * i)
        return x + i if isinstance(x, int) and not isinstance(x, bool) else x

    docs = [d for d in load_raw(SAMPLE) if "locust" in d]
    repeated = [rep(vary(d, i), i, 3) for i in (1, 2, 3) for d in docs]
    text = report.render(sorted(repeated, key=lambda d: d["_file"]), "figures", [])
    tables = text.split("## The design's claims")[1].split("## All results")[0]
    rows = [r.split(" | ") for r in tables.splitlines() if r.startswith("| ") and not r.startswith("| claim")]
    assert len(re.findall(r"\(\d[\d.,]* to \d", tables)) > 20
    assert {r[-1].rstrip(" |") for r in rows if len(r) == 4} - {"verdict"} <= {
        "confirmed", "not confirmed", "within noise (±5%)", "not confirmed (the opposite)", "met", "missed", "-",
        "not measured", NOT_SETTLED}
