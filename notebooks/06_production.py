# %%
# The results this notebook reads: $FORGE_RESULTS_DIR if set, else results/ if it holds result files, else
# the committed sample tests/data/sample_results/. To read others, start JupyterLab with FORGE_RESULTS_DIR=DIR
# (`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`), or name them here: RESULTS = an.results_dir("DIR").
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from benchmarks import analysis as an
from benchmarks import production_report as pr

RESULTS = an.results_dir()
df = an.start(RESULTS)

# %% [markdown]
# # Under production-like conditions
#
# `python -m benchmarks production` measures the gateway where the caching design is meant to
# matter: a provider that takes hundreds of milliseconds to its first token and streams for seconds,
# thousands of streams open at once, a database a network hop away, and a rate-limited model list.
# Everything is simulated on one machine (the mock's timing model, a TCP delay proxy in front of
# PostgreSQL), and each result file states its conditions. Every figure of forge-ref is set against
# mock-direct under the same load (*added*). Production results are looked for in the results
# directory and in a sibling `sample_production/` (a tiny real run kept with the committed sample:
# too small to judge anything, there so this notebook always has something to draw).

# %%
docs = pr.latest(an.load_production(RESULTS))
if docs:
    lines = [f"Run `{docs[0]['run_id']}`, {len(docs)} result files"
             + (" (`--quick`: shapes only, too small to judge)" if docs[0]["settings"].get("quick") else "") + "."]
    for phase in ("streams", "db"):
        d = next((d for d in docs if d["settings"]["production"]["phase"] == phase and d["target"] == "forge-ref"),
                 None)
        if d:
            lines.append(f"- `{phase}`: {d['settings']['production']['conditions']}; {pr.where(d)}.")
    display(Markdown("\n".join(lines)))
else:
    display(Markdown(f"No production results here or in a sibling `sample_production/`: run `{pr.COMMAND}`."))

# %% [markdown]
# ## The targets and the design's claims
#
# Verdicts from `benchmarks/production_report.py`, the same code that writes the section of RESULTS.md.

# %%
if docs:
    head = ["target", "conditions", "measured", "verdict"]
    display(pd.DataFrame(pr.targets(docs), columns=head))
    display(pd.DataFrame(pr.claims(docs), columns=["claim", "conditions", "measured", "verdict"]))

# %% [markdown]
# ## Streams held open (`long-streams`)
#
# Every user holds one stream open, so the user count is the number of concurrent streams. Added time
# to first token and added inter-chunk gap (a stream's mean gap between chunks, p50 and p99 over the
# streams) against that count; RSS per open stream is the server's peak RSS minus its RSS at start,
# divided by the streams. The dotted line is the 50 ms a core may add to TTFT p99 while it "holds"
# the streams.

# %%
streams = pd.DataFrame(pr.streams(docs)) if docs else pd.DataFrame()
if not streams.empty:
    display(streams)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for target, rows in streams.groupby("target"):
        rows = rows.sort_values("streams")
        axes[0].plot(rows["streams"], rows["added_ttft_p99_ms"], "o-", label=f"{target} p99")
        axes[0].plot(rows["streams"], rows["added_ttft_p50_ms"], "o--", label=f"{target} p50")
        axes[1].plot(rows["streams"], rows["added_icd_p99_ms"], "o-", label=f"{target} p99")
        axes[1].plot(rows["streams"], rows["added_icd_p50_ms"], "o--", label=f"{target} p50")
        axes[2].plot(rows["streams"], rows["rss_kb_per_stream"], "o-", label=target)
    axes[0].axhline(pr.TTFT_LIMIT_MS, color="grey", linestyle=":")
    for ax, title in zip(axes, ("added TTFT, ms", "added inter-chunk gap, ms", "RSS per open stream, KB")):
        ax.set_title(title)
        ax.set_xlabel("concurrent streams")
        ax.legend(fontsize="small")
    held = pr.held(pr.streams(docs))
    display(Markdown(f"Streams held before added TTFT p99 passes {pr.TTFT_LIMIT_MS:g} ms: "
                     + (f"**{held:,}**." if held else "none of the levels measured.")))

# %% [markdown]
# ## A chat application (`realistic-chat`): time to first token and model-list 429s
#
# Users think between turns, stream most answers and list the models now and then; the mock limits
# model listing per key. With `models` off every list goes upstream (a refused provider is remembered
# as failed for `FORGE_MODELS_FAILURE_TTL`); with it on, the warm-up's list is the last call.

# %%
chat = pd.DataFrame(pr.chat(docs)) if docs else pd.DataFrame()
if not chat.empty:
    display(chat)
    names = chat["target"] + " " + chat["config"].where(chat["target"] == "forge-ref", "")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    axes[0].barh(names, chat["ttft_p99_ms"].fillna(0), label="p99")
    axes[0].barh(names, chat["ttft_p50_ms"].fillna(0), label="p50")
    axes[0].set_title("time to first token, ms")
    axes[0].legend()
    axes[1].barh(names, chat["models_429_per_hour"].fillna(0))
    axes[1].set_title("model-list 429s per hour (at this load)")

# %% [markdown]
# ## Latency and throughput against the round trip to PostgreSQL
#
# At concurrency 1 (the runner's probe: one connection, sequential, µs timing) the added p50 shows each
# DB round trip a configuration leaves on the hot path; under `agent-loop`'s load, throughput and pool
# waits (10 connections per process) show what those round trips cost when requests queue for them.

# %%
db = pd.DataFrame(pr.db(docs)) if docs else pd.DataFrame()
if not db.empty:
    display(db)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), layout="constrained")
    for config, rows in db[db["profile"] == "latency-c1"].groupby("config"):
        rows = rows.sort_values("db_rtt_ms")
        axes[0].plot(rows["db_rtt_ms"], rows["added_p50_ms"], "o-", label=config)
        axes[1].plot(rows["db_rtt_ms"], rows["added_p99_ms"], "o-", label=config)
    for config, rows in db[db["profile"] == "agent-loop"].groupby("config"):
        rows = rows.sort_values("db_rtt_ms")
        axes[2].plot(rows["db_rtt_ms"], rows["rps"], "o-", label=config)
    for ax, title in zip(axes, ("added p50 at concurrency 1, ms", "added p99 at concurrency 1, ms",
                                "agent-loop requests/s")):
        ax.set_title(title)
        ax.set_xlabel("round trip to PostgreSQL, ms")
        ax.legend(fontsize="x-small")
