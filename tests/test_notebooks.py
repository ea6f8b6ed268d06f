"""The notebooks: their sources are plain Python in jupytext's percent format (``notebooks/0N_*.py``),
lint-clean and in the form jupytext writes back, and each one, built into a notebook, runs top to
bottom (nbclient, a real kernel) and draws at least one figure.

The experiment notebook (08) runs a real experiment through ``benchmarks.api``: here four jobs of two
seconds on PostgreSQL, direct and 2 ms away, into a temporary directory (about a minute).

The others read results. They run twice: against the committed sample (``tests/data/sample_results``,
the default a fresh checkout sees) and against a directory that adds, to copies of the sample, the
result kinds the sample lacks (many-tenants, multi-process churn, LiteLLM, histograms, one-layer pairs,
Redis and PostgreSQL variants, production runs from ``tests/data/sample_production``), so the branches
that plot them run too. Those additions are made-up numbers for this test only.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SAMPLE = REPO / "tests" / "data" / "sample_results"
SAMPLE_MICRO = REPO / "tests" / "data" / "sample_micro"
SAMPLE_PRODUCTION = REPO / "tests" / "data" / "sample_production"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9]*.py"))
EXPERIMENT = "08_experiment.py"
READERS = [n for n in NAMES if n != EXPERIMENT]  # the notebooks that read result files
KERNEL = "forge-ref-test-python3"
TIMEOUT = 120  # seconds per cell; a whole notebook takes a few seconds


def test_the_notebooks_exist():
    assert NAMES == ["01_cache_layers.py", "02_scaling.py", "03_consistency.py", "04_peers_and_clients.py",
                     "05_backends.py", "06_production.py", "07_future_work.py", "08_experiment.py"]


@pytest.mark.parametrize("name", NAMES)
def test_source_is_what_jupytext_writes_back(name):
    """Saving the notebook from JupyterLab (jupytext pairs it, see notebooks/jupytext.toml) must not
    rewrite its source: no header, cells in canonical percent form."""
    source = (NOTEBOOKS / name).read_text()
    nb = jupytext.reads(source, fmt="py:percent")
    nbformat.validate(nb)
    assert {c.cell_type for c in nb.cells} == {"markdown", "code"}
    assert jupytext.writes(nb, fmt="py:percent") == source


def test_sources_are_lint_clean():
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           str(NOTEBOOKS)], cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


# --- executing them ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel spec that runs this interpreter (the venv's, with its ipykernel), found first on
    JUPYTER_PATH, so no user- or system-wide ``python3`` spec can take its place."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "forge-ref tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.delenv("FORGE_RESULTS_DIR", raising=False)
        yield KERNEL


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """Copies of the sample plus the kinds of result it lacks (see the module docstring)."""
    out = tmp_path_factory.mktemp("results")
    docs = {}
    for path in sorted(SAMPLE.glob("*.json")) + sorted(SAMPLE_MICRO.glob("*.json")):
        shutil.copy(path, out / path.name)
        doc = json.loads(path.read_text())
        docs.setdefault((doc.get("profile"), doc.get("target"), doc.get("config"), doc.get("variant")), doc)
    steady_all, steady_none = docs[("steady", "forge-ref", "all", "")], docs[("steady", "forge-ref", "none", "")]

    def variant(doc: dict, run: str | None = None, **changes) -> dict:
        """A copy of ``doc`` with ``a__b=value`` changes, saved as a later file of the same run (or of ``run``)."""
        new = copy.deepcopy(doc)
        new["run_id"] = run or new["run_id"]
        for key, value in changes.items():
            where = new
            *path, last = key.split("__")
            for part in path:
                where = where.setdefault(part, {})
            where[last] = value
        files = len(list(out.glob("*.json")))
        (out / f"20991231T{files:06d}Z_synthetic.json").write_text(json.dumps(new))  # sorts after the sample
        return new

    for doc in (steady_all, steady_none):  # Redis- and PostgreSQL-backed variants of the same run
        variant(doc, variant="redis", settings__server_env={"FORGE_CACHE_BACKEND": "redis"})
        variant(doc, variant="postgres", settings__store="postgresql://127.0.0.1/bench")
    hist = {"3": 10, "5": 50, "8": 30, "13": 9, "27": 1}  # Locust's histogram: ms -> count
    for doc, config, changes in ((steady_none, "user", {"per_request__db_queries": 1.0}),  # one-layer pairs
                                 (steady_all, "user,service,models,adapters", {"server__cpu_ms_per_request": 0.7})):
        variant(doc, config=config, locust__endpoints=[dict(doc["locust"]["endpoints"][0], response_times=hist)],
                **changes)
    mixed = docs[("mixed", "forge-ref", "all", "")]
    for i, (tenants, bound) in enumerate([(10_000, None), (10_000, "100"), (100_000, "1000")]):
        variant(mixed, f"20991231T00000{i}Z_synthetic", profile="many-tenants", settings__tenants=tenants,
                variant="bounded" if bound else "", settings__server_env={"FORGE_USER_MAX": bound} if bound else {},
                caches__user__evictions=0 if not bound else tenants // 2)
    variant(docs[("churn", "forge-ref", "all", "")], settings__processes=2, settings__stale_bound_s=0.3,
            settings__pinning__server=None)
    variant(docs[("steady", "bare-proxy-curl", "n/a", "")], target="litellm")
    # production: the tiny real run, plus LiteLLM and two more concurrency levels of long-streams
    prod = {}
    for path in sorted(SAMPLE_PRODUCTION.glob("*.json")):
        shutil.copy(path, out / path.name)
        doc = json.loads(path.read_text())
        prod[(doc["profile"], doc["target"])] = doc
    streams = prod[("long-streams", "forge-ref")]
    variant(streams, target="litellm", config="n/a")
    for n in (200, 2000):
        for doc in (prod[("long-streams", "mock-direct")], streams):
            variant(doc, variant=f"c{n}", settings__users=n)
    return out


def _execute(name: str, results: Path, kernel_name: str, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("FORGE_RESULTS_DIR", str(results))  # the kernel inherits this process's environment
    nb = jupytext.read(NOTEBOOKS / name)  # what `jupytext --to ipynb` builds, without writing it
    NotebookClient(nb, timeout=TIMEOUT, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on any cell error
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def _check(nb: nbformat.NotebookNode, name: str) -> str:
    outputs = _outputs(nb)
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} drew no figure"
    stderr = [o["text"] for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, f"{name} wrote to stderr (a warning?): {stderr}"
    return "\n".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)


@pytest.mark.parametrize("name", READERS)
def test_notebook_runs_on_the_sample(name, kernel, monkeypatch):
    nb = _execute(name, SAMPLE, kernel, monkeypatch)
    text = _check(nb, name)
    first = nb.cells[0]  # says which results it reads, and how to read others
    assert first.cell_type == "code" and "FORGE_RESULTS_DIR=DIR" in first.source
    shown = first.outputs[0]["data"]["text/markdown"]
    assert shown.startswith("**Reading `tests/data/sample_results/`**: `$FORGE_RESULTS_DIR` names it.")
    assert "`FORGE_RESULTS_DIR=DIR ./dev.sh notebooks`" in shown and 'an.results_dir("DIR")' in shown
    assert "Intel" in text or "CPUs" in text  # the machine, from the files
    assert "Pinning:" in text and "taskset" in text
    if name == "02_scaling.py":  # the sample has no many-tenants run: said, not failed
        assert "No many-tenants results in this directory" in text
        assert "python -m benchmarks run --profiles many-tenants" in text
    if name == "05_backends.py":  # micro results found (sample_results/ or the sibling sample_micro/)
        assert "micro result" in text and "No micro results" not in text
    if name == "06_production.py":  # the tiny real production run in the sibling sample_production/
        assert "No production results" not in text and "`--quick`: shapes only" in text
        assert "- `streams`: mock provider: time to first token lognormal" in text
    if name == "07_future_work.py":  # the sample holds a tiny run of every part of --plan future-work
        assert "results in this directory" not in text
        assert sum("image/png" in o.get("data", {}) for o in _outputs(nb)) == 4


@pytest.mark.parametrize("name", READERS)
def test_notebook_runs_on_fuller_results(name, kernel, extended, monkeypatch):
    nb = _execute(name, extended, kernel, monkeypatch)
    text = _check(nb, name)
    assert "No many-tenants" not in text and "No multi-process churn" not in text and "No LiteLLM" not in text
    if name == "01_cache_layers.py":
        assert "No per-request latency histograms" not in text  # the CDF branch ran
    if name == "06_production.py":
        assert "No production results" not in text and "Streams held before" in text
    if name == "05_backends.py":
        assert "run on one store and cache backend" not in text  # the per-backend branch ran
        assert "No switch of layers" not in text  # and plotted none → all on two backends


def _tree(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*")} if directory.exists() else set()


def test_experiment_notebook_runs_an_experiment_and_plots_it(kernel, tmp_path, monkeypatch, pg_url):
    """Sized by the environment (2 users, 2 s per job), written into a temporary directory: four result
    files (none and all, PostgreSQL direct and 2 ms away), a progress line as each job starts and ends,
    the files listed and both figures drawn; nothing written under results/."""
    out = tmp_path / "experiment"
    for name, value in (("FORGE_EXPERIMENT_USERS", "2"), ("FORGE_EXPERIMENT_DURATION", "2"),
                        ("FORGE_EXPERIMENT_OUT", str(out)), ("FORGE_BENCH_POSTGRES_URL", pg_url)):
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    results_before = _tree(REPO / "results")
    nb = jupytext.read(NOTEBOOKS / EXPERIMENT)
    NotebookClient(nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert _tree(REPO / "results") == results_before

    files = sorted(out.glob("*.json"))
    docs = [json.loads(p.read_text()) for p in files]
    assert len(docs) == 4
    assert sorted((d["config"], d["settings"]["db_rtt_ms"]) for d in docs) == [("all", 0), ("all", 2), ("none", 0),
                                                                                ("none", 2)]
    for doc in docs:
        assert (doc["profile"], doc["settings"]["store"], doc["settings"]["users"]) == ("steady", "postgres", 2)
        assert doc["settings"]["duration_s"] == 2 and doc["requests"] > 0 and doc["locust"]["failures"] == 0

    outputs = _outputs(nb)
    stdout = "".join(o["text"] for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout")
    assert len(re.findall(r"^\[[1-4]/4\] steady, (none|all) \[postgres[^]]*\]: started$", stdout, re.M)) == 4
    assert len(re.findall(r"^\[[1-4]/4\] steady, (none|all) \[postgres[^]]*\]: [\d.]+ rps, p50 ", stdout, re.M)) == 4
    assert f"4 result files in {out}/" in stdout
    assert not [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # per configuration, and along the round trip
    text = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for o in outputs)
    assert all(p.name in text for p in files)  # the result files, listed
    assert "python -m benchmarks run --profiles steady --configs none all --stores postgres" in text
