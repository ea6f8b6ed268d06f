# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from benchmarks import analysis as an
from benchmarks import phases, plots

RESULTS = an.results_dir()
df = an.start(RESULTS)

# %% [markdown]
# # What each cache layer buys
#
# A proxied request can cost a DB look-up of the user behind the Forge key (`user` layer), a DB read of
# all their provider keys to build a ProviderService (`service`), decryptions of those keys (`keys`:
# decrypt only the one a request needs, once), model-list calls upstream (`models`), and a new adapter
# with its own HTTP client (`adapters`). Every layer can be switched off, and the server counts each
# cost, so comparing configurations of one run shows what each layer removes and what that is worth
# in latency, throughput and CPU. Files are read only through `benchmarks.results`; the machine, the
# CPU pinning of server and load generator, and the load above come from the files themselves.
#
# ## What this directory holds
#
# Profiles, targets and cache configurations. Configurations are compared only within one run
# (same machine, commit and mock): each section below uses, per profile, the run that holds the most
# results of it (the matrix rather than a later follow-up run; ties: the latest).

# %%
an.inventory(df)

# %% [markdown]
# ## Costs, latency and throughput per configuration (`steady`)
#
# `steady` is chat completions from tenants with three provider keys each, of which chat uses one: with
# `keys` off every service build decrypts all three. Counts are per request over the measured window,
# after a warm-up, so with the layers on they show warm costs (the design: 0 DB queries and 0
# decryptions once `user`, `service` and `keys` are on). "all but keys" is every layer on except `keys`.

# %%
steady = an.select(df, profile="steady", target="forge-ref")
if an.have(steady, "steady"):
    table = an.summary(steady)
    display(table[["db_queries", "decryptions", "services_built", "adapters_built", "upstream_requests",
                   "p50_ms", "p90_ms", "p99_ms", "rps", "cpu_ms", "server_busy"]])
    fig = plots.configurations(table, f"steady, run {steady['run_id'].iloc[0]}: what each cache configuration costs")

# %% [markdown]
# Read throughput with *server_busy* (server CPU seconds per second; the server is pinned to one CPU):
# near 1.0 the server was the bottleneck and req/s compares the configurations; well below it, Locust
# and the mock (sharing the other CPU) were, and req/s mostly measures them. Server CPU per request
# is the comparison that does not depend on who the bottleneck was.
#
# ## Every profile
#
# The same per-request costs for every forge-ref profile in the directory, one chart per profile (and
# per variant, such as `bounded` caches), configurations in the same order in each. `provider_calls` is
# every call the mock provider received, per client request: chat and embeddings forward one each,
# model listing one per provider key unless `models` holds the list.

# %%
forge = an.select(df, target="forge-ref", profile=["steady", "mixed", "models-heavy", "churn", "many-tenants"])
if an.have(forge, "steady"):
    costs = an.summary(forge, by=["profile", "variant", "config"])
    display(costs[["db_queries", "decryptions", "model_list_calls", "provider_calls", "p50_ms", "p99_ms", "rps",
                   "cpu_ms"]])
    charts = {f"{p} [{v}]" if v else p: c.droplevel([0, 1])[["db_queries", "decryptions", "model_list_calls",
                                                             "provider_calls"]]
              for (p, v), c in costs.groupby(level=[0, 1], sort=False)}
    fig = plots.grid(charts, "count per client request", "Costs per request, by profile and cache configuration",
                     order=list(forge.sort_values("order")["config"].unique()))

# %% [markdown]
# ## Each layer on against off
#
# A layer's effect is clearest between two configurations of one run that differ in that layer only:
# added to nothing (`none` → `user`) and added last, to all the others (all but `user` → `all`); the two
# can differ, because layers overlap (with `service` on, `keys` has nothing left to save). The table is
# every pair of measured configurations where the second only adds layers to the first, with nothing
# measured in between. Δ is on minus off, per request (negative is a saving); `rps ×` is on / off.

# %%
effects = an.on_off(an.select(df, target="forge-ref"))
display(Markdown(an.on_off_note(effects[effects["profile"] == "steady"], "steady")))
effects

# %%
shown = effects[(effects["profile"] == "steady") & (effects["variant"] == "")]
pairs = an.layer_pairs(shown)
source = pairs if len(pairs) else shown.set_index("step")  # without one-layer pairs, the coarser steps
if len(source):
    fig = plots.panels([plots.Panel(source["Δ db_queries"], "change per request", "DB queries", ref=0),
                        plots.Panel(source["Δ decryptions"], "change per request", "Decryptions", ref=0),
                        plots.Panel(source["Δ cpu_ms"], "change in server CPU, ms per request", "Server CPU", ref=0),
                        plots.Panel(source["rps ×"], "throughput, on / off", "Throughput", ref=1)],
                       "steady: what switching each layer on changes (negative is a saving)")

# %% [markdown]
# ## Latency distributions
#
# A CDF needs per-request latencies. Locust keeps a bucketed histogram per endpoint; if a result file
# holds one (`locust.hist` or `response_times`, overall or per endpoint) it is plotted below as a CDF,
# `none` and `all` in colour and the configurations between them in grey. Otherwise the notebook falls
# back to the percentile ladder every result has (p50, p90, p99, max) and says so. Locust rounds times
# to whole milliseconds below 100 ms, so at these latencies the percentiles move in steps of 1 ms.

# %%
if an.have(steady, "steady"):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if an.has_histograms(steady):
        for label, doc in zip(steady["label"], steady["raw"]):
            if hist := an.latency_hist(doc):
                c = an.cdf(hist)
                main = label in ("none", "all")
                ax.step(c["ms"], c["fraction"], where="post", label=label if main else None, lw=2 if main else 1,
                        color={"none": "tab:red", "all": "tab:blue"}.get(label, "0.7"), zorder=3 if main else 2)
        ax.plot([], [], color="0.7", label="other configurations")
        plots.plain_log(ax, "x")
        ax.set(xlabel="latency (ms, log scale)", ylabel="fraction of requests ≤ x",
               title="steady: latency CDF per configuration (Locust histograms)")
        ax.legend(loc="lower right")
    else:
        display(Markdown("No per-request latency histograms in these results (`locust.endpoints` holds "
                         "summary percentiles only): plotting the percentile ladder instead."))
        plots.ladder(ax, an.ladder(steady), "steady: latency percentiles (no histograms in the results)")

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
    fig = plots.grid({p: c.droplevel(0)[["model_list_calls", "provider_calls"]] for p, c in calls.groupby(level=0)},
                     "calls per client request", "Upstream calls per client request (the models layer saves the "
                     "model-list calls)", order=list(lists.sort_values("order")["label"].unique()), ncols=2)

# %% [markdown]
# ## Where a request's time goes, and hits against misses
#
# The runner starts forge-ref with `FORGE_SERVER_TIMING=1`: every response carries a W3C `Server-Timing`
# header naming each layer's hit or miss and each phase's time, and Locust records them
# (`benchmarks/server_timing.py`; the result's `server_timing` section). Phases are the gateway's own
# microseconds, in the order a request runs them; `upstream` is the provider's (the mock's) time and
# `total` the time to the response's first byte. Under a closed-loop load at saturation, `body` (from
# the request's start until its body has been read) and `upstream` also hold the time spent waiting for
# the event loop, busy with the other requests.

# %%
timed = an.select(df, profile="steady", target="forge-ref")
timed = timed[[bool(d.get("server_timing")) for d in timed["raw"]]] if not timed.empty else timed
if an.have(timed, "server-timing"):
    docs = list(timed["raw"])
    table = pd.DataFrame(phases.phase_rows(docs))
    display(table.pivot_table(index="phase", columns="label", values="p50_us", sort=False))
    own = table[table["phase"].isin(phases.WORK_PHASES)]
    p50 = own.pivot_table(index="label", columns="phase", values="p50_us", sort=False)
    order = [lab for lab in timed.sort_values("order")["label"] if lab in p50.index]
    ax = p50.loc[order].iloc[::-1].plot.barh(stacked=True, figsize=(9, 0.5 * len(order) + 1.5), width=0.7)
    ax.set(xlabel="gateway's own time, µs (p50 of each phase, stacked)", ylabel="",
           title="steady: the gateway's own work per configuration (upstream and waiting excluded)")
    ax.legend(title="phase", bbox_to_anchor=(1.02, 1), loc="upper left")
    hits = pd.DataFrame(phases.layer_rows(docs))
    display(Markdown("Client-side latency (ms) of the requests in which each layer hit or missed:"))
    display(hits.pivot_table(index=["layer", "state"], columns="label", values="p50_ms", sort=False))
