"""Both upstream clients against the real mock: plain, streaming, timeouts, refused, cancel."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from support import MockProcess, free_port

from forge_ref.errors import UpstreamError, UpstreamTimeout
from forge_ref.upstream import UpstreamRequest, make_upstream

CLIENTS = ["curl", "httpx", "aiohttp"]


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


# --- no silent duplicate upstream calls ------------------------------------------------------------


class ScriptedServer:
    """A raw HTTP/1.1 upstream on loopback whose n-th request gets the n-th scripted answer.

    ``ok``: 200 with a keep-alive JSON body; ``drop``: read the whole request, then close the
    connection without a byte (a provider that crashed mid-request); ``ok-close-idle``: 200, then
    close the kept-alive connection after 50 ms of idleness (a provider's keep-alive timeout);
    ``slow``: 200 after 100 ms.
    ``received`` counts complete requests, which is what a provider bills.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.received: list[str] = []  # request lines, in order
        self.connections = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.received.append(head.split(b"\r\n", 1)[0].decode())
                action = self.script.pop(0) if self.script else "ok"
                if action == "drop":
                    break
                if action == "slow":
                    await asyncio.sleep(0.1)
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                if action == "ok-close-idle":
                    await asyncio.sleep(0.05)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def close(self) -> None:
        self._server.close()


def _call(method: str, url: str) -> UpstreamRequest:
    body = b'{"model": "x"}' if method == "POST" else None
    return UpstreamRequest(method, url + "/v1/thing", {"Content-Type": "application/json"}, body)


def scripted(name: str, script: list[str], calls: list[tuple[str, float]]):
    """Run ``calls`` ((method, seconds to wait first), ...) one after another through one client."""
    from forge_ref.tracing import Tracer

    async def main():
        server = ScriptedServer(script)
        url = await server.start()
        tracer = Tracer()
        client = make_upstream(name, max_connections=1, connect_timeout=1.0, read_timeout=5.0, tracer=tracer)
        outcomes = []
        try:
            for method, wait in calls:
                await asyncio.sleep(wait)
                try:
                    outcomes.append((await client.send(_call(method, url))).status)
                except UpstreamError as exc:
                    outcomes.append(exc.status)
        finally:
            client.close()
            server.close()
            await asyncio.sleep(0)
        return outcomes, server, tracer.totals()

    return asyncio.run(main())


@pytest.mark.parametrize("name", CLIENTS)
def test_a_post_the_provider_received_and_dropped_is_not_sent_again(name):
    """The second POST goes out on the kept-alive connection, is read by the provider, and the
    connection closes with no answer: the request may have been processed (and billed), so it is
    a 502, never a silent second call (libcurl re-sends in this case unless told not to)."""
    outcomes, server, totals = scripted(name, ["ok", "drop"], [("POST", 0), ("POST", 0), ("POST", 0)])
    assert outcomes == [200, 502, 200]
    assert len(server.received) == 3  # one call each, the dropped one included
    assert totals["upstream_retries"] == 0


@pytest.mark.parametrize("name", CLIENTS)
def test_an_idle_connection_the_provider_closed_is_not_used(name):
    """The provider closes a kept-alive connection while it is idle: the next request, which it
    never received, succeeds on a new connection, and reaches it once. (libcurl looks at pooled
    connections only once a second, so it usually tries the dead one first and then goes again:
    a retry, counted, of a request the provider provably never got; httpx looks every time.)"""
    outcomes, server, totals = scripted(name, ["ok-close-idle"], [("POST", 0), ("POST", 0.15)])
    assert outcomes == [200, 200]
    assert len(server.received) == 2 and server.connections == 2
    assert totals["upstream_retries"] <= (1 if name == "curl" else 0)


@pytest.mark.parametrize("name, expected", [("curl", ([200, 200, 200], 4, 1)), ("httpx", ([200, 502, 200], 3, 0)),
                                            ("aiohttp", ([200, 200, 200], 4, 1))])
def test_a_model_list_get_may_go_again_and_is_counted(name, expected):
    """A GET is idempotent: libcurl's re-send on a fresh connection is allowed, and counted."""
    outcomes, server, totals = scripted(name, ["ok", "drop"], [("GET", 0), ("GET", 0), ("GET", 0)])
    assert (outcomes, len(server.received), totals["upstream_retries"]) == expected


# --- waiting for a pooled connection ---------------------------------------------------------------


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
def test_a_request_that_finds_every_connection_busy_waits_and_the_wait_is_counted(name, stream):
    """Three requests at once through a pool of one connection, each answered after 100 ms: the
    second and third wait (one wait each, counted with its time, and a ``pool`` phase in their
    traces); the first does not. A stream holds its connection until it is read to the end."""
    from forge_ref import tracing
    from forge_ref.tracing import Tracer

    async def main():
        server = ScriptedServer(["slow"] * 3)
        url = await server.start()
        tracer = Tracer()
        client = make_upstream(name, max_connections=1, connect_timeout=1.0, read_timeout=5.0, tracer=tracer)

        async def one():
            trace = tracing.begin()  # each task has its own context: its own current trace
            if stream:
                body = await (await client.open_stream(_call("POST", url))).read_all()
            else:
                body = (await client.send(_call("POST", url))).body
            trace.lap("upstream")
            return body, trace

        try:
            results = await asyncio.gather(one(), one(), one())
        finally:
            client.close()
            server.close()
            await asyncio.sleep(0)
        return results, server, tracer

    results, server, tracer = asyncio.run(main())
    assert [body for body, _ in results] == [b'{"ok": true}'] * 3
    assert len(server.received) == 3 and server.connections == 1
    totals = tracer.totals()
    assert totals["upstream_pool_waits"] == 2
    waits = sorted(trace.phases.get("pool", 0.0) for _, trace in results)
    assert waits[0] == 0.0 and waits[1] >= 0.09 and waits[2] >= 0.19, waits
    assert [trace.costs.get("upstream_pool_waits", 0) for _, trace in results].count(1) == 2
    # the counter holds the waits (in microseconds); a trace's pool phase also holds its time before it queued
    counted = totals["upstream_pool_wait_us"] / 1e6
    assert counted >= 0.25 and 0 <= sum(waits) - counted < 0.05, (counted, waits)
    snap = tracer.snapshot({})
    assert snap["counters"]["upstream_pool_waits"] == 2
    assert snap["counters"]["upstream_pool_wait_ms"] == round(totals["upstream_pool_wait_us"] / 1000, 3)


def test_a_connection_closed_by_the_provider_is_seen_whatever_its_fd_number():
    """libcurl's sockets go past fd 1023 with a large pool (two files per request in flight); the
    look that tells a provider-closed idle connection from a live one must still see it."""
    import os
    import resource
    import socket

    from forge_ref.upstream import _Connections

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1600:
        pytest.skip("needs an open-file limit above 1600")
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    high = os.dup2(client.fileno(), 1500)
    try:
        conns = _Connections()
        conns.opened(high, 0)
        peer_ip, peer_port = client.getpeername()
        local_port = client.getsockname()[1]
        assert conns.closed_by_peer(peer_ip, peer_port, local_port) is False  # idle and alive
        server.close()
        for _ in range(100):  # the FIN arrives on loopback at once; allow for a loaded machine
            if conns.closed_by_peer(peer_ip, peer_port, local_port):
                break
            time.sleep(0.01)
        assert conns.closed_by_peer(peer_ip, peer_port, local_port) is True
    finally:
        os.close(high)
        client.close()
        listener.close()
