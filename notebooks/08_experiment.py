# %%
# What this notebook runs, and where it writes: edit these and run all cells. The results go to OUT, by default
# a new directory under results/experiments/, which git ignores and the report and the other notebooks do not
# read. FORGE_EXPERIMENT_USERS, FORGE_EXPERIMENT_DURATION and FORGE_EXPERIMENT_OUT override the size and the
# place (the tests run this notebook in seconds that way).
import os

import pandas as pd
from IPython.display import Markdown, display

from benchmarks import analysis as an
from benchmarks import plots
from benchmarks.api import Experiment

PROFILE = "steady"  # a load profile (benchmarks/profiles.py): steady, mixed, models-heavy, churn, cold-burst, ...
CONFIGS = ["none", "all"]  # cache layers: none, all, or layer lists such as "user,service"
STORE = "postgres"  # sqlite, or postgres ($FORGE_BENCH_POSTGRES_URL, else postgres@127.0.0.1:5432)
DB_RTT_MS = [0, 2]  # round trips (ms) a delay proxy adds between the server and PostgreSQL; 0: direct
USERS = int(os.environ.get("FORGE_EXPERIMENT_USERS", 16))  # Locust users
DURATION = float(os.environ.get("FORGE_EXPERIMENT_DURATION", 10))  # measured seconds per job
OUT = os.environ.get("FORGE_EXPERIMENT_OUT")  # None: results/experiments/<start time>/

exp = Experiment(profiles=PROFILE, configs=CONFIGS, stores=STORE, db_rtt_ms=DB_RTT_MS, users=USERS,
                 duration=DURATION, out=OUT)
jobs = exp.jobs()  # the plan; nothing runs yet
display(Markdown(f"**{len(jobs)} jobs** into `{exp.out}`, each {DURATION:g} s measured after a warm-up, plus a few "
                 f"seconds to start its server. The same run from a shell:\n\n```\n{exp.command()}\n```"))
pd.DataFrame([{"profile": j.profile, "config": j.config, "store": j.store, "db_rtt_ms": j.db_rtt_ms,
               "variant": j.variant} for j in jobs])

# %% [markdown]
# # An experiment: what the cache layers save when the database is a network hop away
#
# The other notebooks read result files; this one makes them, through `benchmarks.api`, the runner's
# Python face: `Experiment(...)` takes the options of `python -m benchmarks run`, `.jobs()` shows the
# plan, `.run()` runs it (one job after the other: a fresh seeded database and server each, a warm-up,
# then `DURATION` seconds of Locust) and returns the result files it wrote.
#
# The question of the defaults: on SQLite a look-up is a call into a library; on PostgreSQL it is a
# network round trip, and here a delay proxy in front of PostgreSQL makes that round trip as long as
# `DB_RTT_MS` asks. A `steady` request with every layer off runs two DB queries one after the other (its
# user, then its provider keys), so each round trip should add twice itself to the request's latency;
# with every layer on and warm it runs none, so the distance of the database should not matter.
#
# ## Running it
#
# A line when a job starts and when it ends, and one every few seconds while it runs.

# %%
run = exp.run()
if run.failed:
    display(Markdown(f"**{len(run.failed)} job(s) failed**; their tracebacks and logs are in `{run.raw}`."))

# %% [markdown]
# ## The result files
#
# One immutable JSON file per job, the same files `python -m benchmarks run` writes: every number below
# is read from them (`run.frame()` is `benchmarks.analysis.load` of these files).

# %%
plots.style()
df = run.frame()
display(Markdown(an.provenance(df, exp.out)))
with pd.option_context("display.max_colwidth", None):  # whole file names
    display(df[["file", "label", "requests", "locust.failures", "settings.db_rtt_ms"]])

# %% [markdown]
# ## Costs, latency and throughput per configuration
#
# Per request over the measured window: the DB queries and decryptions the layers remove, the
# server's CPU, throughput and latency. Read throughput with *server_busy* (server CPU seconds per
# second): near 1.0 the server was the bottleneck; well below it, Locust and the mock were.

# %%
for profile, rows in df.groupby("profile", sort=False):
    table = an.summary(rows)
    display(table[["db_queries", "decryptions", "p50_ms", "p99_ms", "rps", "cpu_ms", "server_busy"]])
    fig = plots.configurations(table, f"{profile}: what each cache configuration costs (run {rows['run_id'].iloc[0]})")

# %% [markdown]
# ## What the round trip to the database adds
#
# Per configuration, against the round trip the delay proxy added. The dashed lines are the
# expectation: DB queries per request × the round trip, what the hop adds when a request's queries
# run one after another. Latencies are Locust's, rounded to whole milliseconds below 100 ms, so a
# short run on a busy machine shows the trend more than its exact size.

# %%
trips = an.round_trips(df)
if trips.index.get_level_values("db_rtt_ms").nunique() > 1:
    display(trips[["db_queries", "p50_ms", "added_p50_ms", "db_wait_ms", "rps", "cpu_ms"]])
    fig = plots.sweep(trips, {"p50_ms": "p50 latency (ms)", "added_p50_ms": "p50 added by the hop (ms)",
                              "rps": "throughput (requests/s)"},
                      "What a database a network hop away costs, per cache configuration", "DB round trip added (ms)",
                      expected={"added_p50_ms": "db_wait_ms"}, expected_label="DB queries per request × round trip")
else:
    display(Markdown("**One round trip measured**: set `STORE = \"postgres\"` and several `DB_RTT_MS` (such as "
                     "`[0, 1, 2, 5]`) in the first cell to see what the distance of the database costs."))

# %% [markdown]
# ## Keeping the results
#
# The files stay in the output directory. The other notebooks read it with
# `FORGE_RESULTS_DIR=DIR ./dev.sh notebooks` (or `RESULTS = an.results_dir("DIR")` in their first
# cell), and `python -m benchmarks report --results DIR --out DIR/RESULTS.md --figures DIR/figures`
# writes a report of it alone. Measure on a quiet machine for numbers worth keeping: the runner
# records the rest of the machine's load in each file (`noise`), shown under the files above.
