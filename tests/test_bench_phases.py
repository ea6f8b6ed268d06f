from benchmarks import phases


def doc(config="all", variant="", run="r1", cpu=0.4, repeat=None, timing=True):
    d = {"run_id": run, "target": "forge-ref", "profile": "steady", "config": config, "variant": variant,
         "per_request": {"cpu_ms": cpu}, "repeat": repeat}
    if timing:
        d["server_timing"] = {
            "phases_us": {"user": {"n": 10, "mean": 5.0, "p50": 4.0, "p90": 6.0, "p99": 9.0},
                          "upstream": {"n": 10, "mean": 300.0, "p50": 290.0, "p90": 400.0, "p99": 500.0},
                          "total": {"n": 10, "mean": 400.0, "p50": 390.0, "p90": 500.0, "p99": 700.0}},
            "layers_ms": {"/v1/chat/completions user:hit": {"n": 10, "mean": 2.0, "p50": 2.0, "p90": 3.0, "p99": 4.0},
                          "/v1/chat/completions (stream) user:hit": {"n": 3, "mean": 9.0, "p50": 9.0, "p90": 9.0,
                                                                      "p99": 9.0}}}
    return d


def test_phase_rows_keep_the_request_order_and_shares():
    rows = phases.phase_rows([doc()])
    assert [r["phase"] for r in rows] == ["user", "upstream", "total"]
    assert rows[0]["share_of_total"] == 0.0125 and rows[1]["p99_us"] == 500.0


def test_layer_rows_are_per_endpoint():
    rows = phases.layer_rows([doc()])
    assert rows == [{"profile": "steady", "label": "all", "layer": "user", "state": "hit", "n": 10, "p50_ms": 2.0,
                     "p99_ms": 4.0, "mean_ms": 2.0}]
    assert [r["n"] for r in phases.layer_rows([doc()], "/v1/chat/completions (stream)")] == [3]


def test_trace_cost_pairs_repetitions_within_a_run():
    docs = [doc(cpu=0.42, repeat=0), doc(variant="timing=off", cpu=0.40, repeat=0),
            doc(cpu=0.40, repeat=1), doc(variant="timing=off", cpu=0.40, repeat=1),
            doc(cpu=0.50, run="r2"), doc(config="none", cpu=0.9)]
    cost = phases.trace_cost(docs)
    assert cost == {"on_cpu_ms": 0.41, "off_cpu_ms": 0.4, "ratio": 1.025, "low": 1.0, "high": 1.05, "pairs": 2}
    assert phases.trace_cost([doc()]) is None


def test_a_budget_verdict_whose_range_crosses_is_not_settled():
    assert phases._budget(0.01, 0.04, 0.05) == "met"
    assert phases._budget(0.03, 0.07, 0.05) == "not settled"
    assert phases._budget(0.06, 0.07, 0.05) == "missed"


def test_section_needs_something_to_say():
    assert phases.section([doc(timing=False)], None, "r1") == []
    lines = phases.section([doc(), doc(config="none")], None, "r1")
    assert lines[0] == "## Where a request's time goes"
    assert any(line.startswith("| `user` | 4 | 6 | 9 | 1.2% |") for line in lines)


def test_repetitions_merged_by_the_report_are_read_repetition_by_repetition():
    # `run --repeat N`: the report groups a job's files into one document whose figures are Spreads
    from benchmarks.repeats import group

    files = []
    for i, (on, off) in enumerate(((0.42, 0.40), (0.40, 0.40), (0.44, 0.40)), start=1):
        for variant, cpu in (("", on), ("timing=off", off)):
            d = doc(variant=variant, cpu=cpu)
            d.update(settings={"repeat": i, "repeats": 3}, _file=f"f{variant}{i}.json")
            d["server_timing"]["phases_us"]["user"]["mean"] = 4.0 + i  # varies: a Spread after grouping
            files.append(d)
    merged = group(files)
    assert len(merged) == 2
    cost = phases.trace_cost(merged)
    assert cost == {"on_cpu_ms": 0.42, "off_cpu_ms": 0.4, "ratio": 1.05, "low": 1.0, "high": 1.1, "pairs": 3}
    lines = phases.section(merged, None, "r1")  # phases at their medians
    assert any(line.startswith("| `user` | 4 | 6 | 9 | 1.5% |") for line in lines)
