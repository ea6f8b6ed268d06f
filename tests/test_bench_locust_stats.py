"""Locust's output as a result's ``locust`` summary."""

from __future__ import annotations

import csv

from benchmarks.locust_stats import percentile, summarize_locust


def test_percentiles_and_locust_summary_keep_custom_measurements_apart():
    entries = [
        {"method": "POST", "name": "/v1/chat/completions", "num_requests": 10, "num_failures": 1,
         "total_response_time": 55.0, "max_response_time": 10.0, "start_time": 100.0,
         "last_request_timestamp": 102.0, "response_times": {"1": 5, "5": 4, "10": 1}},
        {"method": "TTFT", "name": "ttft", "num_requests": 3, "num_failures": 0, "total_response_time": 6.0,
         "max_response_time": 3.0, "start_time": 100.0, "last_request_timestamp": 101.0,
         "response_times": {"2": 3}},
        {"method": "CHECK", "name": "stale_response", "num_requests": 2, "num_failures": 2,
         "total_response_time": 0, "max_response_time": 0, "start_time": 100.0,
         "last_request_timestamp": 101.0, "response_times": {"0": 2}},
    ]
    s = summarize_locust(entries)
    assert (s["requests"], s["failures"], s["rps"]) == (10, 1, 5.0)
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"]) == (1.0, 5.0, 10.0)
    assert s["ttft"]["requests"] == 3 and s["ttft"]["p50_ms"] == 2.0
    assert s["checks"] == {"stale_responses": 2, "fresh_responses": 0}
    assert [e["name"] for e in s["endpoints"]] == ["/v1/chat/completions"]


def _entry(method, name, n, times, *, fails=0, start=100.0, end=101.0):
    return {"method": method, "name": name, "num_requests": n, "num_failures": fails,
            "total_response_time": float(sum(float(k) * v for k, v in times.items())),
            "max_response_time": max(float(k) for k in times), "start_time": start,
            "last_request_timestamp": end, "response_times": times}


def test_percentile_is_the_smallest_bucket_covering_the_share():
    hist = {1.0: 50, 2.0: 40, 30.0: 9, 400.0: 1}
    assert [percentile(hist, p) for p in (0.5, 0.51, 0.9, 0.99, 1.0)] == [1.0, 2.0, 2.0, 30.0, 400.0]
    assert percentile({}, 0.5) is None


def test_totals_merge_endpoints_and_each_endpoint_keeps_its_own_histogram():
    entries = [_entry("GET", "/v1/models", 4, {"10": 1, "9": 3}, start=100.0, end=103.0),
               _entry("POST", "/v1/chat/completions", 6, {"2": 6}, fails=2, start=101.0, end=104.0)]
    s = summarize_locust(entries)
    assert (s["requests"], s["failures"], s["duration_s"], s["rps"]) == (10, 2, 4.0, 2.5)
    assert (s["p50_ms"], s["p90_ms"], s["max_ms"]) == (2.0, 9.0, 10.0)
    assert s["avg_ms"] == round((10 + 27 + 12) / 10, 3)
    assert [(e["name"], e["requests"], e["failures"]) for e in s["endpoints"]] == [
        ("/v1/chat/completions", 6, 2), ("/v1/models", 4, 0)]
    assert list(s["endpoints"][1]["response_times"]) == ["9", "10"]  # numeric order, not text order
    assert (s["ttft"], s["checks"], s["errors"]) == (None, None, [])


def test_no_requests_gives_empty_statistics_not_an_error():
    s = summarize_locust([])
    assert (s["requests"], s["rps"], s["avg_ms"], s["p50_ms"], s["max_ms"], s["endpoints"]) == (0, None, None, None,
                                                                                                   None, [])


def test_failures_csv_gives_the_ten_most_frequent_errors(tmp_path):
    path = tmp_path / "run_failures.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Method", "Name", "Error", "Occurrences"])
        for i in range(12):
            w.writerow(["POST", "/v1/chat/completions", f"HTTPError {i} " + "x" * 400, i + 1])
    errors = summarize_locust([], path)["errors"]
    assert [e["occurrences"] for e in errors] == list(range(12, 2, -1))
    assert errors[0]["error"].startswith("HTTPError 11 ") and len(errors[0]["error"]) == 300
    assert errors[0]["method"] == "POST" and errors[0]["name"] == "/v1/chat/completions"
    assert summarize_locust([], tmp_path / "missing.csv")["errors"] == []
