# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
from IPython.display import Markdown, display

from benchmarks import analysis as an
from benchmarks import plots

RESULTS = an.results_dir()
df = an.start(RESULTS)

# %% [markdown]
# # Backends: what a cache hit replaces, on SQLite, PostgreSQL, memory and Redis
#
# What a layer saves is the cost of what its hit replaces, and that depends on the backend: an
# indexed SQLite look-up is a library call in the process, a PostgreSQL look-up a network round trip;
# an in-process cache hit is a dict access, a Redis hit a round trip plus decoding.
# `python -m benchmarks.micro` times each of these operations through forge-ref's own code, one at a
# time, in one process. Micro results are looked for in the results directory and in a sibling
# `sample_micro/` (where the committed sample keeps its micro result).
#
# ## Per-operation costs
#
# From the micro result with the most operations measured (Redis and PostgreSQL need their servers;
# the latest such file): best of the repeats (the minimum filters a shared machine's noise), with the
# median of the repeats as a tick; log scale, because the operations differ by orders of magnitude.

# %%
micro = an.load_micro(RESULTS)
costs = an.micro_costs(micro)
if an.have(micro, "micro"):
    display(Markdown(an.provenance(micro.tail(1), micro["dir"].iloc[-1])))
    display(costs)

# %%
if an.have(micro, "micro"):
    fig = plots.panels([plots.Panel(costs.set_index("what")["us_per_op"].rename("best of repeats"),
                                    "µs per operation (log scale)", log=True)],
                       "What a cache hit replaces: the cost of one operation", width=9)
    ax = fig.axes[0]
    ax.plot(costs["median_us"].values, range(len(costs)), "k|", markersize=14, label="median of repeats")
    fig.legend(loc="outside lower center", ncols=2, frameon=False)

# %% [markdown]
# The same costs relative to an in-process hit, and as a share of the server CPU one proxied request
# costs with every layer on (from the `steady` result of the results directory).

# %%
if an.have(micro, "micro"):
    per_request = an.select(df, profile="steady", target="forge-ref", config="all", variant="")
    scale = costs[["what", "us_per_op"]].assign(
        x_in_process_hit=costs["us_per_op"] / costs.loc["in_process_hit", "us_per_op"])
    if len(per_request):
        request_us = 1000 * per_request["server.cpu_ms_per_request"].iloc[-1]
        scale["% of a proxied request's CPU"] = 100 * costs["us_per_op"] / request_us
        display(Markdown(f"One proxied request (`steady`, `all`): {request_us:,.0f} µs of server CPU."))
    display(scale)

# %% [markdown]
# ## Where Redis pays off, and where it costs
#
# *Pays off:* a Redis-backed layer is shared. Every process of every node sees one copy, so a user row
# or a provider's model list is loaded once for the fleet instead of once per process (for model lists
# that is the provider's latency and quota), and a write reaches every process and node at once by
# pub/sub, where in-process caches of several nodes could not be invalidated at all. Gateway processes
# can restart without starting cold.
#
# *Costs:* a Redis hit is a network round trip plus decoding where an in-process hit is a dict access
# (the ratio is in the table above). That is why forge-ref keeps a small in-process L1 in front of Redis
# (a short TTL, dropped on every invalidation message), and why ProviderService objects and decrypted
# provider keys stay in process: they would cost a round trip on every request, and no plaintext key
# should leave the process. With one process on one node, in-process caches are strictly cheaper; Redis
# is for several processes or nodes.
#
# The same reasoning for stores: on SQLite a look-up is cheap, so the `user` and `service` layers save
# little CPU; on PostgreSQL each look-up is a round trip, and these layers remove it from every request.

# %% [markdown]
# ## What the layers save, priced per store
#
# DB queries and decryptions per request of each `steady` configuration, priced with the micro costs
# of each store: the load results' measured counts × the measured cost of one operation. An estimate
# of the work the layers remove, not a measured run on that store.

# %%
priced = an.lookup_cost_model(an.select(df, profile="steady", target="forge-ref"), costs)
if priced is not None and len(priced):
    display(priced)
    fig = plots.panels([plots.Panel(priced.rename(columns=lambda c: c.split(" ")[0]), "µs per request (estimate)")],
                       "steady: DB look-ups + decryptions per request, priced per store", width=9)
else:
    display(Markdown("Needs both `steady` forge-ref results and micro results."))

# %% [markdown]
# ## Load runs with a store or cache-backend dimension
#
# If the directory holds forge-ref results on more than one store or cache backend (read from
# `settings.store` / `settings.cache_backend`, from `FORGE_DB` / `FORGE_CACHE_BACKEND` in
# `settings.server_env`, or from a `redis` / `postgres` variant), the per-layer comparison of notebook 01
# is repeated per backend.

# %%
loads = an.select(df, target="forge-ref", profile="steady", run=None)
backends = loads.groupby(["store", "cache_backend"]).size().rename("files") if len(loads) else None
varied = backends is not None and len(backends) > 1
by_backend = an.backend_effects(loads) if varied else None
if not varied:
    found = ", ".join(f"{s} + {c} caches" for s, c in (backends.index if backends is not None else []))
    display(Markdown(
        f"Every forge-ref load result here ran on one store and cache backend ({found or 'none'}): "
        "no load results vary them, so what each layer saves on PostgreSQL or with Redis is shown above "
        "only as the priced estimate. Results that do vary them come from load runs whose files record "
        "the store and backend as described above; the per-operation costs come from "
        f"`{an.COMMANDS['micro']}`."))
elif an.have(by_backend, "backends"):
    display(backends.to_frame())
    display(by_backend)
    fig = plots.panels([plots.Panel(by_backend.pivot(index="backend", columns="step", values=col)
                                    .reindex(by_backend["backend"].unique()), xlabel, title, ref=ref)
                        for col, xlabel, title, ref in [
                            ("Δ cpu_ms", "change in server CPU, ms per request", "Server CPU", 0),
                            ("Δ p50_ms", "change in p50 latency, ms", "Median latency", 0),
                            ("rps ×", "throughput, on / off", "Throughput", 1)]],
                       f"steady, {', '.join(sorted(set(by_backend['off'] + ' → ' + by_backend['on'])))}: what "
                       "switching the layers on saves, per store + cache backend")
