"""benchmarks.plots: the names a reader sees, and how charts are laid out."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from benchmarks import plots

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_config_names_read_as_the_layer_a_configuration_lacks():
    assert plots.config_name("user,service,keys,models [bounded]") == "all but adapters [bounded]"
    assert plots.config_name("service,keys,models,adapters") == "all but user"
    assert plots.config_name("user,service,keys,models,adapters") == "all but responses"
    assert plots.config_name("service,keys,models,adapters,responses") == "all but user"
    assert plots.config_name("user,service,keys") == "user,service,keys"
    assert plots.config_name("all [postgres+redis]") == "all [postgres+redis]"


def test_panels_draw_rows_top_down_with_one_shared_legend():
    table = pd.DataFrame({"db_queries": [2.0, 0.0], "decryptions": [3.0, 0.0], "cpu_ms": [0.7, 0.4]},
                         index=["none", "user,service,keys,models"])
    fig = plots.panels([plots.Panel(table[["db_queries", "decryptions"]], "count per request", "Costs"),
                        plots.Panel(table[["db_queries", "decryptions"]], "count per request", "Again")], "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["none", "all but adapters"]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # inverted: the first row on top
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["DB queries", "decryptions"]
    assert all(a.get_legend() is None for a in fig.axes)
    single = plots.panels([plots.Panel(table["cpu_ms"], "ms", "CPU")], "t")
    assert [t.get_text() for t in single.axes[0].texts] == ["0.7", "0.4"]  # a single series is labelled


def test_sweep_draws_a_line_per_configuration_and_its_expectation_dashed():
    index = pd.MultiIndex.from_tuples([("none", 0.0), ("none", 2.0), ("all", 0.0), ("all", 2.0)],
                                      names=["series", "db_rtt_ms"])
    table = pd.DataFrame({"p50_ms": [10.0, 15.0, 6.0, 6.0], "added_p50_ms": [0.0, 5.0, 0.0, 0.0],
                          "db_wait_ms": [0.0, 4.0, 0.0, 0.0]}, index=index)
    fig = plots.sweep(table, {"p50_ms": "p50", "added_p50_ms": "added"}, "t", "DB round trip (ms)",
                      expected={"added_p50_ms": "db_wait_ms"}, expected_label="queries × round trip")
    plain, guided = fig.axes
    assert [line.get_label() for line in plain.get_lines()] == ["none", "all"]  # the table's order, not sorted
    assert [list(line.get_ydata()) for line in plain.get_lines()] == [[10.0, 15.0], [6.0, 6.0]]
    dashed = [line for line in guided.get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_ydata()) for line in dashed] == [[0.0, 4.0], [0.0, 0.0]]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["none", "all", "queries × round trip"]
    assert plain.get_ylim()[0] == 0.0
