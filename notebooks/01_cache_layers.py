# %% [markdown]
# # What each cache layer buys
#
# A proxied request can cost a DB look-up of the user behind the Forge key (`user` layer), a DB read of
# all their provider keys to build a ProviderService (`service`), decryptions of those keys (`keys`:
# decrypt only the one a request needs, once), model-list calls upstream (`models`), and a new adapter
# with its own HTTP client (`adapters`). Every layer can be switched off, and the server counts each
# cost, so comparing configurations of one run shows what each layer removes and what that is worth
# in latency, throughput and CPU.
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
# ## What this directory holds
#
# Profiles, targets and cache configurations. Configurations are compared only within one run
# (same machine, commit and mock): each section below uses the latest run that holds its profile.

# %%
an.inventory(df)

# %% [markdown]
# ## Costs, latency and throughput per configuration (`steady`)
#
# `steady` is chat completions from tenants with three provider keys each, of which chat uses one: with
# `keys` off every service build decrypts all three. Counts are per request over the measured window,
# after a warm-up, so with the layers on they show warm costs (the design: 0 DB queries and 0
# decryptions once `user`, `service` and `keys` are on).

# %%
steady = an.select(df, profile="steady", target="forge-ref")
if an.have(steady, "steady"):
    table = an.summary(steady)
    display(table[["db_queries", "decryptions", "services_built", "adapters_built", "upstream_requests",
                   "p50_ms", "p90_ms", "p99_ms", "rps", "cpu_ms", "server_busy"]])

# %%
if an.have(steady, "steady"):
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    table[["db_queries", "decryptions", "services_built", "adapters_built"]].plot.bar(
        ax=axes[0, 0], rot=20, title="Costs per request")
    table[["p50_ms", "p90_ms", "p99_ms"]].plot.bar(ax=axes[0, 1], rot=20, title="Latency percentiles (ms)")
    table["rps"].plot.bar(ax=axes[1, 0], rot=20, title="Throughput (requests/s)")
    table["cpu_ms"].plot.bar(ax=axes[1, 1], rot=20, title="Server CPU per request (ms)")
    fig.tight_layout()

# %% [markdown]
# Read throughput with *server_busy* (server CPU seconds per second; the server is pinned to one CPU):
# near 1.0 the server was the bottleneck and req/s compares the configurations; well below it, Locust
# and the mock (sharing the other CPU) were, and req/s mostly measures them. Server CPU per request
# is the comparison that does not depend on who the bottleneck was.

# %% [markdown]
# ## Every profile
#
# The same per-request costs for every forge-ref profile in the directory. `provider_calls` is every
# call the mock provider received, per client request: chat and embeddings forward one each, model
# listing one per provider key unless `models` holds the list.

# %%
forge = an.select(df, target="forge-ref", profile=["steady", "mixed", "models-heavy", "churn", "many-tenants"])
if an.have(forge, "steady"):
    costs = an.summary(forge, by=["profile", "label"])
    display(costs[["db_queries", "decryptions", "model_list_calls", "provider_calls", "p50_ms", "p99_ms", "rps",
                   "cpu_ms"]])
    ax = costs[["db_queries", "decryptions", "model_list_calls", "provider_calls"]].plot.barh(
        figsize=(9, 0.45 * len(costs) + 1.5), title="Costs per request, by profile and configuration")
    ax.invert_yaxis()
    ax.set_ylabel("")

# %% [markdown]
# ## Each layer on against off
#
# A layer's effect is clearest between two configurations of one run that differ in that layer only:
# added to nothing (`none` → `user`) and taken away from everything (all but `user` → `all`); the two
# can differ, because layers overlap (with `service` on, `keys` has nothing left to save). Below is every
# pair of measured configurations where the second only adds layers to the first, with nothing measured
# in between. Δ is on minus off, per request (negative is a saving); `rps ×` is on / off.

# %%
effects = an.on_off(an.select(df, target="forge-ref"))
display(Markdown(an.on_off_note(effects[effects["profile"] == "steady"], "steady")))
effects

# %%
shown = effects[effects["profile"] == "steady"]
if (shown["n_added"] == 1).any():
    shown = shown[shown["n_added"] == 1]  # one-layer pairs isolate each layer: show only those
if len(shown):
    shown = shown.set_index("step")
    fig, axes = plt.subplots(1, 4, figsize=(15, 0.45 * len(shown) + 2), sharey=True)
    for ax, col in zip(axes, ["Δ db_queries", "Δ decryptions", "Δ cpu_ms", "rps ×"]):
        shown[col].plot.barh(ax=ax, title=col)
    axes[-1].axvline(1, color="black", lw=1)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("")
    fig.suptitle("steady: switching layers on (Δ per request; rps as a ratio)")
    fig.tight_layout()

# %% [markdown]
# ## Latency distributions
#
# A CDF needs per-request latencies. Locust keeps a bucketed histogram per endpoint; if a result file
# holds one (`locust.hist` or `response_times`, overall or per endpoint) it is plotted below as a CDF.
# Otherwise the notebook falls back to the percentile ladder every result has (p50, p90, p99, max) and
# says so. Locust rounds times to whole milliseconds below 100 ms, so at these latencies the
# percentiles move in steps of 1 ms.

# %%
if an.have(steady, "steady"):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if an.has_histograms(steady):
        for label, doc in zip(steady["label"], steady["raw"]):
            hist = an.latency_hist(doc)
            if hist:
                c = an.cdf(hist)
                ax.step(c["ms"], c["fraction"], where="post", label=label)
        an.plain_log(ax, "x")
        ax.set(xlabel="latency (ms)", ylabel="fraction of requests ≤ x",
               title="Latency CDF, steady (Locust histograms)")
    else:
        display(Markdown("No per-request latency histograms in these results (`locust.endpoints` holds "
                         "summary percentiles only): plotting the percentile ladder instead."))
        an.ladder(steady).T.plot(ax=ax, marker="o", ylabel="ms",
                                 title="Percentile ladder, steady (no histograms in the results)")
        an.plain_log(ax)
    ax.legend()

# %% [markdown]
# ## Provider calls: the `models` layer
#
# `GET /v1/models` lists the models of every provider key of the user: without the `models` layer, one
# upstream call per key for every listing. `models-heavy` is mostly listing; `mixed` mixes chat,
# streaming, embeddings and listing. With real providers each call costs their latency and quota,
# which is what this layer saves (the mock answers at once).

# %%
lists = an.select(df, target="forge-ref", profile=["models-heavy", "mixed"])
if an.have(lists, "models-heavy"):
    calls = an.summary(lists, by=["profile", "label"])
    display(calls[["model_list_calls", "provider_calls", "db_queries", "p50_ms", "p99_ms", "rps", "cpu_ms"]])
    ax = calls[["model_list_calls", "provider_calls"]].plot.barh(
        figsize=(8, 0.5 * len(calls) + 1.5), title="Upstream calls per client request")
    ax.invert_yaxis()
    ax.set_ylabel("")
