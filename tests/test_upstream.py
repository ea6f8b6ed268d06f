"""Both upstream clients against the real mock: plain, streaming, timeouts, refused, cancel."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from forge_ref.upstream import UpstreamRequest
from forge_ref.errors import UpstreamError, UpstreamTimeout
from forge_ref.upstream import make_upstream
from support import MockProcess, free_port

CLIENTS = ["curl", "httpx"]


def chat(mock_url: str, model: str = "gpt-4o-mini", stream: bool = False) -> UpstreamRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "stream": stream}
    return UpstreamRequest("POST", mock_url + "/openai/v1/chat/completions",
                           {"Authorization": "Bearer sk-x", "Content-Type": "application/json"}, orjson.dumps(body))


def run(coro_fn, name, **kw):
    async def main():
        client = make_upstream(name, max_connections=4, connect_timeout=1.0, read_timeout=kw.pop("read_timeout", 5.0))
        try:
            return await coro_fn(client)
        finally:
            client.close()
            await asyncio.sleep(0)

    return asyncio.run(main())


@pytest.mark.parametrize("name", CLIENTS)
def test_send(mock, name):
    async def go(client):
        return await client.send(chat(mock.url))

    resp = run(go, name)
    assert resp.status == 200
    assert "ping" in orjson.loads(resp.body)["choices"][0]["message"]["content"]
    assert resp.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("name", CLIENTS)
def test_stream_chunks(mock, name):
    async def go(client):
        stream = await client.open_stream(chat(mock.url, stream=True))
        return stream.status, b"".join([c async for c in stream])

    status, data = run(go, name)
    assert status == 200 and data.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize("name", CLIENTS)
def test_error_status_is_returned_not_raised(mock, name):
    async def go(client):
        return await client.send(chat(mock.url, model="fail-429"))

    resp = run(go, name)
    assert resp.status == 429 and resp.headers["retry-after"] == "7"


@pytest.mark.parametrize("name", CLIENTS)
def test_timeout_is_504(mock, name):
    async def go(client):
        return await client.send(chat(mock.url, model="hang"), timeout=0.5)

    with pytest.raises(UpstreamTimeout):
        run(go, name)


@pytest.mark.parametrize("name", CLIENTS)
def test_stream_idle_timeout(mock, name):
    async def go(client):
        await client.open_stream(chat(mock.url, model="hang", stream=True))

    with pytest.raises(UpstreamTimeout):
        run(go, name, read_timeout=1.0)


@pytest.mark.parametrize("name", CLIENTS)
def test_refused_is_502(name):
    async def go(client):
        return await client.send(chat(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(UpstreamError) as info:
        run(go, name)
    assert info.value.status == 502


@pytest.mark.parametrize("name", CLIENTS)
def test_drop_mid_stream_raises(mock, name):
    async def go(client):
        stream = await client.open_stream(chat(mock.url, model="drop-mid-stream", stream=True))
        return [c async for c in stream]

    with pytest.raises(UpstreamError):
        run(go, name)


@pytest.mark.parametrize("name", CLIENTS)
def test_close_stops_reading(name):
    slow = MockProcess("--chunks", "20", "--chunk-delay-ms", "100")
    try:
        async def go(client):
            loop = asyncio.get_running_loop()
            started = loop.time()
            stream = await client.open_stream(chat(slow.url, stream=True))
            got = []
            async for chunk in stream:
                got.append(chunk)
                stream.close()
                break
            return got, loop.time() - started

        got, elapsed = run(go, name)
        assert got and elapsed < 1.0  # 20 chunks x 100 ms would take 2 s
    finally:
        slow.stop()
