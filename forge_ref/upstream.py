"""The shared, pooled upstream HTTP client, behind a small seam with three implementations.

``AiohttpUpstream`` (``upstream_aiohttp``: one aiohttp ``ClientSession`` per process) is the
default: at concurrency 1 forge-ref spent about 0.93 ms of CPU per proxied request with it
against 1.10 ms with ``CurlUpstream`` (Tornado's ``CurlAsyncHTTPClient`` over pycurl), both on
asyncio's loop, and 0.85-0.89 ms on uvloop (``FORGE_EVENT_LOOP``; medians of interleaved rounds).
``CurlUpstream`` and ``HttpxUpstream`` stay for comparison (the benchmark runs them). All keep
upstream connections alive, apply connect and read timeouts, never follow redirects (a redirect
could point a stored key at another host), refuse a non-public peer when it is connected to
(``ssrf``), never send a request twice unless the provider provably never got it or it is
idempotent (counted as ``upstream_retries``), and map transport failures to ``UpstreamError``
(502) or ``UpstreamTimeout`` (504).

A stream is opened with ``open_stream``: it returns once the status line and headers are in,
so the caller can still answer with a proper status; ``close()`` stops the upstream read (a
client that went away must not keep the provider generating).

A request that finds every pooled connection busy waits for one; each client reports that
wait (``on_pool_wait(seconds, trace)``) the moment the request gets its connection, so the
wait is counted and is the request's ``pool`` phase.

``CountedUpstream`` wraps whichever client the gateway uses: the one place upstream calls,
model-list calls included, are counted (``tracing``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import select
import socket
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

from tornado.httpclient import HTTPClientError, HTTPRequest

from . import tracing
from .errors import UpstreamError, UpstreamTimeout
from .ssrf import blocked
from .tracing import Tracer

log = logging.getLogger("forge_ref.upstream")


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP request to a provider, as an adapter builds it.

    ``purpose`` says what it costs: ``proxy`` (chat, embeddings) or ``models`` (a model list).
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    purpose: str = "proxy"


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class UpstreamStream(Protocol):
    status: int
    headers: dict[str, str]

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def read_all(self) -> bytes: ...
    def close(self) -> None: ...


class UpstreamClient(Protocol):
    name: str

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse: ...
    async def open_stream(self, req: UpstreamRequest) -> UpstreamStream: ...
    def close(self) -> None: ...


# --- Tornado + pycurl --------------------------------------------------------------------------

_CURL_TIMEOUT = 28
_CURL_WRITE_ERROR = 23
_CURL_ABORTED_BY_CALLBACK = 42  # our PREREQFUNCTION refused to send a request a second time
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
PoolWait = Callable[[float, "tracing.Trace | None"], None]


def _no_pool_wait(seconds: float, trace: "tracing.Trace | None") -> None:
    pass


def _open_public_socket(purpose: int, address) -> object:
    """libcurl's OPENSOCKETFUNCTION: refuse a non-public peer (SSRF, DNS rebinding). Per connection."""
    import pycurl

    if blocked(address.addr[0]):
        log.warning("refused an upstream connection to non-public address %s", address.addr[0])
        return pycurl.SOCKET_BAD
    return socket.socket(address.family, address.socktype, address.protocol)


def _guard(curl) -> None:
    import pycurl

    curl.setopt(pycurl.OPENSOCKETFUNCTION, _open_public_socket)


class _Connections:
    """The sockets of one client's upstream connections, so a request can look at its own.

    libcurl re-sends a request by itself when a *reused* connection closes before any response
    byte. That happens in two cases it cannot tell apart: the provider closed the connection
    while it was idle (it never got the request: a new connection is right), or the provider
    read the request and then dropped the connection (it may have processed and billed it: a
    second send is a duplicate). libcurl checks pooled connections only once a second, so the
    first case is common under load. Right before each send (``PREREQFUNCTION``) we look at the
    connection's socket: an idle HTTP/1.1 connection has nothing to read, so a readable one was
    closed (or broken) by the provider before this request went out. Only then may a request
    that is not idempotent go again.

    libcurl hands each new socket to ``SOCKOPTFUNCTION``; its addresses, learnt at its first
    send, identify it among live sockets. Entries of closed sockets are replaced when their fd
    or addresses come back (closing is not hooked: pycurl cannot call back into Python for
    connections it closes after their handle went back to Tornado's free list).
    """

    def __init__(self) -> None:
        self._new: set[int] = set()  # fds created since the last look-up
        self._fds: dict[tuple, int] = {}  # (local port, peer ip, peer port) -> fd

    def opened(self, fd: int, purpose: int) -> int:
        import pycurl

        self._new.add(fd)
        return pycurl.SOCKOPT_OK

    def _learn(self) -> None:
        new, self._new = self._new, set()
        for fd in new:
            try:
                probe = socket.socket(fileno=fd)
            except OSError:  # closed already (a connection that failed)
                continue
            try:
                if probe.family not in (socket.AF_INET, socket.AF_INET6):
                    continue  # the number now belongs to another kind of socket
                local, peer = probe.getsockname(), probe.getpeername()
            except OSError:  # never connected: nothing to look at
                continue
            finally:
                probe.detach()  # the fd stays libcurl's
            self._fds[(local[1], peer[0], peer[1])] = fd

    def closed_by_peer(self, peer_ip: str, peer_port: int, local_port: int) -> bool:
        if self._new:
            self._learn()
        fd = self._fds.get((local_port, peer_ip, peer_port))
        if fd is None:
            return False
        poller = select.poll()  # not select(): it cannot take an fd above 1023, common with a large pool
        poller.register(fd, select.POLLIN)
        try:
            return bool(poller.poll(0))  # readable, hung up or in error: not an idle live connection
        except OSError:
            return False

    def setup(self, curl, method: str, on_retry: Callable[[], None]) -> None:
        import pycurl

        curl.setopt(pycurl.SOCKOPTFUNCTION, self.opened)
        curl.setopt(pycurl.PREREQFUNCTION, self._send_once(method, on_retry))

    def _send_once(self, method: str, on_retry: Callable[[], None]) -> Callable:
        import pycurl

        sends = 0
        never_received = False

        def prereq(primary_ip, local_ip, primary_port, local_port) -> int:
            nonlocal sends, never_received
            sends += 1
            if sends == 1:
                try:
                    never_received = self.closed_by_peer(primary_ip, primary_port, local_port)
                except Exception:  # an exception here would break the whole multi handle
                    log.exception("could not look at an upstream connection; it counts as alive")
                return pycurl.PREREQFUNC_OK
            if never_received or method in IDEMPOTENT:
                on_retry()
                return pycurl.PREREQFUNC_OK
            return pycurl.PREREQFUNC_ABORT  # -> 502; the provider may have the request

        return prereq


class _CurlStream:
    """Chunks from libcurl's write callback, handed to one async consumer."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._headers_done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._finished = False
        self._error: Exception | None = None
        self._cancelled = False

    # libcurl callbacks: called on the IOLoop thread from inside socket_action, so plain
    # method calls are safe; returning 0 from write aborts the transfer (CURLE_WRITE_ERROR).
    def on_header(self, line: bytes) -> None:
        text = line.decode("latin1").rstrip("\r\n")
        if text.startswith("HTTP/"):
            parts = text.split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.headers = {}
        elif text:
            name, _, value = text.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        elif not self._headers_done.done() and self.status >= 200:
            self._headers_done.set_result(None)

    def on_write(self, chunk: bytes) -> int:
        if self._cancelled:
            return 0
        self._chunks.append(chunk)
        self._wakeup.set()
        return len(chunk)

    def on_done(self, error: Exception | None) -> None:
        self._finished = True
        self._error = error
        self._wakeup.set()
        if not self._headers_done.done():
            if error is not None:
                self._headers_done.set_exception(error)
            else:
                self._headers_done.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self._finished:
                if self._error is not None and not self._cancelled:
                    raise self._error
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def read_all(self) -> bytes:
        return b"".join([c async for c in self])

    def close(self) -> None:
        self._cancelled = True


class _Queued:
    """One request's way through Tornado's queue, which holds what ``max_clients`` curl handles
    cannot take yet. With a handle free, Tornado takes the request right inside ``fetch``; one
    still queued when ``fetch`` returns waits until another request finishes."""

    __slots__ = ("trace", "since", "done")

    def __init__(self) -> None:
        self.trace = tracing.current()  # taken() runs in another request's callback
        self.since: float | None = None
        self.done = False

    def fetched(self) -> None:
        if not self.done:
            self.since = time.perf_counter()

    def taken(self, on_pool_wait: PoolWait) -> None:
        self.done = True
        if self.since is not None:
            on_pool_wait(time.perf_counter() - self.since, self.trace)


class CurlUpstream:
    name = "curl"

    def __init__(self, *, max_connections: int, connect_timeout: float, read_timeout: float,
                 refuse_private: bool = False, on_retry: Callable[[], None] = lambda: None,
                 on_pool_wait: PoolWait = _no_pool_wait) -> None:
        from tornado.curl_httpclient import CurlAsyncHTTPClient

        self._client = CurlAsyncHTTPClient(force_instance=True, max_clients=max_connections)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.refuse_private = refuse_private
        self.on_retry = on_retry
        self.on_pool_wait = on_pool_wait
        self._connections = _Connections()

    def _fetch(self, request: HTTPRequest, queue: _Queued) -> asyncio.Future:
        future = self._client.fetch(request, raise_error=False)
        queue.fetched()
        return future

    def _request(self, req: UpstreamRequest, timeout: float | None, stream_prepare=None):
        queue = _Queued()

        def prepare(curl) -> None:  # runs when Tornado takes the request from its queue
            queue.taken(self.on_pool_wait)
            self._connections.setup(curl, req.method, self.on_retry)
            if self.refuse_private:
                _guard(curl)
            if stream_prepare is not None:
                stream_prepare(curl)

        return HTTPRequest(
            req.url, method=req.method, headers=req.headers, body=req.body,
            connect_timeout=self.connect_timeout,
            request_timeout=timeout if timeout is not None else self.read_timeout,
            follow_redirects=False, decompress_response=True, allow_nonstandard_methods=True,
            prepare_curl_callback=prepare,
        ), queue

    @staticmethod
    def _error(code: int | None, message: str) -> UpstreamError:
        if code == _CURL_TIMEOUT:
            return UpstreamTimeout("upstream timed out")
        if code == _CURL_ABORTED_BY_CALLBACK:
            return UpstreamError("upstream closed the connection without answering; the request may have "
                                 "been received, so it was not sent again")
        return UpstreamError(f"upstream connection failed: {message}")

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse:
        try:
            resp = await self._fetch(*self._request(req, timeout))
        except HTTPClientError as err:  # Tornado raises transport errors (599) even with raise_error=False
            raise self._error(getattr(err, "errno", None), str(err)) from None
        except OSError as err:
            raise self._error(None, type(err).__name__) from None
        if resp.code == 599:
            err = resp.error
            raise self._error(getattr(err, "errno", None), str(err))
        return UpstreamResponse(resp.code, {k.lower(): v for k, v in resp.headers.get_all()}, resp.body or b"")

    async def open_stream(self, req: UpstreamRequest) -> _CurlStream:
        import pycurl

        stream = _CurlStream()

        def prepare(curl) -> None:
            curl.setopt(pycurl.HEADERFUNCTION, stream.on_header)
            curl.setopt(pycurl.WRITEFUNCTION, stream.on_write)
            # The read timeout is "no byte for N seconds", not a cap on a long generation.
            curl.setopt(pycurl.TIMEOUT_MS, 0)
            curl.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            curl.setopt(pycurl.LOW_SPEED_TIME, max(1, int(self.read_timeout)))

        fut = self._fetch(*self._request(req, None, prepare))

        def done(f: asyncio.Future) -> None:
            exc = f.exception()
            if exc is None and f.result().code == 599:
                exc = f.result().error
            if exc is None or (getattr(exc, "errno", None) == _CURL_WRITE_ERROR and stream._cancelled):
                stream.on_done(None)
            else:
                stream.on_done(self._error(getattr(exc, "errno", None), str(exc)))

        fut.add_done_callback(done)
        try:
            # libcurl's low-speed check alone lets a silent upstream hold a stream ~7 s past the
            # read timeout before any header arrives; the wait for headers is bounded here instead.
            await asyncio.wait_for(asyncio.shield(stream._headers_done), self.read_timeout)
        except asyncio.TimeoutError:
            stream.close()
            stream._headers_done.cancel()  # curl's own timeout ends the transfer later, quietly
            raise UpstreamTimeout("upstream timed out") from None
        return stream

    def close(self) -> None:
        self._client.close()


# --- httpx -------------------------------------------------------------------------------------


class _HttpxStream:
    def __init__(self, response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = {k.lower(): v for k, v in response.headers.items()}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamTimeout("upstream timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {type(exc).__name__}") from None
        finally:
            await self._response.aclose()

    async def read_all(self) -> bytes:
        return b"".join([c async for c in self])

    def close(self) -> None:
        asyncio.ensure_future(self._response.aclose())


class _PublicOnlyBackend:
    """httpcore network backend that refuses a non-public peer once connected (before any byte is sent)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        import httpcore

        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        peer = stream.get_extra_info("server_addr")
        if peer is None or blocked(peer[0]):
            await stream.aclose()
            log.warning("refused an upstream connection to non-public address %s", peer and peer[0])
            raise httpcore.ConnectError("refused: non-public upstream address")
        return stream

    def __getattr__(self, name):  # sleep, connect_unix_socket
        return getattr(self._inner, name)


class _HttpxPoolWait:
    """httpx's ``trace`` extension on a request that found the pool full: its first event (a new
    connection's connect, or the request's headers on a kept-alive one) is when it got a connection."""

    __slots__ = ("since", "trace", "report")

    def __init__(self, report: PoolWait) -> None:
        self.since = time.perf_counter()
        self.trace = tracing.current()
        self.report: PoolWait | None = report

    async def __call__(self, event: str, info: dict) -> None:
        if self.report is not None:
            self.report(time.perf_counter() - self.since, self.trace)
            self.report = None


class HttpxUpstream:
    name = "httpx"

    def __init__(self, *, max_connections: int, connect_timeout: float, read_timeout: float,
                 refuse_private: bool = False, on_pool_wait: PoolWait = _no_pool_wait) -> None:
        import httpx

        self._httpx = httpx
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        transport = httpx.AsyncHTTPTransport(limits=limits)
        self._pool = transport._pool  # httpx has no public hook for the pool (or the network backend)
        self._max_connections = max_connections
        self.on_pool_wait = on_pool_wait
        if refuse_private:
            self._pool._network_backend = _PublicOnlyBackend(self._pool._network_backend)
        self._client = httpx.AsyncClient(transport=transport, timeout=self._timeout, follow_redirects=False)

    def _pool_full(self) -> bool:
        """httpcore queues a request when every connection is busy and no new one may be opened."""
        conns = self._pool.connections
        return len(conns) >= self._max_connections and not any(c.is_idle() or c.is_closed() for c in conns)

    def _build(self, req: UpstreamRequest, timeout: float | None):
        t = self._timeout if timeout is None else self._httpx.Timeout(timeout)
        extensions = {"trace": _HttpxPoolWait(self.on_pool_wait)} if self._pool_full() else None
        return self._client.build_request(req.method, req.url, headers=req.headers, content=req.body, timeout=t,
                                          extensions=extensions)

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse:
        httpx = self._httpx
        try:
            resp = await self._client.send(self._build(req, timeout))
        except httpx.TimeoutException:
            raise UpstreamTimeout("upstream timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {type(exc).__name__}") from None
        return UpstreamResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)

    async def open_stream(self, req: UpstreamRequest) -> _HttpxStream:
        httpx = self._httpx
        try:
            resp = await self._client.send(self._build(req, None), stream=True)
        except httpx.TimeoutException:
            raise UpstreamTimeout("upstream timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream connection failed: {type(exc).__name__}") from None
        return _HttpxStream(resp)

    def close(self) -> None:
        asyncio.ensure_future(self._client.aclose())


CLIENTS = ("curl", "httpx", "aiohttp")


def _client_class(name: str) -> type:
    if name == "aiohttp":
        from .upstream_aiohttp import AiohttpUpstream  # imported when chosen (it imports this module)

        return AiohttpUpstream
    return {"curl": CurlUpstream, "httpx": HttpxUpstream}[name]


class CountedUpstream:
    """Any upstream client, counted: each call costs ``upstream_requests`` or, for model lists,
    ``upstream_model_list_requests``, once, when it is sent."""

    def __init__(self, inner: UpstreamClient, tracer: Tracer) -> None:
        self.inner = inner
        self.name = inner.name
        self._tracer = tracer

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse:
        self._tracer.upstream_call(req.purpose)
        return await self.inner.send(req, timeout=timeout)

    async def open_stream(self, req: UpstreamRequest) -> UpstreamStream:
        self._tracer.upstream_call(req.purpose)
        return await self.inner.open_stream(req)

    def close(self) -> None:
        self.inner.close()


def make_upstream(name: str, *, max_connections: int, connect_timeout: float, read_timeout: float,
                  refuse_private: bool = False, tracer: Tracer | None = None) -> UpstreamClient:
    """``refuse_private``: the request-time SSRF guard (``ssrf``), on unless private upstreams are allowed.

    With a ``tracer`` the client is counted (the gateway); without, it is bare (the bare-proxy baseline).
    """
    try:
        cls = _client_class(name)
    except KeyError:
        raise SystemExit(f"forge-ref: unknown upstream client {name!r}; choose from {', '.join(CLIENTS)}") from None
    kw = {}
    if tracer is not None:
        kw["on_pool_wait"] = tracer.upstream_pool_wait
        if cls is not HttpxUpstream:  # httpx never re-sends a request by itself (tested)
            kw["on_retry"] = lambda: tracer.count("upstream_retries")
    client = cls(max_connections=max_connections, connect_timeout=connect_timeout, read_timeout=read_timeout,
                 refuse_private=refuse_private, **kw)
    return client if tracer is None else CountedUpstream(client, tracer)
