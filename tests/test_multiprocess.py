"""``--processes 2``: per-process caches, cross-process invalidation through the SQLite log,
counters summed over processes."""

from __future__ import annotations

import time

import httpx

from support import ADMIN, MockProcess, ServerProcess, add_provider, create_user

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def fresh_request(url: str, key: str) -> httpx.Response:
    # A new connection each time, so the kernel spreads requests over both processes.
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as c:
        return c.post(url + "/v1/chat/completions", json=CHAT)


def test_reset_key_refused_by_every_process_within_bound(tmp_path):
    mock = MockProcess()
    server = ServerProcess(tmp_path, "--processes", "2")
    try:
        key = create_user(server.url)
        assert add_provider(server.url, key, provider="openai", api_key="sk-a",
                            base_url=mock.url + "/openai/v1").status_code == 201
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
    finally:
        server.stop()
        mock.stop()
