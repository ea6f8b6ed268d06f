# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
import pandas as pd
from IPython.display import Markdown, display

from benchmarks import analysis as an
from benchmarks import future_report as fw
from benchmarks import plots
from benchmarks.repeats import medians

RESULTS = an.results_dir()
df = an.start(RESULTS)
files = [d for d, kind in zip(df["raw"], df["kind"]) if kind == "load"] if len(df) else []
m = medians(fw.measured(files))  # every figure below comes from here (RESULTS.md uses the same functions)


def missing(what: str) -> None:
    display(Markdown(f"**No {what} results in this directory**; run `{fw.COMMAND}`."))


# %% [markdown]
# # The design's future work, measured
#
# The performance design ends with four improvements; forge-ref builds them and these results measure
# them (`python -m benchmarks run --plan future-work`, about 3 minutes):
#
# - the **response cache** (the `responses` layer, opt-in with `Cache-Control: max-age`) and **in-flight
#   dedup** of identical requests, on `duplicates` traffic, with the layer on and off;
# - what a **cache hit** costs the gateway, at concurrency 1 (`cache-hit-c1`);
# - **refresh-ahead** on TTLs of a few seconds (`short-ttl`), off and on;
# - **embeddings batching** (`embeddings-burst`), off and with a 5 ms window.
#
# The targets, with their verdicts (a verdict the repetitions of `--repeat` disagree on is *not settled*):

# %%
display(pd.DataFrame(fw.targets(fw.measured(files)), columns=["target", "goal", "measured", "verdict"]))

# %% [markdown]
# ## Duplicates: upstream calls, hits and joins, memory
#
# Every chat of `duplicates` opts in. Part of them repeat a small set of prompts (hits once stored),
# part are bursts of identical copies of a fresh prompt sent at once (one goes upstream, the others join
# it in flight or hit its stored answer), the rest are unique (misses). If the layer spares every
# duplicate, upstream calls per request fall from 1 to 1 − the duplicate share (the dashed line). Memory:
# the bytes of answers held against the layer's bound (`FORGE_RESPONSES_MAX_BYTES`), which the unique
# answers fill, so the least recently used are evicted.

# %%
d = m["duplicates"]
if d is None:
    missing("duplicates")
else:
    calls = pd.Series({"responses on": d["upstream_per_request_on"], "responses off": d["upstream_per_request_off"]})
    served = pd.Series({"hits (stored)": d["hits"] - d["joins"], "joins (in flight)": d["joins"],
                        "misses": d["misses"]})
    memory = pd.Series({"bytes cached": d["bytes"] / 2**20, "bound": d["bound"] / 2**20})
    fig = plots.panels([plots.Panel(calls, "per client request", "Upstream calls", ref=1 - d["duplicate_share"]),
                        plots.Panel(served, "requests", "Opted-in requests, responses on"),
                        plots.Panel(memory, "MiB", "Response cache")],
                       f"duplicates: {d['duplicate_share']:.1%} duplicate traffic, {d['requests']:,} requests",
                       width=15)

# %% [markdown]
# ## What a hit costs
#
# At concurrency 1 (one connection, alternately the same warm chat without opting in and with
# `max-age`), each response's `Server-Timing` `gateway` entry is the gateway's own time: the total less
# the upstream call. The target: a hit adds at most 0.3 ms (p50) over a warm request's gateway time. As
# the client sees it, the hit also spares the upstream round trip.

# %%
h = m["hit"]
if h is None:
    missing("cache-hit-c1")
else:
    fig = plots.panels([plots.Panel(pd.Series({"hit": h["hit_gateway_ms"], "bypass (goes upstream)":
                                               h["bypass_gateway_ms"]}), "ms (p50)", "Gateway's own time"),
                        plots.Panel(pd.Series({"hit": h["hit_p50_ms"], "bypass (goes upstream)": h["bypass_p50_ms"]}),
                                    "ms (p50)", "Latency the client sees")],
                       f"cache-hit-c1: a hit adds {h['added_ms']:+.3f} ms of gateway time")

# %% [markdown]
# ## Short TTLs: refresh-ahead off and on
#
# `short-ttl` gives the user, service and models layers TTLs of 5, 6 and 8 s, so hot entries come to
# the end of their life several times in a run (on PostgreSQL a 2 ms round trip away in the named plan, so a
# reload costs what it costs in a deployment). Without refresh-ahead, the request that finds an entry
# expired waits for its reload (a *synchronous reload*, and the requests that arrive meanwhile wait for
# the same load). With refresh-ahead (0.8 of the TTL) the entry is reloaded in the background before it
# expires. *At turnover*: requests in flight during a 50 ms interval in which entries were reloaded or
# refreshed (from `/_stats` polled by Locust); *steady*: all the others.

# %%
off, on = m["short_ttl_off"], m["short_ttl_on"]
if on is None:
    missing("short-ttl")
else:
    rows = {"refresh-ahead off": off, "refresh-ahead on": on}
    reloads = pd.DataFrame({k: {layer: x[f"{layer}_misses"] for layer in fw.RELOAD_LAYERS} for k, x in rows.items()}).T
    p99 = pd.DataFrame({k: {"at turnover": x["near_p99_ms"], "steady": x["away_p99_ms"]} for k, x in rows.items()}).T
    refreshes = pd.Series({k: x["refreshes"] for k, x in rows.items()})
    fig = plots.panels([plots.Panel(reloads, "requests", "Synchronous reloads", stacked=True),
                        plots.Panel(refreshes, "reloads", "Background refreshes"),
                        plots.Panel(p99, "ms", "p99 latency")],
                       f"short-ttl on {m['short_ttl_store']}: entries expiring under load", width=15)

# %% [markdown]
# ## Embeddings batching: calls saved against latency
#
# `embeddings-burst` sends bursts of concurrent embeddings of one tenant. With a 5 ms window the gateway
# merges concurrent requests of one user and model into one upstream call and splits the answer back.
# Latency here is a closed loop's on a saturated server: the calls saved also save server CPU, which
# can pay for the window; against a provider with real latency the window adds up to 5 ms.

# %%
b = m["batching"]
if b is None:
    missing("embeddings-burst")
else:
    calls = pd.Series({"batching off": b["upstream_per_request_off"], "5 ms window": b["upstream_per_request_on"]})
    latency = pd.DataFrame({"batching off": {"p50": b["p50_off_ms"], "p99": b["p99_off_ms"]},
                            "5 ms window": {"p50": b["p50_on_ms"], "p99": b["p99_on_ms"]}}).T
    fig = plots.panels([plots.Panel(calls, "per client request", "Upstream calls"),
                        plots.Panel(latency, "ms", "Latency")],
                       f"embeddings-burst: {b['saved']:.1%} of upstream calls saved")
