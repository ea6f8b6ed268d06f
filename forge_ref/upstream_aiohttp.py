"""The aiohttp upstream client: one ``ClientSession`` per process over a ``TCPConnector(limit=...)``.

How it keeps the seam's promises (``upstream``):

* SSRF: the connector's ``socket_factory`` sees the address each connection is about to
  connect to (IP literals included; the resolver is skipped for those), so a non-public peer is
  refused before any byte is sent, once per new connection.
* No silent duplicate calls: aiohttp re-sends a request only when its method is idempotent
  (RFC 9112 section 9.3.1: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and the connection failed
  before a response; a POST that the provider read and dropped is a 502. A kept-alive
  connection that the provider closed while idle is seen closed by the event loop and never
  used (tested). Each attempt takes a connection from the connector (a reused or a new one),
  which its trace signals say: every attempt after the first is counted as a retry.
* Waiting for a pooled connection (``limit`` reached) is the connector's queue; its trace
  signals time it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import SimpleNamespace
from typing import AsyncIterator, Callable

import aiohttp

from . import tracing
from .errors import UpstreamError, UpstreamTimeout
from .ssrf import blocked
from .upstream import UpstreamRequest, UpstreamResponse

log = logging.getLogger("forge_ref.upstream")


def _public_socket(addr_info) -> socket.socket:
    family, type_, proto, _, address = addr_info
    if blocked(address[0]):
        log.warning("refused an upstream connection to non-public address %s", address[0])
        raise OSError(f"refused: non-public upstream address {address[0]}")
    return socket.socket(family, type_, proto)


def _failure(exc: BaseException) -> UpstreamError:
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's timeout errors are TimeoutErrors too
        return UpstreamTimeout("upstream timed out")
    return UpstreamError(f"upstream connection failed: {type(exc).__name__}")


class _Attempts:
    """The connector's trace signals, per request (``trace_request_ctx``): retries and pool waits."""

    def __init__(self, on_retry: Callable[[], None], on_pool_wait: Callable[[float, object], None]) -> None:
        self.on_retry = on_retry
        self.on_pool_wait = on_pool_wait

    def config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_connection_queued_start.append(self._queued)
        config.on_connection_reuseconn.append(self._connection)
        config.on_connection_create_start.append(self._connection)
        return config

    @staticmethod
    async def _queued(session, ctx, params) -> None:
        state = ctx.trace_request_ctx
        if state.queued is None:  # the connector may queue a request more than once: the first counts
            state.queued = time.perf_counter()

    async def _connection(self, session, ctx, params) -> None:
        state = ctx.trace_request_ctx
        state.attempts += 1
        if state.attempts > 1:
            self.on_retry()
        if state.queued is not None:
            self.on_pool_wait(time.perf_counter() - state.queued, state.trace)
            state.queued = None


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.headers.items()}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc) from None
        finally:
            self._response.release()  # back to the pool when read to the end, else closed

    async def read_all(self) -> bytes:
        return b"".join([c async for c in self])

    def close(self) -> None:
        self._response.close()  # closes the connection: the provider stops sending


class AiohttpUpstream:
    name = "aiohttp"

    def __init__(self, *, max_connections: int, connect_timeout: float, read_timeout: float,
                 refuse_private: bool = False, on_retry: Callable[[], None] = lambda: None,
                 on_pool_wait: Callable[[float, object], None] = lambda seconds, trace: None) -> None:
        self.read_timeout = read_timeout
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0,
                                         socket_factory=_public_socket if refuse_private else None)
        # Not streaming, the read timeout bounds the whole answer; streaming, the gap between chunks.
        # ``connect`` covers the wait for a pooled connection too, bounded like httpx's pool timeout.
        self._answer_timeout = aiohttp.ClientTimeout(total=read_timeout, sock_connect=connect_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=read_timeout, sock_connect=connect_timeout,
                                                     sock_read=read_timeout)
        self._connect_timeout = connect_timeout
        self._attempts = _Attempts(on_retry, on_pool_wait)
        self._session = aiohttp.ClientSession(connector=connector, trace_configs=[self._attempts.config()],
                                              auto_decompress=True, trust_env=False)

    def _call(self, req: UpstreamRequest, timeout: aiohttp.ClientTimeout):
        state = SimpleNamespace(attempts=0, queued=None, trace=tracing.current())
        return self._session.request(req.method, req.url, headers=req.headers, data=req.body, timeout=timeout,
                                     allow_redirects=False, trace_request_ctx=state)

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse:
        limit = self._answer_timeout if timeout is None else aiohttp.ClientTimeout(
            total=timeout, sock_connect=self._connect_timeout)
        try:
            async with self._call(req, limit) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc) from None
        return UpstreamResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)

    async def open_stream(self, req: UpstreamRequest) -> _AiohttpStream:
        try:
            resp = await self._call(req, self._stream_timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _failure(exc) from None
        return _AiohttpStream(resp)

    def close(self) -> None:
        asyncio.ensure_future(self._session.close())
