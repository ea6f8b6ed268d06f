"""The HTTP server of one process: Tornado's ``HTTPServer`` with a connection cap and a drain.

Why a subclass with its own accept loop: Tornado accepts in ``netutil.add_accept_handler``, which
calls ``accept()`` up to 128 times per readiness event and lets every ``OSError`` but EAGAIN and
ECONNABORTED escape to the event loop. At the file limit ``accept`` fails with EMFILE while the
listening socket stays readable, so the loop runs the handler again at once and logs a traceback
each time (measured: 121,000 in 30 s, 72 MB of log, ``/health`` timing out). Wrapping the callback
cannot help (the error comes before it is called), so ``add_sockets`` registers its own reader:

  * at ``max_connections`` open connections it stops reading the listening sockets and starts
    again when one closes: new connections wait in the kernel's backlog and cost no CPU;
  * a failing ``accept`` (EMFILE, ENFILE, ENOBUFS, ...) stops it for ``ACCEPT_RETRY`` seconds;
  * a connection from an address that already has ``max_per_client`` open is closed at once;
  * each of these conditions logs one line per ``LOG_INTERVAL``, with its count since the last.

The timeouts are Tornado's own (``initialize`` arguments): ``idle_connection_timeout`` sets
``HTTP1ConnectionParameters.header_timeout``, the time from accept (or from the previous response)
to a complete request head, so it bounds idle keep-alive connections and trickled headers alike;
``body_timeout`` bounds the whole body once the head is in.

The drain (SIGTERM; ``lifecycle`` drives it): ``drain()`` accepts what is already queued, closes
the listening sockets and makes every response from then on ``Connection: close``;
``wait_drained()`` waits until no request is in flight, closing connections left idle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import select
import socket
import time
from collections import Counter
from typing import Any, Iterable

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from .settings import Settings
from .tracing import Tracer

log = logging.getLogger("forge_ref.server")

ACCEPT_BATCH = 128  # accepts per readiness event, as Tornado: other callbacks get their turn
ACCEPT_RETRY = 0.25  # seconds accepting pauses after accept() failed (out of descriptors or buffers)
LOG_INTERVAL = 10.0  # seconds between two log lines about the same condition
FD_HEADROOM = 64  # descriptors that are not pooled sockets: log files, SQLite's three files, epoll, pipes
RECHECK = 0.1  # seconds between looks at idle connections while draining


def raise_file_limit(settings: Settings) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start: every client
    connection is a descriptor, and so is every socket of the upstream, database and Redis pools.
    Say so when even the hard limit leaves the client connections less room than those pools."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux's default ceiling (nr_open)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # not allowed here: the cap follows the soft limit
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if settings.max_connections <= 0 and limit - own_sockets(settings) < limit // 2:
        log.warning("the open-file limit (%d) is small for pools of %d sockets (FORGE_UPSTREAM_MAX_CONNECTIONS, "
                    "database, Redis): client connections are capped at %d; raise it (ulimit -n) or lower "
                    "FORGE_UPSTREAM_MAX_CONNECTIONS", limit, own_sockets(settings), connection_cap(settings, limit))


def own_sockets(settings: Settings) -> int:
    """Descriptors the process may open itself: its upstream, database and Redis pools, and ``FD_HEADROOM``."""
    own = settings.upstream_max_connections + settings.db_pool_size + FD_HEADROOM
    if settings.cache_backend == "redis":
        own += settings.redis_max_connections + 1  # the pool and the invalidation subscriber
    return own


def connection_cap(settings: Settings, file_limit: int | None = None) -> int:
    """``FORGE_MAX_CONNECTIONS``, or the file limit (the soft RLIMIT_NOFILE) less ``own_sockets``,
    but at least half the limit."""
    if settings.max_connections > 0:
        return settings.max_connections
    if file_limit is None:
        file_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(file_limit - own_sockets(settings), file_limit // 2, 1)


class _Throttled:
    """A warning that may repeat thousands of times a second: one line per ``LOG_INTERVAL``,
    saying how often it happened since the previous line."""

    def __init__(self, message: str, timer=time.monotonic) -> None:
        self.message = message
        self._timer = timer
        self._since = 0
        self._last = -math.inf

    def __call__(self, *args: Any) -> None:
        self._since += 1
        now = self._timer()
        if now - self._last >= LOG_INTERVAL:
            log.warning(self.message + " (seen %d times since the last such line)", *args, self._since)
            self._since, self._last = 0, now


class _Tracked(httputil.HTTPMessageDelegate):
    """Passes a request's events on, telling the server when its head is in (it is then in flight)."""

    __slots__ = ("server", "server_conn", "request_conn", "inner")

    def __init__(self, server: "Server", server_conn: Any, request_conn: Any, inner: httputil.HTTPMessageDelegate):
        self.server, self.server_conn, self.request_conn, self.inner = server, server_conn, request_conn, inner

    def headers_received(self, start_line, headers):
        self.server._in_flight(self.server_conn, self.request_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class Server(HTTPServer):
    """``HTTPServer`` plus ``max_connections``, ``max_per_client`` and the drain (see the module doc)."""

    def initialize(self, request_callback: Any, *, max_connections: int, tracer: Tracer,
                   max_per_client: int = 0, **kwargs: Any) -> None:
        super().initialize(request_callback, **kwargs)
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self._tracer = tracer
        self._listeners: list[socket.socket] = []
        self._accepting = False
        self._draining = False
        self._open = 0
        self._clients: dict[IOStream, str] = {}  # with max_per_client: each connection's address
        self._per_client: Counter[str] = Counter()
        self._waiting: set = set()  # connections waiting for a request head
        self._busy: dict = {}  # connection -> its request in flight (head read, response not yet sent)
        self._changed = asyncio.Event()
        self._at_cap = _Throttled(
            "%d connections open, the cap (FORGE_MAX_CONNECTIONS): accepting paused until one closes")
        self._accept_failed = _Throttled("accept failed (%s): accepting paused for %.2f s")
        self._refused = _Throttled("%s already has %d connections open (FORGE_MAX_CONNECTIONS_PER_CLIENT): "
                                   "closed a new one")

    # --- accepting -------------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        self._loop = asyncio.get_running_loop()
        self._pause()
        self._listeners.extend(sockets)
        self._resume()

    def _resume(self) -> None:
        if self._accepting or self._draining or self._open >= self.max_connections:
            return
        for sock in self._listeners:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        self._accepting = True

    def _pause(self) -> None:
        if self._accepting:
            for sock in self._listeners:
                self._loop.remove_reader(sock.fileno())
            self._accepting = False

    def _accept(self, sock: socket.socket, limit: float = ACCEPT_BATCH) -> None:
        n = 0
        while n < limit:
            if self._open >= self.max_connections:
                self._pause()
                self._tracer.count("accept_pauses")
                self._at_cap(self._open)
                return
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return  # every queued connection is taken
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors, buffers or memory: the socket stays readable, so retrying at once
                # would spin. Anything else is no better retried at once.
                self._pause()
                self._tracer.count("accept_errors")
                self._accept_failed(exc.strerror or type(exc).__name__, ACCEPT_RETRY)
                self._loop.call_later(ACCEPT_RETRY, self._resume)
                return
            n += 1
            ip = address[0] if isinstance(address, tuple) else ""
            if self.max_per_client and self._per_client[ip] >= self.max_per_client:
                conn.close()
                self._tracer.count("connections_refused")
                self._refused(ip, self._per_client[ip])
                continue
            self._tracer.count("connections_accepted")
            stream = IOStream(conn, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size)
            if self.max_per_client:
                self._clients[stream] = ip
                self._per_client[ip] += 1
            self._open += 1
            self.handle_stream(stream, address)

    # --- connections and requests (HTTPServer's delegate methods) --------------------------------

    def start_request(self, server_conn: Any, request_conn: Any) -> httputil.HTTPMessageDelegate:
        # Called when a connection starts waiting for its next request head (the previous one answered).
        self._busy.pop(server_conn, None)
        self._waiting.add(server_conn)
        if self._draining:
            self._changed.set()
        return _Tracked(self, server_conn, request_conn, super().start_request(server_conn, request_conn))

    def _in_flight(self, server_conn: Any, request_conn: Any) -> None:
        self._waiting.discard(server_conn)
        self._busy[server_conn] = request_conn

    def on_close(self, server_conn: Any) -> None:
        super().on_close(server_conn)
        self._open -= 1
        self._waiting.discard(server_conn)
        self._busy.pop(server_conn, None)
        ip = self._clients.pop(server_conn.stream, None)
        if ip is not None:
            self._per_client[ip] -= 1
            if not self._per_client[ip]:
                del self._per_client[ip]  # bounded by the clients connected now, not by those ever seen
        if self._draining:
            self._changed.set()
        self._resume()

    # --- the drain -------------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop accepting, and close every connection once its current response is sent."""
        self._draining = True
        self.conn_params.no_keep_alive = True  # every request head read from now on: Connection: close
        for request_conn in self._busy.values():
            # These chose keep-alive when their head was read, and Tornado has no public way to
            # change that: set the flag its write_headers (Connection: close) and finish (close) read.
            request_conn._disconnect_on_finish = True
        self._pause()
        for sock in self._listeners:
            # Clients the kernel already connected would be reset by close(): take them and serve them.
            self._accept(sock, limit=math.inf)
            sock.close()
        self._listeners = []

    async def wait_drained(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every connection to close: those with a request in flight
        close after their response; idle ones are closed once none is in flight. True if none is left."""
        deadline = self._loop.time() + timeout
        while True:
            if not self._busy:
                self._close_quiet()
            if not self._open:
                return True
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, RECHECK))
            except TimeoutError:
                pass

    def _close_quiet(self) -> None:
        """Close the connections waiting for a request head that have nothing to read: one with bytes
        waiting is sending a request, which is served (with ``Connection: close``) instead of reset."""
        idle = {conn.stream.socket.fileno(): conn for conn in self._waiting if not conn.stream.closed()}
        poller = select.poll()
        for fd in idle:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            idle.pop(fd, None)
        for conn in idle.values():
            conn.stream.close()
