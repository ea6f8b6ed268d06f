"""Embeddings batching (``forge_ref/batching.py``): the pure parts, then the real gateway against the
real mock, every answer compared with the answer of the same request sent alone (a second gateway
on the same database with batching off; the mock's embeddings are deterministic per input)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import openai
import pytest
from support import GatewayThread, add_provider, create_user, delta, settings_for

from forge_ref import settings as settings_mod
from forge_ref.batching import apportion, split_answer, split_inputs
from forge_ref.errors import UpstreamError

MODEL = "openai/text-embedding-3-small"
LONG = 60_000  # ms: a window no test waits for; batches in those tests leave because they are full


# --- the pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    ("a b", ("text", ["a b"])),
    (["a", "b c"], ("text", ["a", "b c"])),
    ([1, 2, 3], ("tokens", [[1, 2, 3]])),
    ([[1, 2], [3]], ("tokens", [[1, 2], [3]])),
    ("", None), (["a", ""], None), ([], None), ([[]], None), ([[1], []], None),  # a provider refuses these
    ([True, False], None), ([[1, "a"]], None), (["a", 1], None), ([1, [2]], None), (5, None), (None, None),
])
def test_split_inputs_takes_only_what_a_provider_takes_in_any_company(value, expected):
    assert split_inputs(value) == expected


@pytest.mark.parametrize("total,weights,shares", [
    (15, [9, 9, 17], [4, 4, 7]),  # 3.86, 3.86, 7.29: the two units left go to the largest remainders
    (10, [1, 1, 1], [4, 3, 3]),  # a tie: the earlier request
    (0, [5, 7], [0, 0]),
    (7, [0, 0], [4, 3]),  # no weight at all: equal shares
    (1000, [3], [1000]),
])
def test_apportion_sums_to_the_total_exactly(total, weights, shares):
    assert apportion(total, weights) == shares


@dataclass
class FakeMember:  # what split_answer reads of a member
    inputs: list
    weight: int


@pytest.mark.parametrize("data", [
    [{"index": 0}],  # fewer than asked
    [{"index": 0}, {"index": 0}],  # a duplicate
    [{"index": 0}, {"index": 5}],  # out of range
    [{"index": 0}, {"index": "1"}],
    None,
])
def test_split_answer_refuses_an_answer_that_does_not_match_the_inputs(data):
    with pytest.raises(UpstreamError):
        split_answer({"data": data, "usage": {"prompt_tokens": 2}}, [FakeMember(["a"], 1), FakeMember(["b"], 1)])


def test_split_answer_orders_by_index_reindexes_and_keeps_only_counts_of_usage():
    out = {"object": "list", "model": "m", "data": [{"index": 2, "embedding": "c"}, {"index": 0, "embedding": "a"},
                                                     {"index": 1, "embedding": "b"}],
           "usage": {"prompt_tokens": 5, "total_tokens": 5, "details": {"x": 1}}}
    first, second = split_answer(out, [FakeMember(["a", "b"], 3), FakeMember(["c"], 2)])
    assert first == {"object": "list", "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3},
                     "data": [{"index": 0, "embedding": "a"}, {"index": 1, "embedding": "b"}]}
    assert second == {"object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2},
                      "data": [{"index": 0, "embedding": "c"}]}


@pytest.mark.parametrize("env", [{"FORGE_EMBEDDINGS_BATCH_WINDOW_MS": "-1"},
                                 {"FORGE_EMBEDDINGS_BATCH_MAX_INPUTS": "0"}])
def test_bad_batch_settings_are_refused(env):
    with pytest.raises(ValueError, match="embeddings batch"):
        settings_mod.from_env(env)


# --- the real gateway -------------------------------------------------------------------------------


@dataclass
class World:
    tmp: object
    mock: str
    alone: GatewayThread  # batching off: the reference answers
    alice: str
    bob: str


@pytest.fixture(scope="module")
def world(mock_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    alone = GatewayThread(settings_for(tmp))
    alice, bob = create_user(alone.url, "alice"), create_user(alone.url, "bob")
    keys = [(alice, "openai", "openai", "/openai/v1", {"embed": "text-embedding-3-small"}),
            (alice, "groq", "openai", "/openai/v1", {}),
            (alice, "gemini", "gemini", "/gemini", {"gembed": "text-embedding-004"}),
            (alice, "claude", "anthropic", "/anthropic", {}),
            (bob, "openai", "openai", "/openai/v1", {})]
    for key, provider, kind, path, mapping in keys:
        r = add_provider(alone.url, key, provider=provider, kind=kind, api_key=f"sk-{provider}-{key[-6:]}",
                         base_url=mock_url + path, model_mapping=mapping)
        assert r.status_code == 201, r.text
    yield World(tmp, mock_url, alone, alice, bob)
    alone.stop()


@contextmanager
def batching(world: World, window_ms: float, max_inputs: int = 100):
    g = GatewayThread(settings_for(world.tmp, embeddings_batch_window_ms=window_ms,
                                   embeddings_batch_max_inputs=max_inputs, server_timing=True))
    try:
        yield g
    finally:
        g.stop()


def h(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def mock_calls(world: World) -> dict:
    return httpx.get(world.mock + "/_mock/stats").json()["calls"]


def alone(world: World, key: str, body: dict) -> httpx.Response:
    return httpx.post(world.alone.url + "/v1/embeddings", json=body, headers=h(key), timeout=10)


async def send(g: GatewayThread, *requests: tuple[str, dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=g.url, timeout=30) as c:
        return list(await asyncio.gather(*(c.post("/v1/embeddings", json=b, headers=h(k)) for k, b in requests)))


async def waiting(g: GatewayThread, n: int) -> None:
    """Until ``n`` requests wait in open batches (read on the gateway's own loop)."""
    async def count() -> int:
        return len(g.gw.embeddings_batcher)

    deadline = time.monotonic() + 15
    while await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(count(), g.loop)) != n:
        assert time.monotonic() < deadline, f"never {n} requests waiting in open batches"
        await asyncio.sleep(0.01)


def without_usage(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "usage"}


def usage_rows(g: GatewayThread, after: int) -> list[tuple]:
    asyncio.run_coroutine_threadsafe(g.gw.usage.flush(), g.loop).result(5)
    with sqlite3.connect(g.settings.db) as db:
        return db.execute("SELECT id, provider, model, status, prompt_tokens FROM usage WHERE id > ? ORDER BY id",
                          (after,)).fetchall()


def last_usage_id(g: GatewayThread) -> int:
    return max([0] + [row[0] for row in usage_rows(g, 0)])


def batch_counts(before: dict, after: dict) -> tuple[int, int, int]:
    """Merged calls, requests that went in one with others, requests that waited for a batch."""
    d = delta(before, after)
    return d.get("embeddings_batches", 0), d.get("embeddings_batched_requests", 0), d.get("embeddings_batch_waits", 0)


def phases(resp: httpx.Response) -> dict[str, float]:
    out = {}
    for part in resp.headers["Server-Timing"].split(", "):
        name, *attrs = part.split(";")
        for a in attrs:
            if a.startswith("dur="):
                out[name] = float(a[4:])
    return out


def test_concurrent_requests_share_one_call_and_each_gets_its_own_answer(world):
    # 9, 9 and 17 UTF-8 bytes; 2, 4 and 9 words (the mock's token count): shares 4, 4, 7 of 15
    bodies = [{"model": MODEL, "input": "aaaa bbbb"}, {"model": "embed", "input": ["cc dd ee", "f"]},
              {"model": MODEL, "input": "g h i j k l m n o"}]
    expected = [alone(world, world.alice, b).json() for b in bodies]
    assert sum(e["usage"]["prompt_tokens"] for e in expected) == 15
    with batching(world, LONG, max_inputs=4) as g:  # 4 inputs in all: the batch leaves when full
        start, before, calls = last_usage_id(g), g.counters(), mock_calls(world)
        answers = asyncio.run(send(g, *((world.alice, b) for b in bodies)))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 1}
        counted = delta(before, g.counters())
        assert (counted["requests"], counted["upstream_requests"]) == (3, 1)
        assert batch_counts(before, g.counters()) == (1, 3, 3) and counted["embeddings_batch_wait_us"] > 0
        for got, want, share in zip(answers, expected, (4, 4, 7)):
            assert got.status_code == 200
            assert without_usage(got.json()) == without_usage(want)  # data, indexes from 0, model, object
            assert got.json()["usage"] == {"prompt_tokens": share, "total_tokens": share}
            assert {"batch", "upstream"} <= set(phases(got)) and "translate" not in phases(got)
        rows = sorted(r[1:] for r in usage_rows(g, start))  # in the order the requests finished
        assert rows == [("openai", "text-embedding-3-small", 200, share) for share in (4, 4, 7)]


def test_token_arrays_merge_with_exact_usage(world):
    bodies = [{"model": MODEL, "input": [[1, 2, 3], [4, 5]]}, {"model": MODEL, "input": [7, 8, 9, 10]},
              {"model": MODEL, "input": [[11]]}]
    expected = [alone(world, world.alice, b).json() for b in bodies]
    with batching(world, LONG, max_inputs=4) as g:
        calls = mock_calls(world)
        answers = asyncio.run(send(g, *((world.alice, b) for b in bodies)))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 1}
        assert [a.json() for a in answers] == expected  # usage too: a token array's length is exact


def test_gemini_requests_merge_into_one_batch_embed_contents(world):
    """Through the official SDK (it asks for base64); a lone string would be embedContent, merged it is one
    batchEmbedContents; each answer carries its own label."""
    requests = [("gemini/text-embedding-004", "one"), ("gembed", ["two three", "four"]),
                ("gemini/text-embedding-004", ["five"])]

    def client(url: str):
        return openai.AsyncOpenAI(base_url=url + "/v1", api_key=world.alice, max_retries=0, timeout=30)

    async def create(url: str) -> list:
        return await asyncio.gather(*(client(url).embeddings.create(model=m, input=i) for m, i in requests))

    expected = [r.model_dump() for r in asyncio.run(create(world.alone.url))]
    with batching(world, LONG, max_inputs=4) as g:
        calls = mock_calls(world)
        answers = [r.model_dump() for r in asyncio.run(create(g.url))]
        assert delta(calls, mock_calls(world)) == {"gemini.batchEmbedContents": 1}
    assert answers == expected
    assert [a["model"] for a in answers] == ["gemini/text-embedding-004", "gembed", "gemini/text-embedding-004"]


def test_what_cannot_merge_goes_alone_at_once(world):
    bodies = [{"model": MODEL, "input": ["a", "b", "c", "d"]},  # more than the max
              {"model": MODEL, "input": ["a", ""]},  # a provider may refuse an empty string: not in company
              {"model": "gemini/text-embedding-004", "input": [[1, 2]]},  # gemini takes no token arrays: 400
              {"model": "claude/claude-haiku-4-5", "input": "x"}]  # anthropic has no embeddings: 400
    expected = [alone(world, world.alice, b) for b in bodies]
    assert [r.status_code for r in expected] == [200, 200, 400, 400]
    with batching(world, LONG, max_inputs=3) as g:
        before, calls = g.counters(), mock_calls(world)
        started = time.monotonic()
        answers = asyncio.run(send(g, *((world.alice, b) for b in bodies)))
        assert time.monotonic() - started < 20  # none waited for the window
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 2}
        assert batch_counts(before, g.counters()) == (0, 0, 0)
    assert [(a.status_code, a.json()) for a in answers] == [(e.status_code, e.json()) for e in expected]


def test_different_users_models_keys_and_parameters_never_merge(world):
    a = world.alice
    groups = [(a, {"model": MODEL}), (world.bob, {"model": MODEL}), (a, {"model": "openai/text-embedding-3-large"}),
              (a, {"model": "groq/text-embedding-3-small"}), (a, {"model": MODEL, "dimensions": 8}),
              (a, {"model": MODEL, "encoding_format": "base64"}), (a, {"model": MODEL, "user": "end-user-2"}),
              (a, {"model": "gemini/text-embedding-004"})]
    rounds = [[(k, dict(b, input=f"round {n} text")) for k, b in groups] for n in (1, 2)]
    expected = [alone(world, k, b).json() for r in rounds for k, b in r]

    async def run(g: GatewayThread) -> list[httpx.Response]:
        first = asyncio.gather(*(send(g, r) for r in rounds[0]))
        # Batches hold 2 inputs: two requests that shared a batch would leave at once and never all wait.
        await waiting(g, len(groups))
        assert mock_calls(world) == calls  # nothing left: one batch each
        second = await asyncio.gather(*(send(g, r) for r in rounds[1]))
        return [a for (a,) in await first] + [a for (a,) in second]

    with batching(world, LONG, max_inputs=2) as g:
        before, calls = g.counters(), mock_calls(world)
        answers = asyncio.run(run(g))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 7, "gemini.batchEmbedContents": 1}
        assert batch_counts(before, g.counters()) == (8, 16, 16)
    assert [without_usage(a.json()) for a in answers] == [without_usage(e) for e in expected]


def test_max_inputs_splits_batches(world):
    async def run(g: GatewayThread) -> list[httpx.Response]:
        a = asyncio.ensure_future(send(g, (world.alice, {"model": MODEL, "input": ["a1", "a2", "a3"]})))
        await waiting(g, 1)
        b = asyncio.ensure_future(send(g, (world.alice, {"model": MODEL, "input": ["b1", "b2"]})))
        (got_a,) = await a  # b would take the batch over 4: a leaves alone, b starts the next batch
        await waiting(g, 1)
        (got_c,) = await send(g, (world.alice, {"model": MODEL, "input": ["c1", "c2"]}))  # b + c: full
        (got_b,) = await b
        return [got_a, got_b, got_c]

    bodies = [{"model": MODEL, "input": i} for i in (["a1", "a2", "a3"], ["b1", "b2"], ["c1", "c2"])]
    expected = [alone(world, world.alice, b).json() for b in bodies]
    singles = [{"model": MODEL, "input": f"single {n}"} for n in range(8)]
    with batching(world, LONG, max_inputs=4) as g:
        before, calls = g.counters(), mock_calls(world)
        answers = asyncio.run(run(g))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 2}
        assert batch_counts(before, g.counters()) == (1, 2, 3)
        assert [without_usage(a.json()) for a in answers] == [without_usage(e) for e in expected]
        assert answers[0].json() == expected[0]  # a went alone: its usage is the provider's own
        calls = mock_calls(world)
        answers = asyncio.run(send(g, *((world.alice, b) for b in singles)))  # 8 inputs, 4 a batch: 2 calls
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 2}
    assert [without_usage(a.json()) for a in answers] == [without_usage(alone(world, world.alice, b).json())
                                                          for b in singles]


def test_the_window_closing_sends_a_partial_batch(world):
    bodies = [{"model": MODEL, "input": f"partial {n}"} for n in range(3)]
    expected = [alone(world, world.alice, b).json() for b in bodies]
    with batching(world, 1500) as g:  # far below the max of 100 inputs
        before, calls = g.counters(), mock_calls(world)
        started = time.monotonic()
        answers = asyncio.run(send(g, *((world.alice, b) for b in bodies)))
        assert time.monotonic() - started >= 1.5
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 1}
        assert batch_counts(before, g.counters()) == (1, 3, 3)
        assert max(phases(a)["batch"] for a in answers) >= 1490  # the first request waited the window out
        (lone,) = asyncio.run(send(g, (world.alice, bodies[0])))  # a batch of one goes as it would alone
        assert lone.json() == expected[0] and phases(lone)["batch"] >= 1490
        assert batch_counts(before, g.counters()) == (1, 3, 4)
    assert [without_usage(a.json()) for a in answers] == [without_usage(e) for e in expected]


@pytest.mark.parametrize("model,status", [("openai/fail-500", 502), ("openai/fail-429", 429)])
def test_an_upstream_error_reaches_every_request_of_the_batch(world, model, status):
    body = {"model": model, "input": "x"}
    expected = alone(world, world.alice, body)
    assert expected.status_code == status
    with batching(world, LONG, max_inputs=3) as g:
        start, calls = last_usage_id(g), mock_calls(world)
        answers = asyncio.run(send(g, *[(world.alice, body)] * 3))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 1}
        for a in answers:
            assert (a.status_code, a.json()) == (status, expected.json())
            assert a.headers.get("Retry-After") == expected.headers.get("Retry-After")
        upstream_status = 500 if status == 502 else 429
        assert [r[1:] for r in usage_rows(g, start)] == [("openai", model.split("/")[1], upstream_status, None)] * 3


def test_a_client_that_went_away_leaves_the_others_whole(world, caplog):
    bodies = [{"model": MODEL, "input": f"gone {n}"} for n in range(3)]
    expected = [alone(world, world.alice, b).json() for b in bodies]

    async def run(g: GatewayThread) -> list[httpx.Response]:
        gone = asyncio.ensure_future(send(g, (world.alice, bodies[0])))
        await waiting(g, 1)
        gone.cancel()  # its connection closes while its request waits in the batch
        return await send(g, (world.alice, bodies[1]), (world.alice, bodies[2]))

    caplog.set_level(logging.WARNING)
    with batching(world, LONG, max_inputs=3) as g:
        calls = mock_calls(world)
        answers = asyncio.run(run(g))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 1}
    assert [without_usage(a.json()) for a in answers] == [without_usage(e) for e in expected[1:]]
    assert not [r for r in caplog.records if r.name.startswith(("forge_ref", "tornado", "asyncio"))]


def test_batching_off_is_one_call_per_request(world):
    body = {"model": MODEL, "input": "off"}
    with batching(world, 0) as g:
        assert g.gw.embeddings_batcher is None
        before, calls = g.counters(), mock_calls(world)
        answers = asyncio.run(send(g, *[(world.alice, body)] * 4))
        assert delta(calls, mock_calls(world)) == {"openai.embeddings": 4}
        counted = delta(before, g.counters())
        assert counted["upstream_requests"] == 4 and not {k for k in counted if k.startswith("embeddings_")}
        assert all("batch" not in phases(a) for a in answers)
        stats = httpx.get(g.url + "/_stats", headers=h(g.settings.admin_token)).json()["counters"]
        assert {"embeddings_batches", "embeddings_batched_requests", "embeddings_batch_waits",
                "embeddings_batch_wait_ms"} <= set(stats)
    assert [a.json() for a in answers] == [alone(world, world.alice, body).json()] * 4
