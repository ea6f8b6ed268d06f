"""Readiness (``GET /ready``) and the graceful stop of one server process (SIGTERM).

    GET /ready ... ``Lifecycle.not_ready()``: "draining" once SIGTERM arrived; otherwise the outcome
                   of the checks (the database answers ``SELECT 1``; Redis, when configured, a PING),
                   run at most once per ``READY_FRESH`` seconds and shared by concurrent probes
    SIGTERM ...... ``Lifecycle.shutdown(server, timeout, delay)``:
                   1. /ready answers 503; after ``delay`` (FORGE_SHUTDOWN_DELAY, 0 by default: time for
                      a load balancer to notice) ``server.drain()`` stops accepting and answers every
                      later request with ``Connection: close``
                   2. requests and streams in flight finish, for up to FORGE_SHUTDOWN_TIMEOUT seconds
                   3. the proxied requests still running are cancelled, and each answers the cut
                      (``absorb_cut``): a stream ends with an error event and ``data: [DONE]``, a
                      request not yet answered gets 503 ``shutting_down``
                   the caller then stops the timers, flushes usage and closes the gateway
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .errors import ForgeError
from .tracing import Tracer

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("forge_ref.lifecycle")

READY_FRESH = 1.0  # seconds a readiness outcome is reused: a flood of probes costs one check a second
READY_TIMEOUT = 2.0  # seconds a check may take before its service counts as not answering
CUT_GRACE = 2.0  # seconds the cut requests get to send their last frame or error


class ShuttingDown(ForgeError):
    """The server stopped (FORGE_SHUTDOWN_TIMEOUT) before this request was answered; retry elsewhere."""

    status = 503
    code = "shutting_down"

    def __init__(self, message: str = "the server is shutting down; retry the request") -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class NotReady(ForgeError):
    """``GET /ready``: this process should get no traffic (draining, or a service does not answer)."""

    status = 503
    code = "not_ready"


Check = tuple[str, Callable[[], Awaitable[Any]]]


class Lifecycle:
    def __init__(self, checks: list[Check], tracer: Tracer, *, timer: Callable[[], float] = time.monotonic) -> None:
        self.draining = False
        self.cutting = False
        self._checks = checks
        self._tracer = tracer
        self._timer = timer
        self._checked_at = -math.inf
        self._reason: str | None = None
        self._running: asyncio.Future | None = None
        self._in_flight: set[asyncio.Task] = set()

    # --- readiness -------------------------------------------------------------------------------

    async def not_ready(self) -> str | None:
        """None when this process should get traffic, else why not."""
        if self.draining:
            return "draining: this server is shutting down"
        if self._timer() - self._checked_at < READY_FRESH:
            return self._reason
        if self._running is None:
            self._running = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._running)

    async def _check(self) -> str | None:
        reason = None
        try:
            for name, check in self._checks:
                try:
                    async with asyncio.timeout(READY_TIMEOUT):
                        await check()
                except Exception as exc:  # a timeout included: the service does not answer
                    reason = f"the {name} does not answer ({type(exc).__name__})"
                    break
            self._reason, self._checked_at = reason, self._timer()
        finally:
            self._running = None
        return reason

    # --- the cut ---------------------------------------------------------------------------------

    def track(self, task: asyncio.Task) -> None:
        """A proxied request in flight: cancelled if it is still running at the shutdown timeout."""
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def absorb_cut(self) -> bool:
        """For ``except CancelledError``: True when the shutdown cut cancelled this request (the
        cancellation is then undone so the handler can still answer), False for any other."""
        if not self.cutting:
            return False
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()
        self._tracer.count("requests_cut")
        return True

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def shutdown(self, server: "Server", timeout: float, delay: float = 0.0) -> None:
        self.draining = True
        if delay > 0:
            await asyncio.sleep(delay)
        server.drain()
        if await server.wait_drained(timeout):
            return
        self.cutting = True
        log.warning("shutdown: %d proxied request(s) still running after %g s (FORGE_SHUTDOWN_TIMEOUT): "
                    "cutting them", self.in_flight, timeout)
        for task in list(self._in_flight):
            task.cancel()
        if not await server.wait_drained(CUT_GRACE):
            await server.close_all_connections()
