"""``--processes 2``: per-process caches, cross-process invalidation through the SQLite log,
counters summed over processes; a worker that exits is replaced (``workers``)."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from support import ADMIN, Load, MockProcess, ServerProcess, add_provider, create_user, refused

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def fresh_request(url: str, key: str) -> httpx.Response:
    # A new connection each time, so the kernel spreads requests over both processes.
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as c:
        return c.post(url + "/v1/chat/completions", json=CHAT)


@pytest.fixture
def two_processes(tmp_path):
    """``serve --processes 2`` with a user whose provider is a mock of its own: (server, key)."""
    mock = MockProcess()
    server = ServerProcess(tmp_path, "--processes", "2")
    try:
        key = create_user(server.url)
        assert add_provider(server.url, key, provider="openai", api_key="sk-a",
                            base_url=mock.url + "/openai/v1").status_code == 201
        yield server, key
    finally:
        server.stop()
        mock.stop()


def test_reset_key_refused_by_every_process_within_bound(two_processes):
    server, key = two_processes
    time.sleep(0.3)
    for _ in range(40):  # warm both processes' caches with the key
        assert fresh_request(server.url, key).status_code == 200
    stats = server.stats()
    assert stats["processes"] == 2
    pids = set()
    for _ in range(40):
        pids.add(httpx.get(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"},
                           ).headers.get("X-Forge-Pid"))
    assert len(pids) == 2, "both processes must have served (and cached) the key"
    assert stats["caches"]["user"]["size"] == 2  # one entry in each process

    r = httpx.post(server.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"})
    new_key = r.json()["api_key"]
    time.sleep(1.0)  # the documented bound
    old_ok = sum(fresh_request(server.url, key).status_code == 200 for _ in range(40))
    assert old_ok == 0
    assert all(fresh_request(server.url, new_key).status_code == 200 for _ in range(10))

    after = server.stats()["counters"]
    assert after["db_background_queries"] > 0  # the pollers ran, counted apart
    assert after["requests"] >= 92  # summed over both processes


def _workers(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def _replaced(parent: int, gone: int, timeout: float = 10.0) -> set[int]:
    """The workers once ``gone`` has a successor."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _workers(parent)
        if gone not in now and len(now) == 2:
            return now
        time.sleep(0.05)
    raise AssertionError(f"worker {gone} was not replaced: {_workers(parent)}")


def test_a_worker_that_exits_is_replaced_and_the_other_loses_nothing(two_processes):
    server, key = two_processes
    parent = server.proc.pid
    workers = _workers(parent)
    assert len(workers) == 2

    # killed: the other worker's keep-alive connection never notices
    pinned = httpx.Client(headers={"Authorization": f"Bearer {key}"})

    def answered_by() -> int:
        stats = pinned.get(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
        return int(stats.headers["X-Forge-Pid"])

    mine = answered_by()
    (victim,) = workers - {mine}
    load = Load(lambda: pinned.post(server.url + "/v1/chat/completions", json=CHAT).status_code)
    load.more(10)
    os.kill(victim, signal.SIGKILL)
    workers = _replaced(parent, victim)
    load.more(10)
    results = load.stop()
    assert len(results) >= 20 and set(results) == {200}, results
    assert answered_by() == mine and mine in workers  # the same process, on the same connection, all along
    pinned.close()

    # SIGTERM: a graceful restart of one worker; requests on new connections lose nothing
    loads = [Load(lambda: fresh_request(server.url, key).status_code) for _ in range(2)]
    loads[0].more(10)
    os.kill(mine, signal.SIGTERM)
    workers = _replaced(parent, mine)
    loads[0].more(10)
    results = [r for load in loads for r in load.stop()]
    assert len(results) >= 20 and set(results) == {200}, [r for r in results if r != 200][:5]
    assert server.stats()["processes"] == 2

    log = server.log.read_text()
    assert f"(pid {victim}) ended with status -9; starting a new one" in log
    assert f"(pid {mine}) exited; starting a new one" in log
    assert server.stop() == 0  # SIGTERM to the parent: every worker drains, then the parent exits 0
    assert all(not os.path.exists(f"/proc/{pid}") for pid in workers)
    assert "Traceback" not in server.log.read_text()


def test_sigterm_to_the_parent_drains_every_worker(tmp_path):
    slow = MockProcess("--chunks", "8", "--chunk-delay-ms", "250")  # 2 s streams
    server = ServerProcess(tmp_path, "--processes", "2")
    clients: dict[int, httpx.Client] = {}
    try:
        key = create_user(server.url)
        assert add_provider(server.url, key, provider="openai", api_key="sk-a",
                            base_url=slow.url + "/openai/v1").status_code == 201
        auth = {"Authorization": f"Bearer {key}"}
        for _ in range(50):  # a keep-alive connection to each worker
            c = httpx.Client(headers=auth, timeout=30)
            stats = c.get(server.url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"})
            pid = int(stats.headers["X-Forge-Pid"])
            if pid in clients or len(clients) == 2:
                c.close()
            else:
                clients[pid] = c
        assert len(clients) == 2
        frames: dict[int, list[str]] = {pid: [] for pid in clients}
        started = threading.Barrier(3)

        def stream(pid: int) -> None:
            with clients[pid].stream("POST", server.url + "/v1/chat/completions", json=dict(CHAT, stream=True)) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        if not frames[pid]:
                            started.wait(10)
                        frames[pid].append(line)

        threads = [threading.Thread(target=stream, args=(pid,), daemon=True) for pid in clients]
        for t in threads:
            t.start()
        started.wait(10)  # a stream under way in each worker

        server.proc.send_signal(signal.SIGTERM)
        assert refused(server.url)  # the parent too let go of the listening socket
        for t in threads:
            t.join(10)
        for pid, got in frames.items():
            assert got[-1] == "data: [DONE]" and not any('"error"' in f for f in got), (pid, got)
        assert server.proc.wait(10) == 0
        assert "Traceback" not in server.log.read_text()
    finally:
        for c in clients.values():
            c.close()
        server.stop()
        slow.stop()
