"""The chat path of requests that opted in to the response cache (the ``responses`` layer).

``CachedChat`` is mixed into ``handlers.ChatHandler`` (and so into ``messages.MessagesHandler``):
``post`` hands it a request whose ``Directive`` says to look up or to keep. It answers from the
cache (a hit: the kept bytes, or their replay as a stream), or joins the identical call in flight,
or starts one (``dedup``), and then follows that call in the client's own form. It also says
``X-Forge-Cache`` on every chat response, errors included, and gives up a client's seat on a
shared call the moment its connection closes. The handler's hooks do the API-specific parts:
``codec`` (assembling and replaying answers), ``_cache_scope``, ``_ingress``, ``_answer``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado.iostream import StreamClosedError

from . import dedup, responses
from .adapters.base import Target
from .errors import ForgeError
from .lifecycle import ShuttingDown
from .store import User


class CachedChat:
    """What ``ChatHandler`` does for opted-in requests; it relies on the handler's own methods."""

    forge_cache = responses.BYPASS  # X-Forge-Cache of this response
    seat: dedup.Seat | None = None  # this client's place on a shared call

    def _cache_state(self, state: str) -> None:
        self.forge_cache = state
        self.set_header("X-Forge-Cache", state)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("X-Forge-Cache", self.forge_cache)  # errors too: send_error cleared the headers
        super().write_error(status_code, **kwargs)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self.seat is not None:
            self.seat.leave()  # at once: the last client of a shared stream stops its upstream read

    async def _through_cache(self, layer: "responses.Responses", policy: "responses.Directive", body: dict,
                             user: User, row: Any, target: Target, started: float) -> None:
        stream = body.get("stream") is True
        if stream:
            self.gw.streams.acquire(user.id)  # 429 over FORGE_MAX_STREAMS_PER_KEY, hits and joiners too
        try:
            key = layer.key(self._cache_scope(), user.id, row, target.model, body)
            flight = None
            if policy.lookup:
                answer = await layer.lookup(key, policy.max_age)
                self.trace.lap("responses")
                if answer is not None:
                    layer.meter.hit()
                    self._cache_state(responses.HIT)
                    self._record(user, row, target, 200, started, 0, 0)  # the provider billed the first call only
                    if stream:
                        self._open_sse()
                        answer = self.codec.replay(answer, self.codec.wants_usage(body))
                    self.finish(answer)
                    return
                flight = layer.flights.get(key)
            leader = flight is None
            if leader:
                if policy.lookup:
                    layer.meter.miss()
                self._cache_state(responses.MISS if policy.lookup else responses.BYPASS)
                flight = self._launch(layer, policy, key, body, row, target)
            else:
                layer.joined()
                self._cache_state(responses.HIT)
            await self._follow(flight, leader, body, user, row, target, started)
        finally:
            if stream:
                self.gw.streams.release(user.id)

    def _launch(self, layer: "responses.Responses", policy: "responses.Directive", key: "responses.Key",
                body: dict, row: Any, target: Target) -> dedup.Flight:
        """Start the upstream call in a task of its own (``dedup``), which then owns the client it uses."""
        adapter, client, owned = self._adapter(row.kind)
        try:
            adapter, body = self._ingress(adapter, row, self.codec.prepare(body))
            req = self._translate(adapter.chat_request, target, body)
            streaming = body.get("stream") is True
            if streaming:
                translator = self._translate(adapter.chat_stream, target, body)
                produce = dedup.stream_call(client, req, adapter, translator, self.codec.assembler(), self.trace)
            else:
                produce = dedup.answer_call(client, req, adapter, lambda data: self._answer(adapter, target, data),
                                            self.codec.cacheable, self.trace)
        except BaseException:
            if owned:
                client.close()
            raise
        return layer.flights.start(key, streaming, produce, failure=self.codec.failure,
                                   store=layer.saver(key, policy.ttl), shared=policy.lookup,
                                   cleanup=client.close if owned else None)

    async def _follow(self, flight: dedup.Flight, leader: bool, body: dict, user: User, row: Any, target: Target,
                      started: float) -> None:
        """This client's part of a flight, in its own form; one usage row for it (see ``_follow_row``)."""
        self.seat = flight.take_seat()
        status = 200
        try:
            if body.get("stream") is not True:
                self.finish(await self._unless_cut(flight.whole()))
            elif not flight.streaming:
                answer = await self._unless_cut(flight.whole())
                self._open_sse()
                self.finish(self.codec.replay(answer, self.codec.wants_usage(body)))
            else:
                await self._unless_cut(flight.started())
                self._open_sse()
                status = await self._relay(flight, self.codec.wants_usage(body))
        except ForgeError as exc:
            status = 499 if self.client_gone else exc.status
            raise
        finally:
            self.seat.leave()
            self._follow_row(flight, leader, status, user, row, target, started)

    async def _relay(self, flight: dedup.Flight, usage: bool) -> int:
        """A shared stream's frames so far, then the live ones, to this client (the usage chunk if asked)."""
        sent = 0
        while True:
            frames = flight.frames
            if sent < len(frames):
                skip = None if usage else flight.usage_frame
                self.write(b"".join([f for f in frames[sent:] if f is not skip]))
                sent = len(frames)
                try:
                    await self.flush()
                except StreamClosedError:
                    self.client_gone = True
            if self.client_gone:
                return 499
            if flight.done:
                break
            try:
                await flight.changed()
            except asyncio.CancelledError:
                if not self.gw.lifecycle.absorb_cut():
                    raise
                # Still running at the shutdown timeout: this client's stream ends as a failure does.
                self.write(self.codec.failure(ShuttingDown()))
                self.finish()
                return ShuttingDown.status
        self.finish()
        return flight.status

    def _follow_row(self, flight: dedup.Flight, leader: bool, status: int, user: User, row: Any, target: Target,
                    started: float) -> None:
        """The leader's row holds what the provider billed, once the call ends (even if its client left
        before); a joiner's holds 0 tokens, as a hit's does."""
        latency = (time.perf_counter() - started) * 1000
        if not leader:
            tokens = (0, 0) if status == 200 else (None, None)
            self.gw.usage.record(user.id, row.provider, target.model, status, *tokens, latency)
            return
        flight.when_done(lambda f: self.gw.usage.record(user.id, row.provider, target.model, status, *f.tokens,
                                                        latency))
