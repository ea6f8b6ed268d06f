"""``Server-Timing`` end to end: absent unless on; hit or miss right for every layer combination the
exact-cost test covers; phases never sum to more than the total; streams timed to the first byte;
no user id and no secret in it. Real gateway on loopback, real mock."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from support import GatewayThread, MockProcess, add_provider, create_user, settings_for

from forge_ref.settings import LAYERS, layers_label

COMBOS = [dict(zip(LAYERS, bits)) for bits in itertools.product([False, True], repeat=len(LAYERS))]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PHASES = ("body", "parse", "user", "service", "key", "translate", "upstream", "respond")


def parse(header: str) -> dict[str, dict]:
    """``name;desc="x";dur=1.2, ...`` -> {name: {"desc": "x", "dur": 1.2}} (W3C Server-Timing syntax)."""
    out = {}
    for entry in header.split(", "):
        name, *params = entry.split(";")
        assert re.fullmatch(r"[a-z_]+", name), entry
        fields = {}
        for param in params:
            key, _, value = param.partition("=")
            assert key in ("desc", "dur"), entry  # nothing else: no user id, no request facts
            fields[key] = value.strip('"') if key == "desc" else float(value)
        out[name] = fields
    return out


def setup(gw: GatewayThread, mock_url: str) -> tuple[str, dict]:
    key = create_user(gw.url, "alice")
    for provider in ("openai", "groq"):
        assert add_provider(gw.url, key, provider=provider, api_key=f"sk-{provider}-secret-1234",
                            base_url=mock_url + "/openai/v1").status_code == 201
    return key, {"Authorization": f"Bearer {key}"}


def check_sums(timing: dict[str, dict]) -> None:
    phases = sum(timing[p]["dur"] for p in PHASES if p in timing)
    total = timing["total"]["dur"]
    assert phases <= total + 0.01, timing  # each entry is rounded to 1 us
    assert abs(timing["gateway"]["dur"] + timing.get("upstream", {}).get("dur", 0.0) - total) <= 0.002


def test_absent_unless_on(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path))
    try:
        _, h = setup(gw, mock.url)
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h)
        assert r.status_code == 200 and "server-timing" not in r.headers
    finally:
        gw.stop()


@pytest.mark.parametrize("layers", COMBOS, ids=[layers_label(c) for c in COMBOS])
def test_hit_or_miss_for_every_combination(layers, mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, caches=layers_label(layers), server_timing=True))
    try:
        key, h = setup(gw, mock.url)
        with httpx.Client(base_url=gw.url, headers=h) as client:
            cold = parse(client.post("/v1/chat/completions", json=CHAT).headers["server-timing"])
            # Adding the provider keys looked the user up (warm if the layer is on) and dropped the service.
            assert cold["user"]["desc"] == ("hit" if layers["user"] else "miss")
            assert (cold["service"]["desc"], cold["key"]["desc"]) == ("miss", "miss")
            for _ in range(2):
                r = client.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 200
                header = r.headers["server-timing"]
                warm = parse(header)
                # The same facts the exact-cost test asserts as counts: a layer hit when it saved its cost.
                assert warm["user"]["desc"] == ("hit" if layers["user"] else "miss")
                assert warm["service"]["desc"] == ("hit" if layers["service"] else "miss")
                assert warm["key"]["desc"] == ("hit" if layers["service"] else "miss")  # 0 decryptions
                assert warm["adapter"]["desc"] == ("hit" if layers["adapters"] else "miss")
                assert list(warm)[:len(PHASES)] == list(PHASES)
                check_sums(warm)
                assert key not in header and "secret" not in header  # parse() allows names, desc and dur only
            client.get("/v1/models")
            models = parse(client.get("/v1/models").headers["server-timing"])
            assert models["models"]["desc"] == ("hit" if layers["models"] else "miss")
            check_sums(models)
    finally:
        gw.stop()


def test_a_stream_is_timed_to_its_first_byte(tmp_path):
    slow = MockProcess("--latency-ms", "80", "--chunks", "4", "--chunk-delay-ms", "100")
    gw = GatewayThread(settings_for(tmp_path, server_timing=True))
    try:
        _, h = setup(gw, slow.url)
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=dict(CHAT, stream=True), headers=h) as r:
            assert r.status_code == 200
            timing = parse(r.headers["server-timing"])
            body = b"".join(r.iter_bytes())
        assert body.endswith(b"data: [DONE]\n\n")
        assert 80 <= timing["upstream"]["dur"] < 300  # the latency before the first byte ...
        assert timing["total"]["dur"] < 300  # ... not the 400 ms of chunks that followed
        assert "respond" not in timing
        check_sums(timing)
    finally:
        gw.stop()
        slow.stop()


def test_errors_carry_it_too(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, server_timing=True))
    try:
        _, h = setup(gw, mock.url)
        r = httpx.post(gw.url + "/v1/chat/completions", json=dict(CHAT, model="nope/x"), headers=h)
        assert r.status_code == 404
        timing = parse(r.headers["server-timing"])
        assert timing["user"]["desc"] == "hit" and timing["service"]["desc"] == "miss" and "total" in timing
    finally:
        gw.stop()


# --- waiting for a pooled connection: counted, and a phase of its own ----------------------------------


@pytest.mark.parametrize("client", ["curl", "httpx", "aiohttp"])
def test_a_request_waiting_for_the_upstream_pool_shows_a_pool_phase(tmp_path, client):
    """A pool of one upstream connection, held by a 2 s stream: two chats sent meanwhile both wait
    for it (the second also behind the first): exactly two waits, each a ``pool`` phase."""
    import threading

    slow = MockProcess("--chunks", "20", "--chunk-delay-ms", "100")
    gw = GatewayThread(settings_for(tmp_path, server_timing=True, upstream_client=client, upstream_max_connections=1))
    try:
        _, h = setup(gw, slow.url)
        before = gw.counters()
        answers: list[httpx.Response] = []
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=dict(CHAT, stream=True), headers=h) as r:
            chunks = r.iter_bytes()
            next(chunks)  # the stream holds the only connection now
            assert "pool" not in parse(r.headers["server-timing"])
            chats = [threading.Thread(target=lambda: answers.append(httpx.post(
                gw.url + "/v1/chat/completions", json=CHAT, headers=h, timeout=30))) for _ in range(2)]
            for t in chats:
                t.start()
            assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
        for t in chats:
            t.join(30)
        assert [a.status_code for a in answers] == [200, 200]
        timings = [parse(a.headers["server-timing"]) for a in answers]
        assert all(t["pool"]["dur"] > 0 for t in timings), timings
        for t in timings:
            check_sums(t)
        after = gw.counters()
        assert after["upstream_pool_waits"] - before["upstream_pool_waits"] == 2
        waited_ms = (after["upstream_pool_wait_us"] - before["upstream_pool_wait_us"]) / 1000
        # The phase begins at the send, a little before the wait is timed: at least the wait, and about it
        # (the bound is relative: on a loaded machine the event loop may take milliseconds to get there).
        assert 0 <= sum(t["pool"]["dur"] for t in timings) - waited_ms < max(5.0, 0.1 * waited_ms)
    finally:
        gw.stop()
        slow.stop()


def test_a_request_waiting_for_the_db_pool_shows_a_db_pool_phase(tmp_path, mock, pg_db):
    """PostgreSQL with a pool of one connection, held by the test: three chats sent meanwhile each
    need one statement (the user look-up; the service is cached) and each waits: exactly three waits."""
    import asyncio
    import threading

    from cryptography.fernet import Fernet

    gw = GatewayThread(settings_for(tmp_path, db=pg_db, db_pool_size=1, encryption_key=Fernet.generate_key().decode(),
                                    caches="service,keys,models,adapters", server_timing=True))
    try:
        _, h = setup(gw, mock.url)
        assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h).status_code == 200  # service cached
        pool = gw.gw.store.driver.pool
        before = gw.counters()
        held = asyncio.run_coroutine_threadsafe(pool.getconn(), gw.loop).result(10)
        answers: list[httpx.Response] = []
        chats = [threading.Thread(target=lambda: answers.append(httpx.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers=h, timeout=30))) for _ in range(3)]
        for t in chats:
            t.start()
        for _ in range(1000):
            if pool.get_stats()["requests_waiting"] == 3:
                break
            threading.Event().wait(0.01)
        asyncio.run_coroutine_threadsafe(pool.putconn(held), gw.loop).result(10)
        for t in chats:
            t.join(30)
        assert [a.status_code for a in answers] == [200] * 3
        timings = [parse(a.headers["server-timing"]) for a in answers]
        assert all(t["db_pool"]["dur"] > 0 and t["user"]["desc"] == "miss" for t in timings), timings
        after = gw.counters()
        assert (after["db_pool_waits"] - before["db_pool_waits"], after["db_queries"] - before["db_queries"]) == (3, 3)
        r = httpx.get(gw.url + "/_stats", headers={"Authorization": "Bearer test-admin-token"}).json()["counters"]
        assert r["db_pool_waits"] == after["db_pool_waits"] and r["db_pool_wait_ms"] > 0
    finally:
        gw.stop()
