# %% [markdown]
# # Scaling: many tenants, bounded caches, cold bursts
#
# Two ways caches meet scale. With many tenants, a cache's hit ratio depends on how much of the
# working set fits: bounded caches keep memory flat at the price of evictions, and each miss is a DB
# query again. In a cold burst (many first requests at once, as after a deploy) the question is
# whether concurrent misses of one key each load it, or share one load (single-flight,
# `FORGE_COALESCE`).
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
# ## Many tenants: hit ratio, evictions and memory
#
# `many-tenants` spreads Zipf-distributed traffic over a large tenant population, with default cache
# bounds and with `bounded` caches (`FORGE_USER_MAX`, `FORGE_SERVICE_MAX`, `FORGE_MODELS_MAX` set well
# below the working set, so evictions show). Every run in the directory is shown, so runs with
# different tenant counts (`--tenants`) line up.

# %%
many = an.select(df, profile="many-tenants", target="forge-ref", run=None)
if an.have(many, "many-tenants"):
    tenants = an.tenants_table(many)
    display(tenants.drop(columns=["run_id"]))

# %%
if an.have(many, "many-tenants"):
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.5 * len(tenants) + 2.5), sharey=True)
    tenants[["user_hit_ratio", "service_hit_ratio", "models_hit_ratio"]].plot.barh(
        ax=axes[0], title="hit ratio", xlim=(0, 1.05))
    tenants[["user_evictions", "service_evictions", "models_evictions"]].plot.barh(
        ax=axes[1], title="evictions")
    tenants["db_queries"].plot.barh(ax=axes[2], title="DB queries per request")
    tenants["peak_rss_mb"].plot.barh(ax=axes[3], title="server peak RSS (MB)")
    axes[0].invert_yaxis()
    axes[0].set_ylabel("")
    fig.tight_layout()

# %% [markdown]
# ## Cold burst: coalescing on and off
#
# `cold-burst` starts all its users at once against cold caches (no warm-up), a few tenants, half chat
# and half model listing. Counts below are totals over the burst, not per request: with coalescing,
# concurrent misses of one key wait for one load (`coalesced_waits`), so the duplicate model-list calls
# and service builds disappear. Listen-backlog overflows are connection attempts the kernel dropped
# during the burst; the client retries them after 1 s, which shows in the latency tail.

# %%
burst = an.select(df, profile="cold-burst", target="forge-ref")
if an.have(burst, "cold-burst"):
    bursts = an.burst_table(burst)
    display(bursts)

# %%
if an.have(burst, "cold-burst"):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    bursts[["db_queries", "decryptions", "services_built", "upstream_model_list_requests",
            "coalesced_waits"]].T.plot.bar(ax=axes[0], rot=20, title="Loads during the burst (totals)")
    bursts[an.PERCENTILES].T.plot.bar(ax=axes[1], rot=0, title="Latency during the burst (ms)")
    fig.tight_layout()
