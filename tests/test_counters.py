import os

from forge_ref.counters import COUNTERS, SharedCounters, snapshot


def test_incr_and_snapshot_shape():
    c = SharedCounters()
    c.incr("requests")
    c.incr("db_queries", 3)
    snap = snapshot(c, {"user": True})
    assert snap["counters"]["requests"] == 1
    assert snap["counters"]["db_queries"] == 3
    assert set(snap["counters"]) == set(COUNTERS)
    assert set(snap["caches"]["user"]) >= {"hits", "misses", "evictions", "size", "hit_ratio"}


def test_rows_are_shared_across_fork_and_summed():
    c = SharedCounters(rows=2)
    c.bind(0)
    c.incr("requests", 5)
    pid = os.fork()
    if pid == 0:  # child: its own row, written into the shared mapping
        c.bind(1)
        c.incr("requests", 7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert c.total("requests") == 12


def test_reset_keeps_sizes():
    c = SharedCounters()
    c.set("cache.user.size", 4)
    c.incr("cache.user.hits")
    c.reset()
    t = c.totals()
    assert t["cache.user.size"] == 4 and t["cache.user.hits"] == 0
