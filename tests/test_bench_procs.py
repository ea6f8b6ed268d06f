"""Benchmark processes (benchmarks/procs.py): a stopped job leaves nothing running behind it."""

from __future__ import annotations

import os
import time

from benchmarks import procs


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended; it waits for its parent's wait()
    except FileNotFoundError:
        return False


def test_stop_ends_the_group_a_leader_that_exited_left_behind(tmp_path):
    # Like Locust's master under --processes: the leader exits, a child it forked is still running.
    pid_file = tmp_path / "child.pid"
    proc = procs.start("leader", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}"], tmp_path)
    proc.popen.wait(10)
    child = int(pid_file.read_text())
    assert _alive(child)
    proc.stop()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    proc.stop()  # twice is harmless: the group is gone


def test_stop_ends_a_running_leader_and_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    proc = procs.start("leader", ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], tmp_path)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    proc.stop()
    assert proc.popen.poll() is not None
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child) and os.getpgid(os.getpid()) != proc.pid
