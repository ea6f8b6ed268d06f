"""Writes the notebooks of this directory from the cells below: ``python notebooks/build.py``.

The notebooks are generated so that they stay reviewable as code: edit the cells here, run this,
and commit both. The generated files have no outputs and stable cell ids, so regenerating gives
identical files (``tests/test_notebooks.py`` checks it). Shared logic lives in
``benchmarks/analysis.py``; the cells only select, show and plot, and every number they show is
read from result files through ``benchmarks.results``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
%matplotlib inline
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
display(Markdown(an.provenance(df, RESULTS)))"""

SOURCE = """\
The results directory is `$FORGE_RESULTS_DIR` if set, else `results/` if it holds result files, else
the committed sample `tests/data/sample_results/` (a `--quick` run: short, small, on a shared
machine; read it for the shape of the effects, not their size). Files are read only through
`benchmarks.results`; the machine, the CPU pinning of server and load generator, and the load
below come from the files themselves."""


def md(text: str) -> tuple[str, str]:
    return "markdown", dedent(text).strip()


def code(text: str) -> tuple[str, str]:
    return "code", dedent(text).strip()


def intro(title: str, text: str) -> list[tuple[str, str]]:
    return [md(f"# {title}\n\n{dedent(text).strip()}\n\n{SOURCE}"), code(SETUP)]


CACHE_LAYERS = intro("What each cache layer buys", """
    A proxied request can cost a DB look-up of the user behind the Forge key (`user` layer), a DB read of
    all their provider keys to build a ProviderService (`service`), decryptions of those keys (`keys`:
    decrypt only the one a request needs, once), model-list calls upstream (`models`), and a new adapter
    with its own HTTP client (`adapters`). Every layer can be switched off, and the server counts each
    cost, so comparing configurations of one run shows what each layer removes and what that is worth
    in latency, throughput and CPU.""") + [
    md("""
        ## What this directory holds

        Profiles, targets and cache configurations. Configurations are compared only within one run
        (same machine, commit and mock): each section below uses the latest run that holds its profile."""),
    code("an.inventory(df)"),
    md("""
        ## Costs, latency and throughput per configuration (`steady`)

        `steady` is chat completions from tenants with three provider keys each, of which chat uses one: with
        `keys` off every service build decrypts all three. Counts are per request over the measured window,
        after a warm-up, so with the layers on they show warm costs (the design: 0 DB queries and 0
        decryptions once `user`, `service` and `keys` are on)."""),
    code("""
        steady = an.select(df, profile="steady", target="forge-ref")
        if an.have(steady, "steady"):
            table = an.summary(steady)
            display(table[["db_queries", "decryptions", "services_built", "adapters_built", "upstream_requests",
                           "p50_ms", "p90_ms", "p99_ms", "rps", "cpu_ms", "server_busy"]])"""),
    code("""
        if an.have(steady, "steady"):
            fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
            table[["db_queries", "decryptions", "services_built", "adapters_built"]].plot.bar(
                ax=axes[0, 0], rot=20, title="Costs per request")
            table[["p50_ms", "p90_ms", "p99_ms"]].plot.bar(ax=axes[0, 1], rot=20, title="Latency percentiles (ms)")
            table["rps"].plot.bar(ax=axes[1, 0], rot=20, title="Throughput (requests/s)")
            table["cpu_ms"].plot.bar(ax=axes[1, 1], rot=20, title="Server CPU per request (ms)")
            fig.tight_layout()"""),
    md("""
        Read throughput with *server_busy* (server CPU seconds per second; the server is pinned to one CPU):
        near 1.0 the server was the bottleneck and req/s compares the configurations; well below it, Locust
        and the mock (sharing the other CPU) were, and req/s mostly measures them. Server CPU per request
        is the comparison that does not depend on who the bottleneck was."""),
    md("""
        ## Every profile

        The same per-request costs for every forge-ref profile in the directory. `provider_calls` is every
        call the mock provider received, per client request: chat and embeddings forward one each, model
        listing one per provider key unless `models` holds the list."""),
    code("""
        forge = an.select(df, target="forge-ref", profile=["steady", "mixed", "models-heavy", "churn", "many-tenants"])
        if an.have(forge, "steady"):
            costs = an.summary(forge, by=["profile", "label"])
            display(costs[["db_queries", "decryptions", "model_list_calls", "provider_calls", "p50_ms", "p99_ms", "rps",
                           "cpu_ms"]])
            ax = costs[["db_queries", "decryptions", "model_list_calls", "provider_calls"]].plot.barh(
                figsize=(9, 0.45 * len(costs) + 1.5), title="Costs per request, by profile and configuration")
            ax.invert_yaxis()
            ax.set_ylabel("")"""),
    md("""
        ## Each layer on against off

        A layer's effect is clearest between two configurations of one run that differ in that layer only:
        added to nothing (`none` → `user`) and taken away from everything (all but `user` → `all`); the two
        can differ, because layers overlap (with `service` on, `keys` has nothing left to save). Below is every
        pair of measured configurations where the second only adds layers to the first, with nothing measured
        in between. Δ is on minus off, per request (negative is a saving); `rps ×` is on / off."""),
    code("""
        effects = an.on_off(an.select(df, target="forge-ref"))
        display(Markdown(an.on_off_note(effects[effects["profile"] == "steady"], "steady")))
        effects"""),
    code("""
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
            fig.tight_layout()"""),
    md("""
        ## Latency distributions

        A CDF needs per-request latencies. Locust keeps a bucketed histogram per endpoint; if a result file
        holds one (`locust.hist` or `response_times`, overall or per endpoint) it is plotted below as a CDF.
        Otherwise the notebook falls back to the percentile ladder every result has (p50, p90, p99, max) and
        says so. Locust rounds times to whole milliseconds below 100 ms, so at these latencies the
        percentiles move in steps of 1 ms."""),
    code("""
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
            ax.legend()"""),
    md("""
        ## Provider calls: the `models` layer

        `GET /v1/models` lists the models of every provider key of the user: without the `models` layer, one
        upstream call per key for every listing. `models-heavy` is mostly listing; `mixed` mixes chat,
        streaming, embeddings and listing. With real providers each call costs their latency and quota,
        which is what this layer saves (the mock answers at once)."""),
    code("""
        lists = an.select(df, target="forge-ref", profile=["models-heavy", "mixed"])
        if an.have(lists, "models-heavy"):
            calls = an.summary(lists, by=["profile", "label"])
            display(calls[["model_list_calls", "provider_calls", "db_queries", "p50_ms", "p99_ms", "rps", "cpu_ms"]])
            ax = calls[["model_list_calls", "provider_calls"]].plot.barh(
                figsize=(8, 0.5 * len(calls) + 1.5), title="Upstream calls per client request")
            ax.invert_yaxis()
            ax.set_ylabel("")"""),
]

SCALING = intro("Scaling: many tenants, bounded caches, cold bursts", """
    Two ways caches meet scale. With many tenants, a cache's hit ratio depends on how much of the
    working set fits: bounded caches keep memory flat at the price of evictions, and each miss is a DB
    query again. In a cold burst (many first requests at once, as after a deploy) the question is
    whether concurrent misses of one key each load it, or share one load (single-flight,
    `FORGE_COALESCE`).""") + [
    md("""
        ## Many tenants: hit ratio, evictions and memory

        `many-tenants` spreads Zipf-distributed traffic over a large tenant population, with default cache
        bounds and with `bounded` caches (`FORGE_USER_MAX`, `FORGE_SERVICE_MAX`, `FORGE_MODELS_MAX` set well
        below the working set, so evictions show). Every run in the directory is shown, so runs with
        different tenant counts (`--tenants`) line up."""),
    code("""
        many = an.select(df, profile="many-tenants", target="forge-ref", run=None)
        if an.have(many, "many-tenants"):
            tenants = an.tenants_table(many)
            display(tenants.drop(columns=["run_id"]))"""),
    code("""
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
            fig.tight_layout()"""),
    md("""
        ## Cold burst: coalescing on and off

        `cold-burst` starts all its users at once against cold caches (no warm-up), a few tenants, half chat
        and half model listing. Counts below are totals over the burst, not per request: with coalescing,
        concurrent misses of one key wait for one load (`coalesced_waits`), so the duplicate model-list calls
        and service builds disappear. Listen-backlog overflows are connection attempts the kernel dropped
        during the burst; the client retries them after 1 s, which shows in the latency tail."""),
    code("""
        burst = an.select(df, profile="cold-burst", target="forge-ref")
        if an.have(burst, "cold-burst"):
            bursts = an.burst_table(burst)
            display(bursts)"""),
    code("""
        if an.have(burst, "cold-burst"):
            fig, axes = plt.subplots(1, 2, figsize=(13, 4))
            bursts[["db_queries", "decryptions", "services_built", "upstream_model_list_requests",
                    "coalesced_waits"]].T.plot.bar(ax=axes[0], rot=20, title="Loads during the burst (totals)")
            bursts[an.PERCENTILES].T.plot.bar(ax=axes[1], rot=0, title="Latency during the burst (ms)")
            fig.tight_layout()"""),
]

CONSISTENCY = intro("Consistency under churn", """
    A cache is only safe if every write reaches every cache holding what it made stale. The `churn`
    profile runs normal traffic alongside a writer that revokes and restores provider keys, moves a
    key's `base_url` away and back, and resets Forge keys; after each write it waits the allowed
    staleness window (`settings.stale_bound_s`) and checks with a request that must see the write. A
    check that does not is a *stale response*. With one process the window is 0: invalidation happens
    inside the write. With several, each process has its own caches and learns of writes by polling the
    invalidation log (SQLite) or by Redis pub/sub, so the window is a few poll intervals.""") + [
    md("""
        ## Checked reads after writes

        Every churn result in the directory (all runs, so runs with different process counts or backends
        sit side by side). `writes` counts the writer's requests, `invalidations` the cache entries they
        dropped, `db_background_queries` the polling of the invalidation log (not charged to requests).
        These files record the allowed window and the verdicts, not each read's own lag."""),
    code("""
        churn = an.select(df, profile="churn", target="forge-ref", run=None)
        if an.have(churn, "churn"):
            checks = an.churn_table(churn)
            display(checks.set_index("file").drop(columns="name"))"""),
    code("""
        if an.have(churn, "churn"):
            shown = checks.set_index("name")
            fig, axes = plt.subplots(1, 2, figsize=(14, 0.6 * len(shown) + 2.5), sharey=True)
            shown[["fresh", "stale_responses"]].plot.barh(stacked=True, ax=axes[0], color=["tab:green", "tab:red"],
                                                          title="checked reads after a write")
            shown[["writes", "invalidations", "db_background_queries"]].plot.barh(ax=axes[1], title="counts")
            axes[0].set_ylabel("")
            fig.tight_layout()"""),
    md("""
        ## What churn costs the other requests

        Latency by endpoint in the latest churn run: writes (`PUT /v1/provider-keys/…`, `reset-key`), the
        writer's verification reads (`[verify]`, which include the wait of the window), and the normal
        traffic whose caches the writes keep invalidating."""),
    code("""
        latest = an.select(df, profile="churn", target="forge-ref")
        if an.have(latest, "churn"):
            eps = an.endpoints(latest).set_index("name")
            display(eps[["method", "requests", "failures", "p50_ms", "p90_ms", "p99_ms", "max_ms"]])
            ax = eps[["p50_ms", "p90_ms", "p99_ms"]].plot.barh(figsize=(9, 0.45 * len(eps) + 1.5),
                                                              title="churn: latency by endpoint (ms)")
            ax.invert_yaxis()
            ax.set_ylabel("")"""),
    md("""
        ## Across processes

        With `--processes N` (N > 1) the server is unpinned, each process keeps its own caches, and a
        write must reach the others through the invalidation log within the window. Only runs with more
        than one process test that."""),
    code("""
        multi = churn[churn["processes"] > 1] if len(churn) else churn
        if an.have(multi, "churn-processes"):
            display(an.churn_table(multi).set_index("file").drop(columns="name"))"""),
]

PEERS = intro("forge-ref against its peers; upstream clients; latency at concurrency 1", """
    Baselines put forge-ref's numbers in context: `mock-direct` is Locust against the mock provider
    itself (no gateway: the ceiling), `bare-proxy-curl` / `bare-proxy-httpx` a minimal Tornado proxy
    that forwards with no authentication, routing or translation (the floor of any Tornado gateway), and
    LiteLLM's proxy a peer gateway, when a run included it. `forge-ref-httpx` is forge-ref with httpx
    instead of Tornado's curl client upstream.""") + [
    md("""
        ## Throughput and CPU per request (`steady`)

        CPU per request is that of the process under test (for `mock-direct`, the mock itself).
        Throughput compares the servers only where *server_busy* is near 1.0 (see notebook 01)."""),
    code("""
        steady = an.select(df, profile="steady")
        peers = steady[((steady["target"] != "forge-ref") | steady["config"].isin(["all", "none"]))
                       & (steady["variant"] == "")]
        if an.have(peers[peers["target"] != "forge-ref"], "baselines"):
            targets = an.summary(peers, by="long_label")[["rps", "server_busy", "cpu_ms", "p50_ms", "p99_ms",
                                                        "failures"]]
            display(targets)
            ratios = an.relative(targets, "bare-proxy-curl", ["rps", "cpu_ms", "p50_ms"])
            if ratios is not None:
                display(ratios)"""),
    code("""
        if an.have(peers[peers["target"] != "forge-ref"], "baselines"):
            fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(targets) + 2.5), sharey=True)
            targets["rps"].plot.barh(ax=axes[0], title="throughput (requests/s)")
            targets["cpu_ms"].plot.barh(ax=axes[1], title="CPU per request of the process under test (ms)")
            targets[["p50_ms", "p99_ms"]].plot.barh(ax=axes[2], title="latency (ms)")
            axes[0].invert_yaxis()
            axes[0].set_ylabel("")
            fig.tight_layout()"""),
    md("""
        ## LiteLLM

        The peer gateway against the same mock, from the latest run that holds both it and forge-ref."""),
    code("""
        pair = an.select(df, profile="steady", target=["forge-ref", "litellm"], need=["forge-ref", "litellm"])
        pair = pair[pair["config"].isin(["all", "n/a"]) & (pair["variant"] == "")] if len(pair) else pair
        if an.have(pair[pair["target"] == "litellm"] if len(pair) else pair, "litellm"):
            versus = an.summary(pair, by="long_label")[["rps", "server_busy", "cpu_ms", "p50_ms", "p99_ms", "failures"]]
            display(versus)
            ratios = an.relative(versus, "litellm", ["rps", "cpu_ms", "p50_ms"])
            if ratios is not None:
                display(ratios)"""),
    md("""
        ## Upstream client: httpx against Tornado's curl client

        The same gateway (every layer on) and the same bare proxy with each client. The upstream client is
        most of a proxied request's CPU, which is why it is a setting (`--upstream-client`)."""),
    code("""
        clients = steady[steady["target"].isin(["forge-ref", "forge-ref-httpx", "bare-proxy-curl", "bare-proxy-httpx"])
                         & steady["config"].isin(["all", "n/a"]) & (steady["variant"] == "")]
        if an.have(clients[clients["target"] != "forge-ref"], "baselines"):
            by_client = an.summary(clients, by="long_label")[["cpu_ms", "rps", "server_busy", "p50_ms", "p99_ms"]]
            display(by_client)
            ax = by_client["cpu_ms"].plot.barh(figsize=(8, 0.5 * len(by_client) + 1.5),
                                               title="CPU per request by upstream client (ms)")
            ax.invert_yaxis()
            ax.set_ylabel("")"""),
    md("""
        ## Latency at concurrency 1 (`latency-c1`)

        One connection, sequential requests, timed in process with microsecond precision (not Locust's
        millisecond buckets): what each hop adds when nothing queues. forge-ref minus the bare proxy is
        forge-ref's own work per request; the bare proxy minus mock-direct is the cost of any proxy hop."""),
    code("""
        c1 = an.select(df, profile="latency-c1")
        if an.have(c1, "latency-c1"):
            c1_ladder = an.ladder(c1, by="long_label")
            added = an.relative(c1_ladder, "mock-direct", ["p50_ms", "p99_ms"], how="diff")
            display(c1_ladder if added is None else c1_ladder.join(added))
            ax = c1_ladder.T.plot(marker="o", figsize=(8, 4.5), ylabel="ms",
                                  title="latency-c1: percentile ladder (ms, log scale)")
            an.plain_log(ax)"""),
]

BACKENDS = intro("Backends: what a cache hit replaces, on SQLite, PostgreSQL, memory and Redis", """
    What a layer saves is the cost of what its hit replaces, and that depends on the backend: an
    indexed SQLite look-up is a library call in the process, a PostgreSQL look-up a network round trip;
    an in-process cache hit is a dict access, a Redis hit a round trip plus decoding.
    `python -m benchmarks.micro` times each of these operations through forge-ref's own code, one at a
    time, in one process. Micro results are looked for in the results directory and in a sibling
    `sample_micro/` (where the committed sample keeps its micro result).""") + [
    md("""
        ## Per-operation costs

        From the micro result with the most operations measured (Redis and PostgreSQL need their servers;
        the latest such file): best of the repeats (the minimum filters a shared machine's noise), with the
        median of the repeats as a tick; log scale, because the operations differ by orders of magnitude."""),
    code("""
        micro = an.load_micro(RESULTS)
        costs = an.micro_costs(micro)
        if an.have(micro, "micro"):
            display(Markdown(an.provenance(micro.tail(1), micro["dir"].iloc[-1])))
            display(costs)"""),
    code("""
        if an.have(micro, "micro"):
            ax = costs.set_index("what")["us_per_op"].plot.barh(figsize=(9, 3.8), label="best of repeats",
                                                                title="µs per operation (log scale)")
            ax.plot(costs["median_us"].values, range(len(costs)), "k|", markersize=14, label="median of repeats")
            an.plain_log(ax, "x")
            ax.set(xlabel="µs", ylabel="")
            ax.legend()"""),
    md("""
        The same costs relative to an in-process hit, and as a share of the server CPU one proxied request
        costs with every layer on (from the `steady` result of the results directory)."""),
    code("""
        if an.have(micro, "micro"):
            per_request = an.select(df, profile="steady", target="forge-ref", config="all")
            scale = costs[["what", "us_per_op"]].assign(
                x_in_process_hit=costs["us_per_op"] / costs.loc["in_process_hit", "us_per_op"])
            if len(per_request):
                request_us = 1000 * per_request["server.cpu_ms_per_request"].iloc[-1]
                scale["% of a proxied request's CPU"] = 100 * costs["us_per_op"] / request_us
                display(Markdown(f"One proxied request (`steady`, `all`): {request_us:,.0f} µs of server CPU."))
            display(scale)"""),
    md("""
        ## Where Redis pays off, and where it costs

        *Pays off:* a Redis-backed layer is shared. Every process of every node sees one copy, so a user row
        or a provider's model list is loaded once for the fleet instead of once per process (for model lists
        that is the provider's latency and quota), and a write reaches every process and node at once by
        pub/sub, where in-process caches of several nodes could not be invalidated at all. Gateway processes
        can restart without starting cold.

        *Costs:* a Redis hit is a network round trip plus decoding where an in-process hit is a dict access
        (the ratio is in the table above). That is why forge-ref keeps a small in-process L1 in front of Redis
        (a short TTL, dropped on every invalidation message), and why ProviderService objects and decrypted
        provider keys stay in process: they would cost a round trip on every request, and no plaintext key
        should leave the process. With one process on one node, in-process caches are strictly cheaper; Redis
        is for several processes or nodes.

        The same reasoning for stores: on SQLite a look-up is cheap, so the `user` and `service` layers save
        little CPU; on PostgreSQL each look-up is a round trip, and these layers remove it from every request."""),
    md("""
        ## What the layers save, priced per store

        DB queries and decryptions per request of each `steady` configuration, priced with the micro costs
        of each store: the load results' measured counts × the measured cost of one operation. An estimate
        of the work the layers remove, not a measured run on that store."""),
    code("""
        priced = an.lookup_cost_model(an.select(df, profile="steady", target="forge-ref"), costs)
        if priced is not None and len(priced):
            display(priced)
            ax = priced.plot.barh(figsize=(8, 0.5 * len(priced) + 1.5),
                                  title="DB look-ups + decryptions per request, priced per store (µs)")
            ax.invert_yaxis()
            ax.set_ylabel("")
        else:
            display(Markdown("Needs both `steady` forge-ref results and micro results."))"""),
    md("""
        ## Load runs with a store or cache-backend dimension

        If the directory holds forge-ref results on more than one store or cache backend (read from
        `settings.store` / `settings.cache_backend`, from `FORGE_DB` / `FORGE_CACHE_BACKEND` in
        `settings.server_env`, or from a `redis` / `postgres` variant), the per-layer comparison of notebook 01
        is repeated per backend."""),
    code("""
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
                f"`{an.COMMANDS['micro']}`."))"""),
]

NOTEBOOKS = {
    "01_cache_layers.ipynb": CACHE_LAYERS,
    "02_scaling.ipynb": SCALING,
    "03_consistency.ipynb": CONSISTENCY,
    "04_peers_and_clients.ipynb": PEERS,
    "05_backends.ipynb": BACKENDS,
}


def notebook(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    })
    stem = name.split("_")[0]
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell["id"] = f"nb{stem}-{i:02d}"  # stable ids: regenerating gives identical files
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(notebook(name)) + "\n"


def main() -> None:
    for name in NOTEBOOKS:
        (HERE / name).write_text(render(name))
        print(f"wrote notebooks/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
