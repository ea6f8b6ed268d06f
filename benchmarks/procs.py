"""Subprocesses of a benchmark: free ports, CPU pinning, readiness, resource sampling, clean stop.

Every child runs in its own session (process group), logs to a file, and is stopped with its
whole group (SIGTERM, then SIGKILL) in ``finally`` blocks, so an interrupted run leaves nothing
behind. Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pinning_plan() -> dict[str, str] | None:
    """Server on CPU 0, load generator and mock on CPU 1, when ``taskset`` and two CPUs exist."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return None
    try:
        if not {0, 1} <= os.sched_getaffinity(0):
            return None
    except AttributeError:
        return None
    return {"server": "0", "load": "1", "mock": "1"}


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is not None:
            # The leader is gone, but its group may not be: Locust's master quits half a second after
            # telling its --processes workers to stop, and a worker left running would go on sending
            # the old job's keys to the next job's server on the same port (401s that were not the
            # gateway's). Nothing of a finished job may outlive it.
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout)


def start(name: str, cmd: list[str], log_dir: Path, *, env: dict[str, str | None] | None = None,
          cpus: str | None = None, cwd: str | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)  # None unsets
        else:
            full_env[key] = value
    with open(log, "ab") as out:
        popen = subprocess.Popen(pinned(cmd, cpus), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=full_env, cwd=cwd, start_new_session=True)
    return Proc(name, popen, log)


def http(method: str, url: str, *, token: str | None = None, body: bytes | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(method: str, url: str, **kw) -> dict:
    status, data = http(method, url, **kw)
    if status >= 400:
        raise RuntimeError(f"{method} {url} answered {status}: {data[:200]!r}")
    return json.loads(data) if data else {}


def _wait(proc: Proc, ready: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not {what} after {timeout:.0f}s:\n{proc.tail()}")


def wait_ready(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200."""
    _wait(proc, lambda: http("GET", url, timeout=1.0)[0] == 200, f"ready at {url}", timeout)


def wait_listening(proc: Proc, port: int, timeout: float = 10.0) -> None:
    """Wait until ``proc`` accepts TCP connections on ``HOST:port``."""

    def connects() -> bool:
        socket.create_connection((HOST, port), timeout=1.0).close()
        return True

    _wait(proc, connects, f"listening on {HOST}:{port}", timeout)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (``--processes N`` workers)."""
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def busy_cpu() -> tuple[float, float, float]:
    """CPU seconds of the whole machine, all CPUs: (processes, interrupts, stolen by the hypervisor).

    Interrupt time is kept apart: loopback networking runs largely in softirq, accounted to no
    process, so it is mostly the benchmark's own traffic rather than other load.
    """
    t = psutil.cpu_times()
    irq = getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return t.user + t.nice + t.system, irq, getattr(t, "steal", 0.0)


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters that reveal connection-level artefacts (Linux; empty elsewhere).

    ``ListenOverflows``: a SYN dropped because a listen backlog was full (the client retries
    after a 1 s timeout, which shows as a 1 s latency tail in bursts).
    """
    wanted = ("ListenOverflows", "ListenDrops", "TCPSynRetrans")
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            for name, value in zip(head.split()[1:], values.split()[1:]):
                if name in wanted:
                    out[name] = int(value)
    return out


def rss_bytes(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Sampler:
    """Samples the RSS of process trees in a thread; ``peak`` is the largest sum seen."""

    pid: int
    interval: float = 0.2
    peak: int = 0
    pids: tuple[int, ...] = ()  # further process trees summed with ``pid`` (the nodes of a multi-node target)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in (self.pid, *self.pids))

    def __enter__(self) -> "Sampler":
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.rss())
