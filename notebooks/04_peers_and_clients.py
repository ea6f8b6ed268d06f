# %% [markdown]
# # forge-ref against its peers; upstream clients; latency at concurrency 1
#
# Baselines put forge-ref's numbers in context: `mock-direct` is Locust against the mock provider
# itself (no gateway: the ceiling), `bare-proxy-curl` / `bare-proxy-httpx` a minimal Tornado proxy
# that forwards with no authentication, routing or translation (the floor of any Tornado gateway), and
# LiteLLM's proxy a peer gateway, when a run included it. `forge-ref-httpx` is forge-ref with httpx
# instead of Tornado's curl client upstream.
#
# The results directory is `$FORGE_RESULTS_DIR` if set, else `results/` if it holds result files, else
# the committed sample `tests/data/sample_results/` (a `--quick` run: short, small, on a shared
# machine; read it for the shape of the effects, not their size). Files are read only through
# `benchmarks.results`; the machine, the CPU pinning of server and load generator, and the load
# below come from the files themselves.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from benchmarks import analysis as an

pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 30)
plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8})

# $FORGE_RESULTS_DIR, else ../results if it holds result files, else the committed sample
RESULTS = an.results_dir()
df = an.load(RESULTS)
display(Markdown(an.provenance(df, RESULTS)))

# %% [markdown]
# ## Throughput and CPU per request (`steady`)
#
# CPU per request is that of the process under test (for `mock-direct`, the mock itself).
# Throughput compares the servers only where *server_busy* is near 1.0 (see notebook 01).

# %%
steady = an.select(df, profile="steady")
peers = steady[((steady["target"] != "forge-ref") | steady["config"].isin(["all", "none"]))
               & (steady["variant"] == "")]
if an.have(peers[peers["target"] != "forge-ref"], "baselines"):
    targets = an.summary(peers, by="long_label")[["rps", "server_busy", "cpu_ms", "p50_ms", "p99_ms",
                                                "failures"]]
    display(targets)
    ratios = an.relative(targets, "bare-proxy-curl", ["rps", "cpu_ms", "p50_ms"])
    if ratios is not None:
        display(ratios)

# %%
if an.have(peers[peers["target"] != "forge-ref"], "baselines"):
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(targets) + 2.5), sharey=True)
    targets["rps"].plot.barh(ax=axes[0], title="throughput (requests/s)")
    targets["cpu_ms"].plot.barh(ax=axes[1], title="CPU per request of the process under test (ms)")
    targets[["p50_ms", "p99_ms"]].plot.barh(ax=axes[2], title="latency (ms)")
    axes[0].invert_yaxis()
    axes[0].set_ylabel("")
    fig.tight_layout()

# %% [markdown]
# ## LiteLLM
#
# The peer gateway against the same mock, from the latest run that holds both it and forge-ref.

# %%
pair = an.select(df, profile="steady", target=["forge-ref", "litellm"], need=["forge-ref", "litellm"])
pair = pair[pair["config"].isin(["all", "n/a"]) & (pair["variant"] == "")] if len(pair) else pair
if an.have(pair[pair["target"] == "litellm"] if len(pair) else pair, "litellm"):
    versus = an.summary(pair, by="long_label")[["rps", "server_busy", "cpu_ms", "p50_ms", "p99_ms", "failures"]]
    display(versus)
    ratios = an.relative(versus, "litellm", ["rps", "cpu_ms", "p50_ms"])
    if ratios is not None:
        display(ratios)

# %% [markdown]
# ## Upstream client: httpx against Tornado's curl client
#
# The same gateway (every layer on) and the same bare proxy with each client. The upstream client is
# most of a proxied request's CPU, which is why it is a setting (`--upstream-client`).

# %%
clients = steady[steady["target"].isin(["forge-ref", "forge-ref-httpx", "bare-proxy-curl", "bare-proxy-httpx"])
                 & steady["config"].isin(["all", "n/a"]) & (steady["variant"] == "")]
if an.have(clients[clients["target"] != "forge-ref"], "baselines"):
    by_client = an.summary(clients, by="long_label")[["cpu_ms", "rps", "server_busy", "p50_ms", "p99_ms"]]
    display(by_client)
    ax = by_client["cpu_ms"].plot.barh(figsize=(8, 0.5 * len(by_client) + 1.5),
                                       title="CPU per request by upstream client (ms)")
    ax.invert_yaxis()
    ax.set_ylabel("")

# %% [markdown]
# ## Latency at concurrency 1 (`latency-c1`)
#
# One connection, sequential requests, timed in process with microsecond precision (not Locust's
# millisecond buckets): what each hop adds when nothing queues. forge-ref minus the bare proxy is
# forge-ref's own work per request; the bare proxy minus mock-direct is the cost of any proxy hop.

# %%
c1 = an.select(df, profile="latency-c1")
if an.have(c1, "latency-c1"):
    c1_ladder = an.ladder(c1, by="long_label")
    added = an.relative(c1_ladder, "mock-direct", ["p50_ms", "p99_ms"], how="diff")
    display(c1_ladder if added is None else c1_ladder.join(added))
    ax = c1_ladder.T.plot(marker="o", figsize=(8, 4.5), ylabel="ms",
                          title="latency-c1: percentile ladder (ms, log scale)")
    an.plain_log(ax)
