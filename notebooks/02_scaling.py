# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
from IPython.display import display

from benchmarks import analysis as an
from benchmarks import plots

RESULTS = an.results_dir()
df = an.start(RESULTS)

# %% [markdown]
# # Scaling: many tenants, bounded caches, cold bursts
#
# Two ways caches meet scale. With many tenants, a cache's hit ratio depends on how much of the
# working set fits: bounded caches keep memory flat at the price of evictions, and each miss is a DB
# query again. In a cold burst (many first requests at once, as after a deploy) the question is
# whether concurrent misses of one key each load it, or share one load (single-flight,
# `FORGE_COALESCE`).
#
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
    sizes = ", ".join(f"{n:,}" for n in sorted(tenants["tenants"].unique()))
    bounds = ", ".join(f"{n:,.0f}" for n in sorted(tenants["user_bound"].dropna().unique()))
    fig = plots.panels(
        [plots.Panel(tenants.filter(like="_hit_ratio").rename(columns=lambda c: c.split("_")[0]),
                     "fraction of look-ups served by the cache", "Hit ratio", ref=1),
         plots.Panel(tenants.filter(like="_evictions").rename(columns=lambda c: c.split("_")[0]),
                     "entries evicted in the measured window", "Evictions"),
         plots.Panel(tenants["db_queries"], "count per request", "DB queries per request"),
         plots.Panel(tenants["peak_rss_mb"], "MB", "Server peak RSS")],
        f"many-tenants ({sizes} tenants; bounded: {bounds or 'none'} entries per cache): what bounds cost")

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
    fig = plots.panels([plots.Panel(an.coalescing(bursts, column), xlabel, title) for column, xlabel, title in [
        ("db_queries", "total in the burst", "DB queries"),
        ("services_built", "total in the burst", "Services built"),
        ("upstream_model_list_requests", "total in the burst", "Model-list calls"),
        ("coalesced_waits", "total in the burst", "Misses that waited for a load"),
        ("p99_ms", "ms", "p99 latency")]],
        f"cold-burst ({bursts['requests'].max():,} requests at once): loads with coalescing off and on",
        width=16)
