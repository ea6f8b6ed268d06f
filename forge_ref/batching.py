"""Request batching for embeddings: concurrent requests of one user to one model share one upstream call.

A request joins the open batch of its key: the same user, the same stored provider key, the same
upstream model, the same input form (strings or token arrays) and the same other parameters
(``dimensions``, ``encoding_format``, ``user``, ...). The first request of a batch starts its
window; the batch leaves when the window closes or when it holds ``max_inputs`` inputs. A request
that would take the batch over the maximum sends the open batch first and starts the next one; a
request that alone has more inputs than the maximum is not batched (it goes at once, alone).

A batch of one goes upstream exactly as the request would alone. A batch of several sends one
request whose ``input`` is every member's inputs in order, which each adapter translates as it
would any list (Gemini: one ``batchEmbedContents``), and the answer is split back: each member
gets its own embeddings, re-indexed from 0, its own ``model`` label, and its share of the usage.
The provider reports one total for the merged call; it is apportioned by each member's inputs,
exactly by length for token arrays, by UTF-8 length for strings (an estimate: byte-level BPE
tokenizers spend tokens roughly in proportion to bytes), with largest remainders so the shares
sum to the total exactly.

If the merged call fails, every member gets that error. The call runs in a task of its own, in
an empty context: no member's trace is charged with it, and a member whose client went away (or
whose task was cancelled) leaves the others whole.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from typing import Any

import orjson

from .adapters import KINDS, AdapterRegistry, adapter_class
from .adapters.base import Target
from .errors import ForgeError, UpstreamError
from .store import ProviderRow
from .tracing import Tracer

# Stands in for the label in a merged call's target, so the split can tell a label the adapter
# echoed back (Gemini: the members' own labels) from a model name the provider sent (OpenAI).
_MEMBER_LABEL = "\x00forge-batch-label"


class Refused(Exception):
    """The merged call got a failure status: each member records ``status``, then raises ``error``."""

    def __init__(self, status: int, error: ForgeError) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


def split_inputs(value: Any) -> tuple[str, list] | None:
    """``("text", strings)`` or ``("tokens", token arrays)``, or None when the input may not be merged.

    Only inputs a provider takes in any company merge: non-empty strings and non-empty arrays of
    integers. Anything else goes alone, so that its error is its own and not its batch's.
    """
    if isinstance(value, str):
        return ("text", [value]) if value else None
    if not isinstance(value, list) or not value:
        return None
    if _is_tokens(value):
        return "tokens", [value]  # one token array
    if all(isinstance(v, str) and v for v in value):
        return "text", value
    if all(isinstance(v, list) and v and _is_tokens(v) for v in value):
        return "tokens", value
    return None


def _is_tokens(value: list) -> bool:
    return all(type(v) is int for v in value)  # JSON true/false are not tokens


def apportion(total: int, weights: list[int]) -> list[int]:
    """``total`` in whole shares proportional to ``weights`` that sum to it exactly (largest remainders)."""
    whole = sum(weights)
    if whole <= 0:
        weights, whole = [1] * len(weights), len(weights)
    shares, rests = [], []
    for w in weights:
        share, rest = divmod(total * w, whole)
        shares.append(share)
        rests.append(rest)
    # The units left over go to the largest remainders; on a tie, to the earlier request.
    for i in sorted(range(len(weights)), key=lambda i: -rests[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclasses.dataclass(slots=True, eq=False)
class Member:
    """One client request in a batch."""

    target: Target
    body: dict
    inputs: list
    weight: int  # what its share of the usage is proportional to
    trace: Any  # tracing.Trace, or NO_TRACE
    future: asyncio.Future
    joined: float = dataclasses.field(default_factory=time.perf_counter)


def split_answer(out: dict, members: list[Member]) -> list[dict]:
    """The answer to a merged call (OpenAI's shape, from the adapter) as each member's own answer."""
    n = sum(len(m.inputs) for m in members)
    data = out.get("data")
    ordered: list[dict | None] = [None] * n
    for item in data if isinstance(data, list) else ():
        i = item.get("index") if isinstance(item, dict) else None
        if type(i) is int and 0 <= i < n:
            ordered[i] = item
    if not isinstance(data, list) or len(data) != n or any(item is None for item in ordered):
        raise UpstreamError(f"upstream answered {n} merged embeddings inputs with an unexpected body")
    usage = out.get("usage")
    shares = None
    if isinstance(usage, dict):
        weights = [m.weight for m in members]
        # Only counts can be apportioned; other usage fields are the merged call's and are left out.
        shares = {k: apportion(v, weights) for k, v in usage.items() if type(v) is int and v >= 0}
    answers, start = [], 0
    for j, m in enumerate(members):
        part = ordered[start : start + len(m.inputs)]
        start += len(m.inputs)
        answer = dict(out, data=[dict(item, index=i) for i, item in enumerate(part)])
        if out.get("model") == _MEMBER_LABEL:
            answer["model"] = m.target.label
        if shares is not None:
            answer["usage"] = {k: s[j] for k, s in shares.items()}
        answers.append(answer)
    return answers


@dataclasses.dataclass(slots=True, eq=False)
class _Batch:
    kind: str  # the provider kind: which adapter sends it
    members: list[Member] = dataclasses.field(default_factory=list)
    inputs: int = 0
    timer: asyncio.TimerHandle | None = None


class EmbeddingsBatcher:
    """The open batches of one process, by key; ``join`` puts a request in one."""

    def __init__(self, *, window_ms: float, max_inputs: int, adapters: AdapterRegistry, tracer: Tracer) -> None:
        self.window = window_ms / 1000
        self.max_inputs = max_inputs
        self._adapters = adapters
        self._tracer = tracer
        # The input forms a merged call of each provider kind can carry (none: never batched).
        self._merges = {kind: adapter_class(kind).embeddings_merge for kind in KINDS}
        self._open: dict[tuple, _Batch] = {}
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def __len__(self) -> int:
        """Requests waiting in open batches."""
        return sum(len(batch.members) for batch in self._open.values())

    def join(self, user_id: int, row: ProviderRow, target: Target, body: dict, trace: Any) -> asyncio.Future | None:
        """The future of this request's answer (an OpenAI-shaped dict), or None: it goes alone."""
        split = split_inputs(body.get("input"))
        if split is None or split[0] not in self._merges[row.kind] or len(split[1]) > self.max_inputs:
            return None
        form, inputs = split
        params = orjson.dumps({k: v for k, v in body.items() if k not in ("model", "input")},
                              option=orjson.OPT_SORT_KEYS)
        # The stored key's ciphertext changes whenever the key is updated: no secret in the key.
        key = (user_id, row.id, row.encrypted_key, target.base_url, target.model, form, params)
        batch = self._open.get(key)
        if batch is not None and batch.inputs + len(inputs) > self.max_inputs:
            self._close(key, batch)
            batch = None
        loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._open[key] = _Batch(row.kind)
            batch.timer = loop.call_later(self.window, self._close, key, batch)
        weight = sum(len(v) if form == "tokens" else len(v.encode()) for v in inputs)
        member = Member(target, body, inputs, weight, trace, loop.create_future())
        batch.members.append(member)
        batch.inputs += len(inputs)
        if batch.inputs >= self.max_inputs:
            self._close(key, batch)
        return member.future

    def _close(self, key: tuple, batch: _Batch) -> None:
        """Send ``batch`` now (its window closed, or it is full)."""
        if self._open.get(key) is batch:
            del self._open[key]
        batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._send(batch), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Batch) -> None:
        members = batch.members
        now = time.perf_counter()
        for m in members:
            m.trace.lap("batch")
            m.trace.note(batch=len(members))
        self._tracer.embeddings_batch([now - m.joined for m in members])
        try:
            answers = await self._call(batch.kind, members)
        except asyncio.CancelledError:
            for m in members:
                m.future.cancel()
            raise
        except Exception as exc:  # every member gets the batch's error, whatever it is
            for m in members:
                if not m.future.done():
                    m.future.set_exception(exc)
            return
        for m, answer in zip(members, answers):
            if not m.future.done():  # a cancelled member
                m.future.set_result(answer)

    async def _call(self, kind: str, members: list[Member]) -> list[dict]:
        first = members[0]
        if len(members) == 1:
            body, target = first.body, first.target
        else:
            body = dict(first.body, input=[v for m in members for v in m.inputs])
            target = dataclasses.replace(first.target, label=_MEMBER_LABEL)
        adapter, client, owned = self._adapters.get(kind)
        for m in members:
            m.trace.layer("adapter", not owned)
        try:
            resp = await client.send(adapter.embeddings_request(target, body))
        finally:
            if owned:
                client.close()
        if resp.status >= 300:  # a 3xx is not followed (SSRF) and not a success
            raise Refused(resp.status, adapter.error(resp.status, resp.body, resp.headers))
        out = adapter.embeddings_response(target, resp.body, body)
        return [out] if len(members) == 1 else split_answer(out, members)
