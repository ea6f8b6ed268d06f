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
    ax = costs.set_index("what")["us_per_op"].plot.barh(figsize=(9, 3.8), label="best of repeats",
                                                        title="µs per operation (log scale)")
    ax.plot(costs["median_us"].values, range(len(costs)), "k|", markersize=14, label="median of repeats")
    an.plain_log(ax, "x")
    ax.set(xlabel="µs", ylabel="")
    ax.legend()

# %% [markdown]
# The same costs relative to an in-process hit, and as a share of the server CPU one proxied request
# costs with every layer on (from the `steady` result of the results directory).

# %%
if an.have(micro, "micro"):
    per_request = an.select(df, profile="steady", target="forge-ref", config="all")
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
    ax = priced.plot.barh(figsize=(8, 0.5 * len(priced) + 1.5),
                          title="DB look-ups + decryptions per request, priced per store (µs)")
    ax.invert_yaxis()
    ax.set_ylabel("")
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
loads = an.select(df, target="forge-ref", run=None)
backends = loads.groupby(["store", "cache_backend"]).size().rename("files") if len(loads) else None
if backends is not None and len(backends) > 1:
    display(backends.to_frame())
    by_backend = an.on_off(loads)
    by_backend = by_backend[by_backend["profile"] == "steady"]
    display(by_backend)
    delta = by_backend.pivot_table(index="step", columns=["store", "cache_backend"], values="Δ cpu_ms")
    ax = delta.plot.barh(figsize=(9, 0.5 * len(delta) + 2),
                         title="steady: Δ server CPU ms per request, by backend")
    ax.set_ylabel("")
else:
    found = ", ".join(f"{s} + {c} caches" for s, c in (backends.index if backends is not None else []))
    display(Markdown(
        f"Every forge-ref load result here ran on one store and cache backend ({found or 'none'}): "
        "no load results vary them, so what each layer saves on PostgreSQL or with Redis is shown above "
        "only as the priced estimate. Results that do vary them come from load runs whose files record "
        "the store and backend as described above; the per-operation costs come from "
        f"`{an.COMMANDS['micro']}`."))
