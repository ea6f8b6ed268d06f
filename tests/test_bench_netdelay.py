"""The TCP delay proxy (benchmarks/netdelay.py) against a local echo server, and the runner's side of it
(benchmarks/network.py).

Wall-clock bounds are generous on the slow side (a loaded machine only makes a round trip longer);
the fast side is exact: no byte is ever delivered before its delay has passed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from benchmarks import network, procs
from benchmarks.netdelay import DelayProxy, new_loop
from benchmarks.plan import Job, Options
from benchmarks.runner import check_addresses

REPO = Path(__file__).resolve().parents[1]


def run(coro):
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coro)


async def echo_server() -> tuple[asyncio.Server, int]:
    """Echoes every byte back; answers a half-close with its own once everything is echoed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def proxied(delay: float, jitter: float = 0.0, rng: random.Random | None = None):
    server, port = await echo_server()
    proxy = DelayProxy(("127.0.0.1", port), delay=delay, jitter=jitter, rng=rng)
    return server, proxy, await proxy.start()


async def ping_pong(port: int, n: int, size: int = 16) -> list[float]:
    """``n`` sequential round trips of ``size`` bytes on one connection: seconds each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        writer.write(b"x" * size)
        await reader.readexactly(size)
        times.append(time.monotonic() - t0)
    writer.close()
    return times


def test_a_round_trip_gains_twice_the_one_way_delay():
    async def main():
        server, proxy, port = await proxied(delay=0.005)
        direct = await ping_pong(server.sockets[0].getsockname()[1], 20)
        through = await ping_pong(port, 20)
        await proxy.close()
        server.close()
        return direct, through

    direct, through = run(main())
    assert min(through) >= 0.010  # never early: each direction waited its 5 ms
    assert median(through) - median(direct) < 0.010 + 0.006  # and not much later, even on a busy machine


def test_jitter_spreads_the_round_trips_around_the_delay():
    async def main():
        server, proxy, port = await proxied(delay=0.003, jitter=0.003, rng=random.Random(1))
        times = await ping_pong(port, 40)
        await proxy.close()
        server.close()
        return times

    times = run(main())
    assert min(times) < 0.005  # below 2 x 3 ms: only jitter makes a round trip shorter than the delay
    assert max(times) > 0.007


def test_pipelined_chunks_are_each_delayed_once_not_one_after_another():
    """30 chunks written 1 ms apart: the last echo is back ~2 x delay after it was sent, not 30 x."""
    delay = 0.020

    async def main():
        server, proxy, port = await proxied(delay=delay)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got, sent_at, back_at = bytearray(), [], {}

        async def read_all():
            while len(got) < 30 * 100:
                got.extend(await reader.read(65536))
                back_at[len(got)] = time.monotonic()

        reading = asyncio.create_task(read_all())
        for i in range(30):
            sent_at.append(time.monotonic())
            writer.write(bytes([i]) * 100)
            await asyncio.sleep(0.001)
        await reading
        writer.close()
        await proxy.close()
        server.close()
        return bytes(got), sent_at, back_at

    got, sent_at, back_at = run(main())
    assert got == b"".join(bytes([i]) * 100 for i in range(30))
    first_back = min(t for n, t in back_at.items() if n >= 100)
    assert first_back - sent_at[0] >= 2 * delay
    assert back_at[3000] - sent_at[-1] >= 2 * delay
    assert back_at[3000] - sent_at[-1] < 2 * delay + 0.030  # serial delays would take 30 x 40 ms = 1.2 s


def test_concurrent_connections_keep_their_bytes_in_order_under_jitter():
    """Jitter as large as the delay itself never reorders a stream, nor mixes streams."""

    async def client(port: int, n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rng = random.Random(n)
        messages = [f"{n}:{i}:".encode() + os.urandom(rng.randrange(1, 3000)).hex().encode() + b"\n"
                    for i in range(150)]
        for m in messages:  # pipelined: no waiting for the echo
            writer.write(m)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read()  # until the proxy passes on the echo server's end of stream
        writer.close()
        assert echoed == b"".join(messages)

    async def main():
        server, proxy, port = await proxied(delay=0.001, jitter=0.001, rng=random.Random(7))
        await asyncio.gather(*(client(port, n) for n in range(20)))
        await asyncio.sleep(0.05)
        left = len(proxy.links)
        await proxy.close()
        server.close()
        return left

    assert run(main()) == 0  # both ends closed: every link is gone


def test_close_ends_every_connection_and_refuses_new_ones():
    async def main():
        server, proxy, port = await proxied(delay=0.5)  # the data written below is still in flight
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"in flight")
        await asyncio.sleep(0.05)
        assert len(proxy.links) == 1
        t0 = time.monotonic()
        await proxy.close()
        eof = await asyncio.wait_for(reader.read(), 5)
        took = time.monotonic() - t0
        refused = False
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused = True
        writer.close()
        server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return eof, took, refused, proxy.links, pending

    eof, took, refused, links, pending = run(main())
    assert eof == b"" and took < 0.5  # closed at once, not after the delay
    assert refused and links == set() and pending == []


def test_an_unreachable_target_closes_the_client_connection():
    async def main():
        port = procs.free_port()  # nothing listens there
        proxy = DelayProxy(("127.0.0.1", port), delay=0.001)
        reader, writer = await asyncio.open_connection("127.0.0.1", await proxy.start())
        writer.write(b"hello")
        got = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await proxy.close()
        return got, proxy.links

    assert run(main()) == (b"", set())


def test_the_proxy_process_forwards_and_exits_cleanly_on_sigterm(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as target:
        port = procs.free_port()
        cmd = [sys.executable, "-m", "benchmarks.netdelay", "--port", str(port),
               "--target", f"127.0.0.1:{target.getsockname()[1]}", "--delay-ms", "1"]
        proc = procs.start("delay", cmd, tmp_path, cwd=str(REPO))
        try:
            procs.wait_listening(proc, port)
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(b"ping")
                target.settimeout(5)
                while True:  # the proxy's connections to the target: wait_listening's own came first
                    peer, _ = target.accept()
                    peer.settimeout(5)
                    if data := peer.recv(16):
                        break
                    peer.close()
                assert data == b"ping"
                os.kill(proc.pid, signal.SIGTERM)
                assert proc.popen.wait(10) == 0
                client.settimeout(5)
                assert client.recv(16) == b""  # the proxy closed the client's connection on its way out
                peer.close()
        finally:
            proc.stop()
    assert proc.log.read_text() == ""  # no traceback, no warning


def test_bad_arguments_are_refused_before_listening():
    for args in (["--target", "nohost", "--delay-ms", "1"], ["--target", "127.0.0.1:1", "--delay-ms", "-1"]):
        out = subprocess.run([sys.executable, "-m", "benchmarks.netdelay", "--port", "1", *args], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and ("HOST:PORT" in out.stderr or ">= 0" in out.stderr)
    with pytest.raises(ValueError):
        DelayProxy(("127.0.0.1", 1), delay=-0.001)


def test_urls_are_pointed_at_the_proxy_with_credentials_path_and_query_kept():
    url = "postgresql://u:p%40ss@db.internal:6543/forge?options=-csearch_path%3Dbench_1"
    assert network.address(url, "db") == ("db.internal", 6543)
    assert network.address("redis://127.0.0.1/0", "redis") == ("127.0.0.1", 6379)
    assert network.via(url, 15000) == "postgresql://u:p%40ss@127.0.0.1:15000/forge?options=-csearch_path%3Dbench_1"
    assert network.via("redis://127.0.0.1:6379/2", 15001) == "redis://127.0.0.1:15001/2"
    with pytest.raises(ValueError) as err:
        network.address("postgresql:///forge?host=/run/postgresql&password=secret", "db")
    assert "secret" not in str(err.value)


def test_a_run_that_cannot_put_a_proxy_in_front_of_a_service_stops_before_it_starts(tmp_path):
    far = [Job("forge-ref", "steady", "all", store="postgres", db_rtt_ms=2)]
    check_addresses(far, Options(out=tmp_path))  # the default TCP URLs
    with pytest.raises(SystemExit, match="needs a URL with a TCP host"):
        check_addresses(far, Options(out=tmp_path, postgres_url="postgresql:///forge?host=/run/postgresql"))
    check_addresses(far, Options(out=tmp_path, redis_url="unix:///run/redis.sock"))  # Redis is not delayed
    with pytest.raises(SystemExit, match="--net-jitter-ms"):
        check_addresses(far, Options(out=tmp_path, net_jitter_ms=-1))


def test_a_hop_measures_the_round_trip_it_adds(tmp_path, redis_url):
    direct = network.open_hop("redis", redis_url, 0, jitter_ms=0, raw=tmp_path, name="t", cpus=None)
    hop = network.open_hop("redis", redis_url, 4, jitter_ms=0, raw=tmp_path, name="t", cpus=None)
    try:
        assert direct.proc is None and direct.url == redis_url
        assert hop.url != redis_url and hop.proc.alive()
        rt = hop.round_trip
        assert rt["samples"] == network.SAMPLES and rt["probe"].startswith("PING")
        assert 4.0 <= rt["min_ms"] <= rt["p50_ms"] <= rt["p99_ms"] <= rt["max_ms"]
        assert rt["p50_ms"] < 4.0 + 3.0
        assert direct.round_trip["p50_ms"] < rt["p50_ms"] - 3.0
        entry = hop.record(0.25, 1000)
        assert entry["proxy"] == {"delay_ms": 2.0, "jitter_ms": 0, "cpu": None, "cpu_seconds": 0.25,
                                  "cpu_ms_per_request": 0.25}
        assert direct.record(None, 1000)["proxy"] is None
    finally:
        hop.stop()
    assert not hop.proc.alive() and hop.proc.popen.returncode == 0
