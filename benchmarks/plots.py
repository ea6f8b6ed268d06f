"""The charts of the notebooks and of ``python -m benchmarks report``, drawn one way.

Results are drawn as horizontal bars, one row per result, read top to bottom in the order the
frame gives (configurations from ``none`` to ``all``), so that long configuration names stay
readable; panels side by side share those rows. Frames arrive selected, ordered and named by
their callers (``benchmarks.analysis``, ``benchmarks.report``): this module only draws.

    fig = plots.panels([plots.Panel(table[["db_queries", "decryptions"]], "count per request", "Costs"),
                        plots.Panel(table["cpu_ms"], "ms per request", "Server CPU")],
                       title="steady: what each cache configuration costs")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from forge_ref.settings import LAYERS

STYLE = {"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True, "axes.titlesize": 10,
         "axes.labelsize": 9, "legend.fontsize": 8, "font.family": "DejaVu Sans", "svg.hashsalt": "forge-ref"}

# Series names as a reader says them, and one colour per cost wherever it appears.
NAMES = {"db_queries": "DB queries", "decryptions": "decryptions", "services_built": "services built",
         "adapters_built": "adapters built", "model_list_calls": "model-list calls",
         "provider_calls": "all provider calls",
         "upstream_model_list_requests": "model-list calls", "coalesced_waits": "coalesced waits",
         "rps": "requests/s", "cpu_ms": "server CPU", "p50_ms": "p50", "p90_ms": "p90", "p99_ms": "p99",
         "max_ms": "max", "fresh": "fresh", "stale_responses": "stale", "peak_rss_mb": "peak RSS",
         "invalidations": "cache entries invalidated", "db_background_queries": "background DB queries (polling)"}
COLORS = {"DB queries": "tab:blue", "decryptions": "tab:orange", "services built": "tab:green",
          "adapters built": "tab:purple", "model-list calls": "tab:cyan", "all provider calls": "tab:brown",
          "p50": "tab:blue", "p90": "tab:olive", "p99": "tab:red", "max": "tab:gray", "fresh": "tab:green",
          "stale": "tab:red", "user": "tab:blue", "service": "tab:orange", "models": "tab:green",
          "coalescing on": "tab:blue", "coalescing off": "tab:red", "no layer to coalesce": "tab:gray",
          "added to none": "tab:blue", "added last, to all the others": "tab:orange"}


def style() -> None:
    matplotlib.rcParams.update(STYLE)


# Results made before the ``responses`` layer existed name their configurations among these five.
EARLIER_LAYERS = tuple(x for x in LAYERS if x != "responses")


def config_name(label: str) -> str:
    """``user,service,keys,models,responses [bounded]`` → ``all but adapters [bounded]``: a configuration
    with one layer off reads best as the layer it lacks (``user,service,keys,models``, from before the
    ``responses`` layer, too). Other labels are returned as they are."""
    config, bracket, rest = label.partition(" [")
    layers = set(config.split(","))
    for known in (LAYERS, EARLIER_LAYERS):
        if len(layers) == len(known) - 1 and layers < set(known):
            config = "all but " + next(x for x in known if x not in layers)
            break
    return config + bracket + rest


@dataclass
class Panel:
    """One chart: ``frame``'s rows are bars (top first), its columns the series (a Series is one)."""

    frame: pd.DataFrame | pd.Series
    xlabel: str
    title: str = ""
    log: bool = False  # a log x axis labelled in plain numbers
    ref: float | None = None  # a vertical line: 0 under differences, 1 under ratios
    stacked: bool = False

    def data(self) -> pd.DataFrame:
        frame = self.frame.to_frame() if isinstance(self.frame, pd.Series) else self.frame
        return frame.rename(columns=lambda c: NAMES.get(c, c), index=lambda i: config_name(str(i)))


def _number(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _bars(ax, panel: Panel, legend: bool = True) -> None:
    frame = panel.data()
    series = list(frame.columns)
    colors = [COLORS.get(s) for s in series]
    frame.plot.barh(ax=ax, stacked=panel.stacked, width=0.8, legend=False,
                    color=colors if all(colors) else None)
    if not ax.yaxis_inverted():  # the frame's first row on top (axes that share y are inverted once)
        ax.invert_yaxis()
    ax.set(xlabel=panel.xlabel, ylabel="")
    ax.grid(axis="y", visible=False)
    if panel.log:
        plain_log(ax, "x")
    if panel.ref is not None:
        ax.axvline(panel.ref, color="black", lw=0.8)
    if len(series) == 1 or panel.stacked:  # the numbers, where they do not crowd the bars
        values = frame.sum(axis=1) if panel.stacked else frame.iloc[:, 0]
        for y, value in enumerate(values):
            if pd.notna(value):
                ax.annotate(_number(value), (value, y), va="center", fontsize=7, textcoords="offset points",
                            ha="right" if value < 0 else "left", xytext=(-5 if value < 0 else 5, 0))
        if panel.log:
            ax.margins(x=0.18)
        else:  # room for the numbers; set explicitly, as pandas fixes the limits of stacked bars
            lo, hi = ax.get_xlim()
            pad = 0.15 * (hi - lo)
            ax.set_xlim(lo - pad * (values.min() < 0), hi + pad * (values.max() > 0))
    if legend and len(series) > 1:  # between the title and the bars, where it covers nothing
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(2, len(series)), frameon=False)
    ax.set_title(panel.title, pad=4 + (14 * -(-len(series) // 2) if legend and len(series) > 1 else 0))


def _shared_legend(fig, axes) -> None:
    """One legend under the figure for charts that all show the same series."""
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)


def _height(rows: int, series: int) -> float:
    return 1.6 + rows * (0.2 + 0.12 * series)


def panels(charts: list[Panel], title: str, width: float | None = None) -> Figure:
    """Charts side by side, sharing their rows (the first chart's row labels stand for all)."""
    import matplotlib.pyplot as plt

    rows = max(len(c.data()) for c in charts)
    series = max(1 if c.stacked else len(c.data().columns) for c in charts)
    fig, axes = plt.subplots(1, len(charts), figsize=(width or 3.6 * len(charts) + 2.4, _height(rows, series)),
                             sharey=True, squeeze=False, layout="constrained")
    names = [list(c.data().columns) for c in charts]
    shared = len(names[0]) > 1 and all(n == names[0] for n in names)
    for ax, chart in zip(axes[0], charts):
        _bars(ax, chart, legend=not shared)
    if shared:
        _shared_legend(fig, axes[0])
    fig.suptitle(title, fontsize=11)
    return fig


def grid(charts: dict[str, pd.DataFrame], xlabel: str, title: str, order: list[str], ncols: int = 3) -> Figure:
    """Small multiples: one chart per key (e.g. a profile), every chart with the rows of ``order``
    (missing ones stay empty) and one shared x axis, so that bars compare across charts."""
    import matplotlib.pyplot as plt

    ncols = min(ncols, len(charts))
    nrows = -(-len(charts) // ncols)
    series = max(len(f.columns) for f in charts.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 2.4, nrows * _height(len(order), series)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for ax, (name, frame) in zip(axes.flat, charts.items()):
        _bars(ax, Panel(frame.reindex(order), xlabel, name), legend=False)
        ax.tick_params(axis="x", labelbottom=True)
    for ax in axes.flat[len(charts):]:
        ax.set_visible(False)
    if series > 1:
        _shared_legend(fig, axes.flat)
    fig.suptitle(title, fontsize=11)
    return fig


COSTS = ["db_queries", "decryptions", "services_built", "adapters_built"]


def configurations(table: pd.DataFrame, title: str) -> Figure:
    """Per cache configuration (rows of :func:`benchmarks.analysis.summary`): costs, CPU, throughput, latency."""
    return panels([Panel(table[[c for c in COSTS if c in table]], "count per request", "Costs per request"),
                   Panel(table["cpu_ms"], "ms per request", "Server CPU per request"),
                   Panel(table["rps"], "requests/s", "Throughput"),
                   Panel(table[["p50_ms", "p99_ms"]], "ms", "Latency")], title)


def targets(table: pd.DataFrame, title: str) -> Figure:
    """Per target (forge-ref, its baselines and peers): throughput, CPU of the process under test, latency."""
    return panels([Panel(table["rps"], "requests/s", "Throughput"),
                   Panel(table["cpu_ms"], "ms per request", "CPU of the process under test"),
                   Panel(table[["p50_ms", "p99_ms"]], "ms", "Latency")], title)


def sweep(table: pd.DataFrame, metrics: dict[str, str], title: str, xlabel: str,
          expected: dict[str, str] | None = None, expected_label: str = "expected") -> Figure:
    """A setting swept (such as the DB round trip): one chart per metric (``metrics``: column -> chart title),
    the values of ``table``'s second index level across, one line per value of its first (a configuration).
    ``expected``: metric -> a column drawn dashed in the same colour, what the metric is read against
    (``expected_label`` in the legend)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.0, 3.4), squeeze=False,
                             layout="constrained")
    series = list(dict.fromkeys(table.index.get_level_values(0)))
    for ax, (column, name) in zip(axes[0], metrics.items()):
        wide = table[column].unstack(level=0)[series]
        low = float(wide.min().min())
        for i, label in enumerate(series):
            color = f"C{i}"
            ax.plot(wide.index, wide[label], marker="o", color=color, label=config_name(str(label)))
            if expected and column in expected:
                guide = table[expected[column]].unstack(level=0)[label]
                ax.plot(guide.index, guide, ls="--", color=color, alpha=0.7)
                low = min(low, float(guide.min()))
        ax.set(xlabel=xlabel, title=name)
        ax.set_xticks(wide.index)
        ax.set_ylim(bottom=min(0.0, low))  # from 0: how much, not only which way
    handles, labels = axes[0][0].get_legend_handles_labels()
    if expected:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="--", color="gray"))
        labels.append(expected_label)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def ladder(ax, table: pd.DataFrame, title: str) -> None:
    """Latency percentiles (columns ``p50_ms`` … ``max_ms``) as one line per row, on a log scale."""
    shown = table.rename(columns=lambda c: NAMES.get(c, c), index=lambda i: config_name(str(i))).T
    shown.plot(ax=ax, marker="o", title=title)
    ax.set(xlabel="percentile", ylabel="ms (log scale)")
    ax.set_xticks(range(len(shown.index)), shown.index)
    plain_log(ax)
    ax.legend(title=None, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)


def heatmap(ax, frame: pd.DataFrame, label: str, title: str = "", fmt: str = "{:,.0f}") -> None:
    """A table as colours with its numbers written in: rows of ``frame`` down, columns across."""
    shown = frame.rename(columns=lambda c: config_name(str(c)))
    image = ax.imshow(shown.to_numpy(dtype=float), aspect="auto", cmap="Blues")
    ax.set_xticks(range(len(shown.columns)), shown.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(shown.index)), shown.index)
    ax.grid(False)
    top = float(pd.DataFrame(shown).max().max())
    for (i, j), value in pd.DataFrame(shown.to_numpy()).stack().items():
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                color="white" if value > 0.6 * top else "black")
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    ax.set_title(title)


def plain_log(ax, axis: str = "y") -> None:
    """A log scale labelled 0.5, 1, 2, 10, 300 rather than 5×10⁻¹: these axes are read as µs and ms."""

    def label(v: float, _) -> str:  # label 1, 2 and 5 of each decade only, or minor labels crowd
        return f"{v:g}" if v > 0 and f"{v:.0e}"[0] in "125" else ""

    fmt = FuncFormatter(label)
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_formatter(fmt)
    target.set_minor_formatter(fmt)


def save(fig: Figure, path: Path) -> None:
    """A PNG without a timestamp, so that the same results give the same bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
