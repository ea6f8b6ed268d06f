"""Shared upstream calls end to end: concurrent identical opted-in requests of one user cost one
upstream call, streams included; late joiners, departures, failures and the two forms (stream or
not) mixed. Real gateway on loopback, a real mock slowed down so that the requests overlap."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import pytest
from support import GatewayThread, MockProcess, add_provider, create_user, settings_for

OPT = {"Cache-Control": "max-age=600"}
LATENCY = 0.6
CHUNKS = 8
CHUNK_DELAY = 0.15
QUESTION = "the same question, asked by several clients at once"  # long enough for 8 pieces


@pytest.fixture(scope="module")
def slow():
    """Every call waits 600 ms before it answers; a stream sends 8 chunks 150 ms apart."""
    m = MockProcess("--latency-ms", str(int(LATENCY * 1000)), "--chunks", str(CHUNKS),
                    "--chunk-delay-ms", str(int(CHUNK_DELAY * 1000)))
    yield m
    m.stop()


@pytest.fixture
def gw(tmp_path, slow):
    g = GatewayThread(settings_for(tmp_path, caches="all"))
    key = create_user(g.url)
    assert add_provider(g.url, key, provider="openai", api_key="sk-dedup", base_url=slow.url + "/openai/v1"
                        ).status_code == 201
    slow.reset()
    yield g, key
    g.stop()


def body(stream: bool, model: str = "openai/gpt-4o-mini", content: str = QUESTION) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}


def events(raw: bytes) -> list[bytes]:
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


def text_of(r: httpx.Response, stream: bool) -> str:
    if not stream:
        return r.json()["choices"][0]["message"]["content"]
    import orjson

    return "".join((c["choices"][0]["delta"].get("content") or "") for c in map(orjson.loads, events(r.content)[:-1])
                   if c.get("choices"))


async def burst(gw, key, forms: list[bool], stagger: float = 0.0, **kw) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {key}", **OPT},
                                 timeout=30, limits=httpx.Limits(max_connections=len(forms))) as c:
        async def one(i: int, stream: bool) -> httpx.Response:
            await asyncio.sleep(stagger * bool(i))  # the first is the leader
            return await c.post("/v1/chat/completions", json=body(stream, **kw))

        return await asyncio.gather(*(one(i, s) for i, s in enumerate(forms)))


@pytest.mark.parametrize("forms", [[False] * 20, [True] * 20, [True, False] * 10, [False, True] * 10],
                         ids=["answers", "streams", "stream-leader-mixed", "answer-leader-mixed"])
def test_n_concurrent_identical_requests_cost_one_upstream_call(gw, slow, forms):
    g, key = gw
    rs = asyncio.run(burst(g, key, forms, stagger=0.1))
    assert [r.status_code for r in rs] == [200] * len(forms)
    t = g.counters()
    assert (t["upstream_requests"], t["dedup_joins"], slow.stats()["openai.chat"]) == (1, len(forms) - 1, 1)
    assert sorted(r.headers["X-Forge-Cache"] for r in rs) == ["hit"] * (len(forms) - 1) + ["miss"]
    assert {text_of(r, s) for r, s in zip(rs, forms)} == {"Mock reply to: " + QUESTION}
    for r, s in zip(rs, forms):
        if s:
            assert r.headers["Content-Type"] == "text/event-stream" and r.content.endswith(b"data: [DONE]\n\n")
    # the answer was then kept: one more costs nothing
    assert httpx.post(g.url + "/v1/chat/completions", json=body(False),
                      headers={"Authorization": f"Bearer {key}", **OPT}).headers["X-Forge-Cache"] == "hit"
    assert g.counters()["upstream_requests"] == 1


def test_a_late_joiner_gets_the_chunks_so_far_then_the_live_ones(gw, slow):
    g, key = gw

    async def main():
        async with httpx.AsyncClient(base_url=g.url, headers={"Authorization": f"Bearer {key}", **OPT},
                                     timeout=30) as c:
            got = {}

            async def leader():
                async with c.stream("POST", "/v1/chat/completions", json=body(True)) as r:
                    got["leader"] = b"".join([chunk async for chunk in r.aiter_raw()])

            task = asyncio.ensure_future(leader())
            await asyncio.sleep(LATENCY + 2.5 * CHUNK_DELAY)  # into the stream, well before its end
            r = await c.post("/v1/chat/completions", json=body(True))
            await task
            return got["leader"], r

    leader, joiner = asyncio.run(main())
    assert joiner.headers["X-Forge-Cache"] == "hit"
    assert events(joiner.content) == events(leader) and len(events(leader)) == CHUNKS + 3  # role, finish, [DONE]
    assert (g.counters()["upstream_requests"], g.counters()["dedup_joins"]) == (1, 1)


def usage_rows(g, tmp_path) -> list[tuple]:
    asyncio.run_coroutine_threadsafe(g.gw.usage.flush(), g.loop).result(5)
    return sqlite3.connect(tmp_path / "forge.db").execute(
        "SELECT status, prompt_tokens, completion_tokens FROM usage ORDER BY id").fetchall()


def test_the_leaders_client_leaving_leaves_the_joiners_whole(gw, slow, tmp_path):
    g, key = gw

    async def main():
        async with httpx.AsyncClient(base_url=g.url, headers={"Authorization": f"Bearer {key}", **OPT},
                                     timeout=30) as c:
            async def leader():
                async with c.stream("POST", "/v1/chat/completions", json=body(True)) as r:
                    async for _ in r.aiter_raw():
                        return r.headers["X-Forge-Cache"]  # leaves after its first bytes

            lead = asyncio.ensure_future(leader())
            await asyncio.sleep(0.2)
            joiners = await asyncio.gather(*(c.post("/v1/chat/completions", json=body(s))
                                             for s in (True, True, False)))
            return await lead, joiners

    lead, joiners = asyncio.run(main())
    assert lead == "miss" and [r.status_code for r in joiners] == [200] * 3
    assert [text_of(r, s) for r, s in zip(joiners, (True, True, False))] == ["Mock reply to: " + QUESTION] * 3
    assert all(r.content.endswith(b"data: [DONE]\n\n") for r in joiners[:2])
    assert (g.counters()["upstream_requests"], slow.stats()["openai.chat"]) == (1, 1)
    # the whole answer was kept, although the client that started the call did not see it through
    assert httpx.post(g.url + "/v1/chat/completions", json=body(True),
                      headers={"Authorization": f"Bearer {key}", **OPT}).headers["X-Forge-Cache"] == "hit"
    rows = usage_rows(g, tmp_path)
    # The leader's row (written when the call ended) holds what the provider billed; joiners' and the hit's none.
    leader_row = [r for r in rows if r[0] == 499]
    assert len(leader_row) == 1 and leader_row[0][2] > 0
    assert sorted(r for r in rows if r[0] == 200) == [(200, 0, 0)] * 4


def test_when_the_last_client_leaves_the_upstream_read_stops_and_nothing_is_kept(gw, slow):
    g, key = gw

    async def main():
        async with httpx.AsyncClient(base_url=g.url, headers={"Authorization": f"Bearer {key}", **OPT},
                                     timeout=30) as c:
            async with c.stream("POST", "/v1/chat/completions", json=body(True)) as r:
                async for _ in r.aiter_raw():
                    break
        left = time.monotonic()
        while len(g.gw.responses.flights) and time.monotonic() - left < 5:
            await asyncio.sleep(0.01)
        return time.monotonic() - left

    stopped_after = asyncio.run(main())
    assert stopped_after < CHUNKS * CHUNK_DELAY / 2  # long before the stream would have ended
    assert len(g.gw.responses.store) == 0
    r = httpx.post(g.url + "/v1/chat/completions", json=body(True), headers={"Authorization": f"Bearer {key}", **OPT})
    assert r.headers["X-Forge-Cache"] == "miss" and g.counters()["upstream_requests"] == 2


@pytest.mark.parametrize("forms", [[False] * 5, [True] * 5, [False, True, True]], ids=["answers", "streams", "mixed"])
def test_every_joiner_gets_the_same_error_before_the_answer_starts(gw, slow, forms):
    g, key = gw
    rs = asyncio.run(burst(g, key, forms, stagger=0.1, model="openai/fail-500"))
    assert {(r.status_code, r.content) for r in rs} == {(rs[0].status_code, rs[0].content)}
    assert rs[0].status_code == 502 and rs[0].json()["error"]["type"] == "upstream_error"
    assert sorted(r.headers["X-Forge-Cache"] for r in rs) == ["hit"] * (len(forms) - 1) + ["miss"]
    assert g.counters()["upstream_requests"] == 1
    assert len(g.gw.responses.store) == 0  # never kept: the next one tries again
    assert asyncio.run(burst(g, key, [False], model="openai/fail-500"))[0].headers["X-Forge-Cache"] == "miss"


def test_a_stream_failing_midway_ends_every_joiners_stream_the_same_way(gw, slow):
    g, key = gw
    rs = asyncio.run(burst(g, key, [True] * 4 + [False], stagger=0.1, model="openai/drop-mid-stream"))
    streams, answer = rs[:4], rs[4]
    assert {r.content for r in streams} == {streams[0].content}
    tail = events(streams[0].content)[-2:]
    assert b'"error"' in tail[0] and tail[1] == b"[DONE]"
    assert answer.status_code == 502  # the non-streaming joiner: the same failure, as a status
    assert g.counters()["upstream_requests"] == 1 and len(g.gw.responses.store) == 0
