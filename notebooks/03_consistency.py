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
    stale, total = int(shown["stale_responses"].sum()), int(shown["checked_reads"].sum())
    fig = plots.panels([plots.Panel(shown[["fresh", "stale_responses"]], "checked reads", "Reads after a write",
                                    stacked=True),
                        plots.Panel(shown[["writes", "invalidations", "db_background_queries"]],
                                    "count in the measured window", "Writes and what they invalidated")],
                       f"churn: {stale} stale of {total} checked reads (0 stale: every write reached every cache)")

# %% [markdown]
# ## What churn costs the other requests
#
# Latency by endpoint in the latest churn run: writes (`PUT /v1/provider-keys/…`, `reset-key`), the
# writer's verification reads (`[verify]`, which include the wait of the window), and the normal
# traffic whose caches the writes keep invalidating.

# %%
latest = an.select(df, profile="churn", target="forge-ref")
if an.have(latest, "churn"):
    eps = an.endpoints(latest)
    display(eps.set_index(["label", "name"])[["method", "requests", "failures", "p50_ms", "p90_ms", "p99_ms",
                                             "max_ms"]])
    fig, axes = plt.subplots(2, 1, figsize=(1.1 * eps["label"].nunique() + 6, 9), layout="constrained")
    for ax, col in zip(axes, ["p50_ms", "p99_ms"]):
        table = eps.pivot_table(index="name", columns="label", values=col, aggfunc="last")
        plots.heatmap(ax, table.reindex(index=eps["name"].unique(), columns=eps["label"].unique()), "ms",
                      f"{col[:3]} latency (ms)")
    fig.suptitle(f"churn, run {latest['run_id'].iloc[0]}: latency by endpoint and cache configuration")

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
