import copy
import json
from pathlib import Path

from benchmarks.console import summary_table, verdicts

SAMPLE = Path(__file__).parent / "data" / "sample_results"


def results() -> list[dict]:
    docs = [json.loads(p.read_text()) for p in sorted(SAMPLE.glob("*.json"))]
    return [d for d in docs if d.get("target") not in ("micro", "soak") and "locust" in d]


def test_verdicts_say_what_the_pairs_of_jobs_mean():
    docs = results()
    on = next(d for d in docs if (d["profile"], d["config"], d["variant"]) == ("steady", "all", ""))
    off = copy.deepcopy(on)
    off["variant"], off["per_request"]["cpu_ms"] = "timing=off", on["per_request"]["cpu_ms"] / 1.05
    lines = verdicts(docs + [off])
    assert len(lines) == 4
    steady, models, trace, churn = lines
    assert steady.startswith("all vs none (steady): 0.00 DB queries and 0.00 decryptions per warm request")
    assert "(none: 2.00 and 3.00)" in steady and "x throughput" in steady
    assert models.startswith("models layer (models-heavy): 0.000 upstream model-list calls")
    assert "(+5.0%" in trace
    assert churn.startswith("consistency (churn): 0 stale responses in ")


def test_a_verdict_needs_both_of_its_jobs():
    only_all = [d for d in results() if d["config"] == "all"]
    assert [line.split(":")[0] for line in verdicts(only_all)] == ["consistency (churn)"]
    assert verdicts([]) == []


def test_summary_table_has_a_row_per_result():
    docs = results()
    assert len(summary_table(docs).splitlines()) == len(docs) + 2
