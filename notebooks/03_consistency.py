# %% [markdown]
# # Consistency under churn
#
# A cache is only safe if every write reaches every cache holding what it made stale. The `churn`
# profile runs normal traffic alongside a writer that revokes and restores provider keys, moves a
# key's `base_url` away and back, and resets Forge keys; after each write it waits the allowed
# staleness window (`settings.stale_bound_s`) and checks with a request that must see the write. A
# check that does not is a *stale response*. With one process the window is 0: invalidation happens
# inside the write. With several, each process has its own caches and learns of writes by polling the
# invalidation log (SQLite) or by Redis pub/sub, so the window is a few poll intervals.
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
# ## Checked reads after writes
#
# Every churn result in the directory (all runs, so runs with different process counts or backends
# sit side by side). `writes` counts the writer's requests, `invalidations` the cache entries they
# dropped, `db_background_queries` the polling of the invalidation log (not charged to requests).
# These files record the allowed window and the verdicts, not each read's own lag.

# %%
churn = an.select(df, profile="churn", target="forge-ref", run=None)
if an.have(churn, "churn"):
    checks = an.churn_table(churn)
    display(checks.set_index("file").drop(columns="name"))

# %%
if an.have(churn, "churn"):
    shown = checks.set_index("name")
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.6 * len(shown) + 2.5), sharey=True)
    shown[["fresh", "stale_responses"]].plot.barh(stacked=True, ax=axes[0], color=["tab:green", "tab:red"],
                                                  title="checked reads after a write")
    shown[["writes", "invalidations", "db_background_queries"]].plot.barh(ax=axes[1], title="counts")
    axes[0].set_ylabel("")
    fig.tight_layout()

# %% [markdown]
# ## What churn costs the other requests
#
# Latency by endpoint in the latest churn run: writes (`PUT /v1/provider-keys/…`, `reset-key`), the
# writer's verification reads (`[verify]`, which include the wait of the window), and the normal
# traffic whose caches the writes keep invalidating.

# %%
latest = an.select(df, profile="churn", target="forge-ref")
if an.have(latest, "churn"):
    eps = an.endpoints(latest).set_index("name")
    display(eps[["method", "requests", "failures", "p50_ms", "p90_ms", "p99_ms", "max_ms"]])
    ax = eps[["p50_ms", "p90_ms", "p99_ms"]].plot.barh(figsize=(9, 0.45 * len(eps) + 1.5),
                                                      title="churn: latency by endpoint (ms)")
    ax.invert_yaxis()
    ax.set_ylabel("")

# %% [markdown]
# ## Across processes
#
# With `--processes N` (N > 1) the server is unpinned, each process keeps its own caches, and a
# write must reach the others through the invalidation log within the window. Only runs with more
# than one process test that.

# %%
multi = churn[churn["processes"] > 1] if len(churn) else churn
if an.have(multi, "churn-processes"):
    display(an.churn_table(multi).set_index("file").drop(columns="name"))
