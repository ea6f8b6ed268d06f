"""In-flight deduplication: concurrent identical opted-in requests of one user share one upstream call.

A ``Flight`` is one upstream call, run in its own task so that no client owns it: every client
request with its key (the leader, which started it, is one of them) takes a ``Seat`` and reads
from the flight what it needs in its own form. For a stream: the frames so far, then the live
ones (a late joiner catches up first); for an answer: the whole answer (a streamed one assembled).
A client that leaves gives up its seat; when the last seat of a stream is given up the task is
cancelled, which stops the upstream read (and nothing is stored). A non-streaming call always
runs to its end: its answer is whole and paid for, so it is stored. A failure reaches every seat
the same way: the error before anything was sent, the stream's error frames after.

Flights are per process; across processes and nodes only the stored answers are shared.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from .errors import ForgeError, UpstreamError
from .upstream import UpstreamRequest

log = logging.getLogger("forge_ref.dedup")

Produce = Callable[["Flight"], Awaitable[None]]
Store = Callable[[bytes], Awaitable[None]] | None


class Flight:
    """One upstream call and what its clients need from it. Written by its producer only."""

    __slots__ = ("key", "streaming", "frames", "usage_frame", "answer", "cacheable", "error", "status", "tokens",
                 "opened", "done", "storable", "seats", "task", "_changed", "_when_done")

    def __init__(self, key: Any, streaming: bool) -> None:
        self.key = key
        self.streaming = streaming
        self.frames: list[bytes] = []  # a stream's client-facing frames so far, one frame each
        self.usage_frame: bytes | None = None  # the frame only clients that asked for usage get
        self.answer: bytes | None = None  # the whole answer, in the non-streaming shape, once done
        self.cacheable = False
        self.error: ForgeError | None = None  # why there is no (whole) answer
        self.status = 200  # for the usage rows
        self.tokens: tuple[int | None, int | None] = (None, None)
        self.opened = False  # a stream's headers are in: clients may start theirs
        self.done = False
        self.storable = True  # False once the user's entries were dropped: an invalidation wins
        self.seats = 0
        self.task: asyncio.Task | None = None
        self._changed = asyncio.get_running_loop().create_future()
        self._when_done: list[Callable[[Flight], None]] = []

    # the producer's side

    def _wake(self) -> None:
        if not self._changed.done():
            self._changed.set_result(None)
        self._changed = asyncio.get_running_loop().create_future()

    def open(self) -> None:
        self.opened = True
        self._wake()

    def push(self, frames: list[bytes]) -> None:
        if frames:
            self.frames += frames
            self._wake()

    def fail(self, exc: ForgeError, frames: list[bytes] = ()) -> None:
        self.error, self.status = exc, exc.status
        self.push(list(frames))

    def finish(self) -> None:
        self.done = True
        self._wake()
        for callback in self._when_done:
            callback(self)

    # the clients' side

    async def changed(self) -> None:
        # Shielded: a client cancelled while it waits (the shutdown cut) must not cancel what the others wait on.
        await asyncio.shield(self._changed)

    async def whole(self) -> bytes:
        """The whole answer, or the flight's error raised."""
        while not self.done:
            await self.changed()
        if self.answer is None:
            raise self.error or UpstreamError("the shared streamed answer cannot be given as one JSON answer",
                                              code="shared_answer_unavailable")
        return self.answer

    async def started(self) -> None:
        """A stream's headers are in (clients may send theirs), or its error raised."""
        while not (self.opened or self.done):
            await self.changed()
        if not self.opened:
            raise self.error or UpstreamError("the upstream call ended before it answered")

    def when_done(self, callback: Callable[[Flight], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._when_done.append(callback)

    def take_seat(self) -> "Seat":
        self.seats += 1
        return Seat(self)


class Seat:
    """One client's place on a flight; ``leave`` is idempotent (a disconnect and the handler's end)."""

    __slots__ = ("flight", "_left")

    def __init__(self, flight: Flight) -> None:
        self.flight = flight
        self._left = False

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        flight = self.flight
        flight.seats -= 1
        if flight.seats == 0 and flight.streaming and not flight.done and flight.task is not None:
            flight.task.cancel()  # nobody receives the generation: stop reading (and paying for) it


class Flights:
    """The flights in progress in this process, by key; each runs in its own task."""

    def __init__(self) -> None:
        self._live: dict[Any, Flight] = {}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, key: Any) -> Flight | None:
        flight = self._live.get(key)
        # A stream whose last client left is stopping: nobody may join it.
        return None if flight is None or flight.task.cancelling() else flight

    def start(self, key: Any, streaming: bool, produce: Produce, *, failure: Callable[[ForgeError], bytes],
              store: Store, shared: bool, cleanup: Callable[[], None] | None = None) -> Flight:
        """Run ``produce`` in its own task; ``failure``: the frames that end a started stream on an error;
        ``store``: keep the whole answer; ``shared``: others may join."""
        flight = Flight(key, streaming)
        if shared:
            self._live[key] = flight
        flight.task = asyncio.ensure_future(self._fly(flight, produce, failure, store, cleanup))
        return flight

    async def _fly(self, flight: Flight, produce: Produce, failure, store: Store, cleanup) -> None:
        try:
            await produce(flight)
        except (asyncio.CancelledError, Exception) as exc:
            if not isinstance(exc, ForgeError):
                if not isinstance(exc, asyncio.CancelledError):
                    log.exception("a shared upstream call failed")
                exc = UpstreamError("the upstream call was stopped" if isinstance(exc, asyncio.CancelledError)
                                    else "the upstream call failed")
            flight.cacheable = False
            # Before the stream started, every client answers with the error; after, it ends their streams.
            flight.fail(exc, [failure(exc)] if flight.opened else ())
        finally:
            if cleanup is not None:
                cleanup()
        flight.finish()
        try:
            if store is not None and flight.cacheable and flight.storable and flight.answer is not None:
                await store(flight.answer)
        finally:
            # Joiners meanwhile got the finished flight; from now on they find the stored answer.
            if self._live.get(flight.key) is flight:
                del self._live[flight.key]

    def drop_user(self, user_id: int) -> None:
        """The user's entries were dropped: their flights may finish but neither store nor take joiners."""
        for key in [k for k in self._live if k[0] == user_id]:
            self._live.pop(key).storable = False


# --- the producers: one upstream call each, run by ``Flights._fly`` ----------------------------------


def answer_call(client, req: UpstreamRequest, adapter, answer: Callable[[bytes], tuple[bytes, Any, Any]],
                cacheable: Callable[[bytes], bool], trace) -> Produce:
    """A non-streaming call: ``answer`` turns the provider's body into the client's (and its tokens)."""

    async def produce(flight: Flight) -> None:
        trace.lap("translate")
        resp = await client.send(req)
        trace.lap("upstream")
        if resp.status >= 300:  # a 3xx is not followed (SSRF) and not a success
            raise adapter.error(resp.status, resp.body, resp.headers)
        out, prompt, completion = answer(resp.body)
        flight.answer, flight.tokens, flight.cacheable = out, (prompt, completion), cacheable(out)

    return produce


def stream_call(client, req: UpstreamRequest, adapter, translator, assembler, trace) -> Produce:
    """A stream: the translator's client-facing frames, one by one through the assembler, to every seat."""

    def deliver(blobs: list[bytes], flight: Flight) -> None:
        frames = assembler.feed(blobs)
        flight.usage_frame = assembler.usage_frame
        flight.push(frames)

    async def produce(flight: Flight) -> None:
        trace.lap("translate")
        stream = await client.open_stream(req)
        trace.point("upstream_headers")
        if stream.status >= 300:
            data = await stream.read_all()
            raise adapter.error(stream.status, data, stream.headers)
        flight.open()
        first = True
        try:
            async for chunk in stream:
                if first:  # Server-Timing on a stream: up to the first byte
                    trace.lap("upstream")
                    first = False
                deliver(translator.feed(chunk), flight)
            deliver(translator.close(), flight)
        except asyncio.CancelledError:
            stream.close()  # the last client left: stop reading (and paying for) the generation
            raise
        finally:
            result = translator.result
            counted = (result.prompt_tokens, result.completion_tokens)
            flight.tokens = counted if counted != (None, None) else assembler.tokens()
            trace.point("upstream_end")
        flight.answer, flight.cacheable = assembler.result()
        flight.error = result.error  # the translator ended the stream with an error frame of its own

    return produce
