# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
import matplotlib.pyplot as plt
from IPython.display import display

from benchmarks import analysis as an
from benchmarks import plots

RESULTS = an.results_dir()
df = an.start(RESULTS)

# %% [markdown]
# # forge-ref against its peers; upstream clients; latency at concurrency 1
#
# Baselines put forge-ref's numbers in context: `mock-direct` is Locust against the mock provider
# itself (no gateway: the ceiling), `bare-proxy-curl` / `bare-proxy-httpx` a minimal Tornado proxy
# that forwards with no authentication, routing or translation (the floor of any Tornado gateway), and
# LiteLLM's proxy a peer gateway, when a run included it. `forge-ref-httpx` is forge-ref with httpx
# instead of Tornado's curl client upstream.
#
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
    fig = plots.targets(targets, f"steady, run {peers['run_id'].iloc[0]}: forge-ref against its baselines")

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
    display(an.relative(versus, "litellm", ["rps", "cpu_ms", "p50_ms"]))
    fig = plots.targets(versus, f"steady, run {pair['run_id'].iloc[0]}: forge-ref against LiteLLM's proxy")

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
    fig = plots.panels([plots.Panel(by_client["cpu_ms"], "ms per request", "CPU of the process under test")],
                       "steady: CPU per request by upstream client", width=8)

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
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    plots.ladder(ax, c1_ladder, f"latency-c1, run {c1['run_id'].iloc[0]}: latency at concurrency 1")
