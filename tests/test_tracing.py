import asyncio
import os
import re

from forge_ref import tracing
from forge_ref.tracing import COUNTERS, NO_TRACE, SharedCounters, Tracer


def test_cost_points_and_snapshot_shape():
    t = Tracer()
    t.request()
    t.db_statement("SELECT 1")
    t.db_statement("  select 2")
    t.db_statement("INSERT INTO x VALUES (1)")
    t.db_statement("SELECT 3", background=True)
    t.decryption()
    t.upstream_call("proxy")
    t.upstream_call("models")
    t.count("services_built", 2)
    snap = t.snapshot({"user": True})
    waits = {"upstream_pool_wait_ms": 0.0, "db_pool_wait_ms": 0.0, "embeddings_batch_wait_ms": 0.0}
    assert snap["counters"] == dict.fromkeys(COUNTERS, 0) | waits | {
        "requests": 1, "db_queries": 2, "db_writes": 1, "db_background_queries": 1, "decryptions": 1,
        "upstream_requests": 1, "upstream_model_list_requests": 1, "services_built": 2}
    assert set(snap["caches"]["user"]) >= {"hits", "misses", "evictions", "size", "hit_ratio"}
    assert snap["caches_enabled"] == {"user": True} and snap["processes"] == 1


def test_pool_waits_are_counted_in_microseconds_shown_in_ms_and_are_phases():
    t = Tracer()
    trace = tracing.Trace()
    t.upstream_pool_wait(0.0015, trace)  # the upstream clients pass the request's trace
    t.upstream_pool_wait(0.002, None)  # a request nobody traces
    token = tracing._current.set(trace)
    try:
        t.db_pool_wait(0.0004)  # statements run in their request's context
    finally:
        tracing._current.reset(token)
    assert (t.total("upstream_pool_waits"), t.total("upstream_pool_wait_us")) == (2, 3500)
    assert (t.total("db_pool_waits"), t.total("db_pool_wait_us")) == (1, 400)
    counters = t.snapshot({})["counters"]
    assert (counters["upstream_pool_wait_ms"], counters["db_pool_wait_ms"]) == (3.5, 0.4)
    assert list(trace.phases) == ["pool", "db_pool"]
    assert trace.costs == {"upstream_pool_waits": 1, "db_pool_waits": 1}
    t.reset()
    assert t.snapshot({})["counters"]["upstream_pool_wait_ms"] == 0.0


def test_embeddings_batches_count_merged_calls_and_every_wait_but_charge_no_trace():
    t = Tracer()
    trace = tracing.Trace()
    token = tracing._current.set(trace)
    try:
        t.embeddings_batch([0.004, 0.0025, 0.001])  # three requests, one call
        t.embeddings_batch([0.005])  # a batch of one: it waited, but shared nothing
    finally:
        tracing._current.reset(token)
    counters = t.snapshot({})["counters"]
    assert (counters["embeddings_batches"], counters["embeddings_batched_requests"]) == (1, 3)
    assert (counters["embeddings_batch_waits"], counters["embeddings_batch_wait_ms"]) == (4, 12.5)
    assert trace.costs == {} and trace.phases == {}


def test_layer_meter_counts_hits_misses_and_ratio():
    t = Tracer()
    layer = t.layer("user")
    assert t.layer("user") is layer  # one meter per layer
    layer.hit(), layer.hit(), layer.hit(), layer.miss()
    layer.evicted(), layer.expired(2), layer.size(7), layer.coalesced()
    layer.refresh_started(), layer.refresh_started(), layer.refresh_started()
    layer.refresh_stored(), layer.refresh_discarded(), layer.refresh_failed()
    user = t.snapshot({})["caches"]["user"]
    assert user == {"hits": 3, "misses": 1, "evictions": 1, "expirations": 2, "size": 7, "hit_ratio": 0.75,
                    "refreshes": 3, "refreshes_stored": 1, "refreshes_discarded": 1, "refresh_failures": 1}
    assert t.total("coalesced_waits") == 1


def test_rows_are_shared_across_fork_and_summed():
    c = SharedCounters(rows=2)
    c.bind(0)
    Tracer(c).request()
    pid = os.fork()
    if pid == 0:  # child: its own row, written into the shared mapping
        c.bind(1)
        child = Tracer(c)
        for _ in range(7):
            child.request()
        os._exit(0)
    os.waitpid(pid, 0)
    assert Tracer(c).total("requests") == 8
    assert Tracer(c).snapshot({})["processes"] == 2


def test_reset_keeps_sizes():
    t = Tracer()
    t.layer("user").size(4)
    t.layer("user").hit()
    t.reset()
    user = t.snapshot({})["caches"]["user"]
    assert user["size"] == 4 and user["hits"] == 0


def test_the_current_trace_collects_the_costs_of_its_request_only():
    t = Tracer()

    async def request(n_queries: int, hit: bool) -> tracing.Trace:
        trace = tracing.begin()
        await asyncio.sleep(0)  # interleave with the other request
        for _ in range(n_queries):
            t.db_statement("SELECT 1")
        (t.layer("user").hit if hit else t.layer("user").miss)()
        t.decryption()
        return trace

    async def main():
        return await asyncio.gather(asyncio.ensure_future(request(1, True)), asyncio.ensure_future(request(2, False)))

    a, b = asyncio.run(main())
    assert a.costs == {"db_queries": 1, "decryptions": 1} and a.layers == {"user": "hit"}
    assert b.costs == {"db_queries": 2, "decryptions": 1} and b.layers == {"user": "miss"}
    assert tracing.current() is None  # nothing leaked into this (the test's) context
    assert t.total("db_queries") == 3


def test_background_work_is_no_requests_cost():
    """A task a request starts (a cache refresh) does not bill that request: its reads are
    ``db_background_queries``, and the request's trace sees none of its costs."""
    t = Tracer()

    async def refresh():
        t.db_statement("SELECT 1")
        t.layer("user").hit()
        t.count("services_built")
        return tracing.current()

    async def request():
        trace = tracing.begin()
        seen_by_refresh = await tracing.background_task(refresh())
        t.db_statement("SELECT 2")
        return trace, seen_by_refresh

    trace, seen_by_refresh = asyncio.run(request())
    assert seen_by_refresh is None
    assert trace.costs == {"db_queries": 1} and trace.layers == {}
    totals = t.totals()
    assert (totals["db_queries"], totals["db_background_queries"], totals["services_built"]) == (1, 1, 1)


def test_a_layer_looked_up_twice_hit_only_if_both_hit():
    trace = tracing.Trace()
    trace.layer("models", True)
    trace.layer("models", False)
    trace.layer("models", True)
    assert trace.layers["models"] == "miss"


def test_server_timing_names_layers_and_phases_and_sums_to_no_more_than_total():
    trace = tracing.Trace()
    trace.note(user=12345, provider="openai")
    for phase in ("user", "service", "key", "translate", "upstream"):
        trace.lap(phase)
    trace.layer("user", True), trace.layer("service", False), trace.layer("key", False)
    trace.layer("adapter", True), trace.layer("models_failures", True)
    trace.sent_first_byte()
    header = trace.server_timing()
    entries = dict(re.match(r'(\w+)((?:;.*)?)$', part).groups() for part in header.split(", "))
    assert list(entries) == ["user", "service", "key", "translate", "upstream", "adapter", "gateway", "total"]
    assert entries["user"].startswith(';desc="hit";dur=') and entries["service"].startswith(';desc="miss";dur=')
    assert entries["adapter"] == ';desc="hit"'
    dur = {name: float(v.rsplit("dur=", 1)[1]) for name, v in entries.items() if "dur=" in v}
    phases = sum(dur[p] for p in ("user", "service", "key", "translate", "upstream"))
    assert phases <= dur["total"] + 0.003  # each value is rounded to 1 us
    assert abs(dur["gateway"] + dur["upstream"] - dur["total"]) <= 0.002
    assert "12345" not in header and "openai" not in header  # no user id, no request facts


def test_no_trace_does_nothing():
    assert not NO_TRACE
    NO_TRACE.lap("user"), NO_TRACE.layer("user", True), NO_TRACE.note(user=1), NO_TRACE.point("x")
    assert NO_TRACE.costs == {}
