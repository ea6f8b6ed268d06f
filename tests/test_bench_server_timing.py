from benchmarks.server_timing import Recorder, bucket, parse, summarize

HEADER = ('user;desc="hit";dur=0.004, service;desc="miss";dur=0.120, key;desc="miss";dur=0.009, '
          'translate;dur=0.013, upstream;dur=0.610, adapter;desc="hit", gateway;dur=0.090, total;dur=0.700')


def test_parse_w3c_entries():
    entries = parse(HEADER)
    assert entries[0] == ("user", "hit", 0.004)
    assert ("adapter", "hit", None) in entries
    assert entries[-1] == ("total", None, 0.7)
    assert parse('cache;desc="Cache Read";dur=23.2, db;dur=53') == [("cache", "Cache Read", 23.2), ("db", None, 53.0)]
    assert parse("x;dur=oops") == [("x", None, None)]  # a bad number is skipped, not fatal


def test_buckets_keep_two_significant_digits():
    assert [bucket(v) for v in (0, 0.00123, 4.0, 4.44, 13.6, 136.0, 1234.0)] == [0.0, 0.0012, 4.0, 4.4, 14.0, 140.0,
                                                                                 1200.0]


def test_recorder_round_trip_and_merge(tmp_path):
    a, b = Recorder(), Recorder()
    for _ in range(3):
        a.add("/v1/chat/completions", HEADER, 2.0)
    b.add("/v1/chat/completions", HEADER.replace('user;desc="hit"', 'user;desc="miss"'), 30.0)
    a.write(tmp_path / "w.timing.111.json")
    b.write(tmp_path / "w.timing.222.json")
    s = summarize(tmp_path / "w.timing.")
    assert s["phases_us"]["user"] == {"n": 4, "mean": 4.0, "p50": 4.0, "p90": 4.0, "p99": 4.0}
    assert s["phases_us"]["upstream"]["p50"] == 610.0 and s["phases_us"]["total"]["n"] == 4
    assert s["layers_ms"]["/v1/chat/completions user:hit"]["n"] == 3
    assert s["layers_ms"]["/v1/chat/completions user:miss"] == {"n": 1, "mean": 30.0, "p50": 30.0, "p90": 30.0,
                                                                 "p99": 30.0}
    assert "adapter" not in s["phases_us"]  # no dur: a layer state only


def test_nothing_recorded_is_none(tmp_path):
    assert summarize(tmp_path / "none.timing.") is None
