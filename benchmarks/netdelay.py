"""A TCP delay proxy: a network hop's round trip on loopback, where the kernel has no netem.

    python -m benchmarks.netdelay --port 15432 --target 127.0.0.1:5432 --delay-ms 1 [--jitter-ms 0.1]

Every connection to ``--port`` is forwarded to ``--target``; every chunk read in either direction
is written on at its arrival time plus the one-way delay (so a round trip gains twice
``--delay-ms``), plus a uniform ``±--jitter-ms`` when asked. Each direction keeps its chunks in
arrival order and arms one loop timer for the oldest: chunks pipelined behind each other are each
delayed once, not once per chunk before them. Jitter never reorders bytes (TCP cannot): a chunk
is never due before the one read ahead of it.

The loop runs on ``select()``, whose timeout has microsecond resolution; epoll's (asyncio's
default) and libuv's (uvloop) are rounded to whole milliseconds, which turned a 0.25 ms delay into
about 1 ms here (uvloop also cost several times the CPU per round trip, so it is not used). The
proxy serves a few connections, so ``select()``'s cost per descriptor does not matter. The
process also asks Linux for a 1 ns timer slack instead of 50 µs: a timer then fires about 40 µs
late instead of 90. SIGTERM or SIGINT closes the listener and every connection, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import random
import selectors
import signal
from collections import deque

HIGH_WATER = 1 << 20  # bytes queued in one direction before its source is paused
PR_SET_TIMERSLACK = 29


class _Direction:
    """The bytes of one direction: each chunk written at its arrival time + the delay, in order."""

    def __init__(self, link: _Link, src: asyncio.Transport | None) -> None:
        self.link, self.src = link, src
        self.dst: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes | None]] = deque()  # (due, chunk); None: end of stream
        self.queued = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.dst_paused = self.src_paused = False
        self.done = False  # end of stream delivered

    def feed(self, chunk: bytes | None) -> None:
        loop, proxy = self.link.loop, self.link.proxy
        delay = proxy.delay + (proxy.rng.uniform(-proxy.jitter, proxy.jitter) if proxy.jitter else 0.0)
        due = max(loop.time() + max(delay, 0.0), self.last_due)
        self.last_due = due
        self.queue.append((due, chunk))
        self.queued += len(chunk or b"")
        self._arm()
        self.update_reading()

    def attach(self, dst: asyncio.Transport) -> None:
        self.dst = dst
        self._arm()

    def _arm(self) -> None:
        if self.timer is None and self.queue and self.dst is not None:
            self.timer = self.link.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now, out, end = self.link.loop.time(), [], False
        while self.queue and self.queue[0][0] <= now:
            chunk = self.queue.popleft()[1]
            if chunk is None:
                end = True
                break
            out.append(chunk)
        if out and not self.dst.is_closing():
            self.dst.write(b"".join(out))  # what is due together goes out in one send
        self.queued -= sum(map(len, out))
        if end:
            self.queue.clear()
            self.done = True
            self.link.end(self)
            return
        self._arm()
        self.update_reading()

    def update_reading(self) -> None:
        """Pause the source while the destination's buffer or this queue is full."""
        pause = self.dst_paused or self.queued > HIGH_WATER
        if self.src is None or pause == self.src_paused or self.src.is_closing():
            return
        self.src_paused = pause
        (self.src.pause_reading if pause else self.src.resume_reading)()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class _Link:
    """One proxied connection: the client's transport, the target's, and a direction each way."""

    def __init__(self, proxy: DelayProxy, client: asyncio.Transport) -> None:
        self.proxy, self.loop = proxy, proxy.loop
        self.client, self.upstream = client, None
        self.task: asyncio.Task | None = None  # connecting to the target
        self.up = _Direction(self, client)  # client -> target
        self.down = _Direction(self, None)  # target -> client
        self.down.attach(client)

    def end(self, direction: _Direction) -> None:
        """End of stream delivered one way: half-close towards its destination; closed both ways, close."""
        if self.up.done and self.down.done:
            self.close()
        elif direction.dst.can_write_eof() and not direction.dst.is_closing():
            direction.dst.write_eof()
        else:
            self.close()

    def close(self) -> None:
        for d in (self.up, self.down):
            d.cancel()
        for t in (self.client, self.upstream):
            if t is not None:
                t.close()  # buffered bytes are still sent
        self.proxy.links.discard(self)


class _Side(asyncio.Protocol):
    """Either end of a link: what it reads goes into its direction; its buffer state throttles the other."""

    def __init__(self, link: _Link | None = None, inbound: str = "") -> None:
        self.link, self.inbound = link, inbound

    def _dirs(self) -> tuple[_Direction, _Direction]:
        """(the direction this side reads into, the one it is written by)."""
        up, down = self.link.up, self.link.down
        return (up, down) if self.inbound == "up" else (down, up)

    def data_received(self, data: bytes) -> None:
        self._dirs()[0].feed(data)

    def eof_received(self) -> bool:
        self._dirs()[0].feed(None)
        return True  # keep writing the other way until its end of stream is delivered too

    def connection_lost(self, exc: Exception | None) -> None:
        # An orderly end arrives as eof_received; this is a reset, a failed write or our own close.
        if self.link is not None:
            self.link.close()

    def pause_writing(self) -> None:
        self._dirs()[1].dst_paused = True
        self._dirs()[1].update_reading()

    def resume_writing(self) -> None:
        self._dirs()[1].dst_paused = False
        self._dirs()[1].update_reading()


class _Client(_Side):
    def __init__(self, proxy: DelayProxy) -> None:
        super().__init__(inbound="up")
        self.proxy = proxy

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.link = _Link(self.proxy, transport)
        self.proxy.links.add(self.link)
        self.link.task = self.proxy.loop.create_task(self._connect())

    async def _connect(self) -> None:
        link = self.link
        try:
            transport, _ = await link.loop.create_connection(lambda: _Side(link, "down"), *self.proxy.target)
        except OSError:
            link.close()
            return
        link.upstream = link.down.src = transport
        link.down.update_reading()
        link.up.attach(transport)
        if link not in self.proxy.links:  # closed while connecting
            transport.close()


class DelayProxy:
    """Forward connections to ``target`` (host, port), delaying each direction by ``delay`` seconds
    (± a uniform ``jitter``). ``await start()`` listens and returns the port; ``await close()`` stops."""

    def __init__(self, target: tuple[str, int], *, delay: float, jitter: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if delay < 0 or jitter < 0:
            raise ValueError("delay and jitter must be >= 0")
        self.target, self.delay, self.jitter = target, delay, jitter
        self.rng = rng or random.Random()
        self.links: set[_Link] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(lambda: _Client(self), host, port)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        for link in list(self.links):
            link.close()
            if link.task is not None:
                link.task.cancel()
        await self.server.wait_closed()
        await asyncio.sleep(0)  # let the transports run their connection_lost


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers have microsecond resolution (see the module docstring)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def tight_timers() -> bool:
    """Ask Linux to wake this process's timers with 1 ns slack; False where that is not possible."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


async def serve(target: tuple[str, int], port: int, delay: float, jitter: float, host: str = "127.0.0.1") -> None:
    proxy = DelayProxy(target, delay=delay, jitter=jitter)
    await proxy.start(host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.netdelay", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument("--target", required=True, help="HOST:PORT to forward to")
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction (RTT = 2 x this)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform jitter added to each chunk's delay (±)")
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--target {a.target!r}: expected HOST:PORT")
    if a.delay_ms < 0 or a.jitter_ms < 0:
        p.error("--delay-ms and --jitter-ms must be >= 0")
    tight_timers()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(serve((host, int(port)), a.port, a.delay_ms / 1000, a.jitter_ms / 1000, a.host))


if __name__ == "__main__":
    main()
