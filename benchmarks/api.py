"""Benchmark experiments from Python (a notebook's cells): a thin, typed layer over ``python -m benchmarks run``.

    from benchmarks.api import Experiment

    exp = Experiment(profiles="steady", configs=["none", "all"], stores="postgres", db_rtt_ms=[0, 2],
                     users=16, duration=10, out="/tmp/rtt")
    exp.jobs()       # the plan (``plan.Job`` values): what will run; nothing starts
    exp.command()    # the same run as a command line
    run = exp.run()  # a line per job as it starts and ends, and one every few seconds while it runs
    run.files        # one result file per job; run.docs their documents; run.failed the jobs that failed
    run.frame()      # benchmarks.analysis.load() of those files: for analysis.summary() and benchmarks.plots

Planning and running are the command's own code (``plan.plan``, then ``runner.execute``: the services
checked, one ``runner.Session``, one result file per job), so an experiment writes exactly what
``exp.command()`` would, and the report, the notebooks and ``benchmarks.analysis`` read it alike. This
module only maps its fields to those options and turns the runner's progress calls into lines.
Bad options, or a service that does not answer, raise :class:`ExperimentError` before anything starts.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from . import runner
from .console import summary_table
from .plan import Job, Options, plan
from .results import REPO, stamp

if TYPE_CHECKING:
    import pandas as pd

EXPERIMENTS = REPO / "results" / "experiments"  # where runs go by default: git ignores it, the report does not read it
Say = Callable[[str], None]


class ExperimentError(ValueError):
    """Bad options, or a service the experiment needs does not answer; raised before anything starts."""


def _print(line: str) -> None:
    print(line, flush=True)  # flushed: lines appear as they happen, in a terminal, a pipe or a notebook


def _items(value) -> tuple:
    """One value, or several: ``"steady"`` and ``["steady", "mixed"]``; a string is one item (a configuration
    such as ``"user,service"`` keeps its comma)."""
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (value,)
    return tuple(value)


@contextmanager
def _errors() -> Iterator[None]:
    """The planner and the service checks stop the command with ``SystemExit``; here that is an exception."""
    try:
        yield
    except SystemExit as exc:
        raise ExperimentError(str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One run of the benchmark matrix; every field is the ``python -m benchmarks run`` option of that name
    (``None``: the command's default). Each forge-ref job runs once per profile x configuration x store x
    cache backend (x round trip, for jobs on PostgreSQL / Redis). Where the command runs its whole matrix
    by default, an experiment is small: ``steady``, ``none`` and ``all``, no baselines."""

    profiles: str | Sequence[str] = "steady"  # benchmarks.profiles.PROFILES
    configs: str | Sequence[str] = ("none", "all")  # cache layers: all, none, or a layer list like "user,service"
    stores: str | Sequence[str] = "sqlite"  # sqlite, postgres
    backends: str | Sequence[str] = "memory"  # memory, redis
    db_rtt_ms: float | Sequence[float] = 0.0  # round trips (ms) a delay proxy adds before PostgreSQL; 0: direct
    redis_rtt_ms: float | Sequence[float] = 0.0  # likewise before Redis
    users: int | None = None  # Locust users (32)
    duration: float | None = None  # measured seconds per job (15)
    warmup: float | None = None  # seconds of Locust warm-up, for profiles that warm up that way (5)
    tenants: int | None = None  # tenants of many-tenants (100000)
    processes: int = 1  # forge-ref server processes
    repeat: int = 1  # the whole plan N times, interleaved
    baselines: bool = False  # also mock-direct, the bare proxy and the other upstream clients
    mock_latency_ms: float = 0.0
    pin: bool = True  # server on one CPU, Locust and the mock on another (taskset)
    postgres_url: str | None = None  # $FORGE_BENCH_POSTGRES_URL, else 127.0.0.1:5432
    redis_url: str | None = None  # $FORGE_BENCH_REDIS_URL, else 127.0.0.1:6379
    out: str | os.PathLike | None = field(default=None)  # None: a new directory under results/experiments/

    def __post_init__(self) -> None:
        out = Path(self.out) if self.out is not None else EXPERIMENTS / stamp(time.time())
        object.__setattr__(self, "out", out.resolve())

    def options(self) -> Options:
        """How every job is measured (``plan.Options``, defaults filled in)."""
        return Options(out=self.out, duration=self.duration, users=self.users, processes=self.processes,
                       warmup=self.warmup, tenants=self.tenants, pin=self.pin, mock_latency_ms=self.mock_latency_ms,
                       postgres_url=self.postgres_url, redis_url=self.redis_url)

    def jobs(self) -> list[Job]:
        """The plan: the jobs :meth:`run` runs, in order. Starts nothing."""
        with _errors():
            return plan(profiles=list(_items(self.profiles)), configs=list(_items(self.configs)),
                        baselines=self.baselines, tenants_of=self.options().tenants_for,
                        stores=list(_items(self.stores)), backends=list(_items(self.backends)),
                        db_rtt_ms=list(_items(self.db_rtt_ms)), redis_rtt_ms=list(_items(self.redis_rtt_ms)),
                        repeat=self.repeat)

    def command(self) -> str:
        """The same run as ``python -m benchmarks run ...`` (it plans the same jobs into the same directory)."""
        def joined(values) -> str:
            return ",".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in _items(values))

        args = ["python", "-m", "benchmarks", "run", "--profiles", *_items(self.profiles),
                "--configs", *_items(self.configs), "--stores", joined(self.stores),
                "--backends", joined(self.backends)]
        for option, value in (("--db-rtt-ms", self.db_rtt_ms), ("--redis-rtt-ms", self.redis_rtt_ms)):
            if any(_items(value)):
                args += [option, joined(value)]
        for option, value in (("--users", self.users), ("--duration", self.duration), ("--warmup", self.warmup),
                              ("--tenants", self.tenants), ("--postgres-url", self.postgres_url),
                              ("--redis-url", self.redis_url)):
            if value is not None:
                args += [option, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.processes != 1:
            args += ["--processes", str(self.processes)]
        if self.repeat != 1:
            args += ["--repeat", str(self.repeat)]
        if self.mock_latency_ms:
            args += ["--mock-latency-ms", f"{self.mock_latency_ms:g}"]
        args += ["--baselines" if self.baselines else "--no-baselines"] + ([] if self.pin else ["--no-pin"])
        return shlex.join(args + ["--out", _shown(self.out)])

    def run(self, progress: Say | None = _print, every: float = 5.0) -> Run:
        """Run every job, one after the other, each into one result file under ``out``. ``progress`` gets a
        line when a job starts and ends, and one after every ``every`` seconds without a line (a job is
        still running); ``None`` keeps quiet. A job that fails is reported and kept in :attr:`Run.failed`;
        the others still run."""
        opts, jobs = self.options(), self.jobs()
        lines = _Lines(progress, every) if progress else None
        try:
            with _errors():
                done = runner.execute(opts, jobs, lines, verbose=progress is not None)
        finally:
            if lines:
                lines.close()
        result = Run(self, done.files, done.results, done.failed, done.raw, time.time() - done.started)
        if progress:
            failed = f", {len(done.failed)} failed (logs in {_shown(done.raw)}/)" if done.failed else ""
            n = len(done.files)
            progress(f"{n} result file{'s' if n != 1 else ''} in {_shown(self.out)}/ ({result.seconds:.0f} s){failed}")
        return result


@dataclass(frozen=True)
class Run:
    """What :meth:`Experiment.run` wrote."""

    experiment: Experiment
    files: list[Path]  # one result file per job that finished, in plan order
    docs: list[dict]  # their documents
    failed: list[Job]  # jobs that failed (their tracebacks and logs are under ``raw``)
    raw: Path  # logs, Locust's own output and the keys files of this run (``out/raw/<run id>/``)
    seconds: float

    def frame(self) -> pd.DataFrame:
        """The result files of this run as :func:`benchmarks.analysis.load` reads them (one row per file)."""
        from . import analysis

        df = analysis.load(self.experiment.out)
        if df.empty:
            return df
        return df[df["file"].isin({p.name for p in self.files})].reset_index(drop=True)

    def table(self) -> str:
        """The table ``python -m benchmarks run`` prints at its end."""
        return summary_table(self.docs)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _name(job: Job) -> str:
    name = f"{job.profile}, {job.config}" if job.target == "forge-ref" else f"{job.target}, {job.profile}"
    name += f" [{job.variant}]" if job.variant else ""
    return name + (f", repetition {job.repeat}/{job.repeats}" if job.repeats > 1 else "")


class _Lines:
    """The runner's progress calls as lines: ``[2/4] steady, all [postgres]: started``, then ``...: running,
    10 s`` from a timer thread after every ``every`` seconds without a line, then the runner's own note
    (``512 rps, p50 8.1 ms, 14.2s``, or ``FAILED: ...``)."""

    def __init__(self, say: Say, every: float) -> None:
        self.say, self.every = say, every
        self._lock = threading.Lock()
        self._job: tuple[str, float] | None = None  # (name, started) of the running job
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="experiment-progress", daemon=True)
        if every > 0:
            self._timer.start()

    def __call__(self, i: int, n: int, job: Job, note: str) -> None:
        with self._lock:  # the runner counts jobs done: i is this job's index when it starts, its number at the end
            if note == runner.STARTING:
                name = f"[{i + 1}/{n}] {_name(job)}"
                self._job, line = (name, time.monotonic()), f"{name}: started"
            else:
                self._job, line = None, f"[{i}/{n}] {_name(job)}: {note}"
            self._emit(line)

    def _emit(self, line: str) -> None:
        self._last = time.monotonic()
        self.say(line)

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.every / 4)):
            with self._lock:
                if self._job and time.monotonic() - self._last >= self.every:
                    name, started = self._job
                    self._emit(f"{name}: running, {time.monotonic() - started:.0f} s")

    def close(self) -> None:
        self._stop.set()
        if self._timer.is_alive():
            self._timer.join()
