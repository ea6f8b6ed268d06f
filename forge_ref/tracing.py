"""Counting and tracing: the one module that owns the cost counters and the per-request trace.

Every cost point calls this module exactly once, through the process's ``Tracer``:

    the DB hook (both stores) ......... ``db_statement``      db_queries / db_writes / db_background_queries
    ``Crypto.decrypt`` ................ ``decryption``        decryptions
    the upstream client wrapper ....... ``upstream_call``     upstream_requests / upstream_model_list_requests
    the cache lookups and loads ....... ``Layer`` methods     cache.<layer>.hits / misses / ... ; coalesced_waits
    a cache's background refreshes .... ``Layer`` methods     cache.<layer>.refreshes / refreshes_stored / ...
    a request joining one in flight ... ``count``             dedup_joins (the ``responses`` layer)
    the upstream clients' pool ........ ``upstream_pool_wait``  upstream_pool_waits / upstream_pool_wait_ms
    the PostgreSQL pool ............... ``db_pool_wait``      db_pool_waits / db_pool_wait_ms
    the embeddings batcher ............ ``embeddings_batch``  embeddings_batches / embeddings_batched_requests /
                                                              embeddings_batch_waits / embeddings_batch_wait_ms
    everything else ................... ``count``             services_built, invalidations, redis_*,
                                                              connections_*, accept_*, requests_cut, ...

Counters live in shared memory (``SharedCounters``), one row per process, so ``--processes N``
reports totals without an external service; each process writes only its own row, so no lock.

The trace: when something reads it (``Server-Timing`` or the access log is on), a request starts
a ``Trace`` and makes it current (a contextvar: each Tornado request runs in its own task, so
the value never leaks between requests). The cost points note on it which layers hit or
missed and what the request itself cost; the handler marks the phases. With tracing off the
cost points pay one contextvar read each, nothing else.

Work no request asked for (a cache refresh) runs through ``background_task``: in a context of
its own, so no request's trace sees it and its DB reads count as ``db_background_queries``.
"""

from __future__ import annotations

import asyncio
import mmap
import time
from contextvars import Context, ContextVar
from typing import Coroutine

COUNTERS = (
    "requests",
    "db_queries",
    "db_writes",
    "db_background_queries",
    "decryptions",
    "upstream_requests",
    "upstream_model_list_requests",
    "upstream_retries",
    "services_built",
    "adapters_built",
    "coalesced_waits",
    "invalidations",
    "redis_round_trips",
    "redis_hits",
    "redis_misses",
    "redis_errors",
    "upstream_pool_waits",
    "db_pool_waits",
    "embeddings_batches",
    "embeddings_batched_requests",
    "embeddings_batch_waits",
    "dedup_joins",
    "connections_accepted",
    "connections_refused",
    "accept_pauses",
    "accept_errors",
    "requests_cut",
)
# Total waits, kept in microseconds and shown in /_stats in milliseconds (``<pool>_pool_wait_ms``).
WAIT_TIMES = ("upstream_pool_wait_us", "db_pool_wait_us", "embeddings_batch_wait_us")
CACHE_LAYERS = ("user", "service", "models", "models_failures", "responses")
CACHE_STATS = ("hits", "misses", "evictions", "expirations", "size",
               "refreshes", "refreshes_stored", "refreshes_discarded", "refresh_failures")
SIZED_LAYERS = ("responses",)  # bounded by bytes: /_stats shows the bytes held too

_SLOTS = (list(COUNTERS) + list(WAIT_TIMES)
          + [f"cache.{layer}.{stat}" for layer in CACHE_LAYERS for stat in CACHE_STATS]
          + [f"cache.{layer}.bytes" for layer in SIZED_LAYERS])
_INDEX = {name: i for i, name in enumerate(_SLOTS)}
_WIDTH = 8  # bytes per slot, signed 64-bit

# What an upstream request is for -> the counter it costs.
UPSTREAM_COUNTERS = {"proxy": "upstream_requests", "models": "upstream_model_list_requests"}


class SharedCounters:
    """Rows of int64 counters in an anonymous ``MAP_SHARED`` mmap, created before ``fork``.

    ``bind(row)`` after fork picks this process's row (a single process: the same code, one row).
    """

    def __init__(self, rows: int = 1) -> None:
        self.rows = rows
        self._mem = mmap.mmap(-1, rows * len(_SLOTS) * _WIDTH)  # MAP_SHARED|MAP_ANONYMOUS
        self._all = memoryview(self._mem).cast("q")
        self.bind(0)

    def bind(self, row: int) -> None:
        n = len(_SLOTS)
        self._mine = self._all[row * n : (row + 1) * n]

    def totals(self) -> dict[str, int]:
        n = len(_SLOTS)
        sums = [0] * n
        for r in range(self.rows):
            row = self._all[r * n : (r + 1) * n]
            for i in range(n):
                sums[i] += row[i]
        return dict(zip(_SLOTS, sums))

    def reset(self) -> None:
        """Zero every counter of every process except cache sizes, which are state, not costs."""
        n = len(_SLOTS)
        keep = {i for name, i in _INDEX.items() if name.endswith((".size", ".bytes"))}
        for r in range(self.rows):
            for i in range(n):
                if i not in keep:
                    self._all[r * n + i] = 0


# --- the per-request trace ---------------------------------------------------------------------

_current: ContextVar["Trace | None"] = ContextVar("forge_ref_trace", default=None)
_background: ContextVar[bool] = ContextVar("forge_ref_background", default=False)

HIT, MISS = "hit", "miss"
# Layers a Server-Timing header names even when they have no phase of their own. Cache layers
# that are not the request's (``models_failures``) stay out of it.
TIMED_LAYERS = frozenset({"user", "service", "key", "adapter", "models", "responses"})


class Trace:
    """One request: which layers hit or missed, what it cost, how long each phase took.

    Phases are laps: ``lap(name)`` charges the time since the previous lap to ``name``, so they
    never overlap and never sum to more than the total.
    """

    __slots__ = ("start", "_mark", "layers", "phases", "points", "costs", "fields", "first_byte")

    def __init__(self) -> None:
        self.start = self._mark = time.perf_counter()
        self.layers: dict[str, str] = {}
        self.phases: dict[str, float] = {}
        self.points: dict[str, float] = {}  # moments (seconds since start) that are not phase ends
        self.costs: dict[str, int] = {}
        self.fields: dict = {}  # request facts for the access log: user id, provider, model, stream
        self.first_byte: float | None = None  # seconds from start to the response's first byte

    def __bool__(self) -> bool:
        return True

    def note(self, **fields) -> None:
        self.fields.update(fields)

    def point(self, name: str) -> None:
        self.points[name] = time.perf_counter() - self.start

    def sent_first_byte(self) -> None:
        self.first_byte = time.perf_counter() - self.start

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + (now - self._mark)
        self._mark = now

    def skip(self) -> None:
        """Start the next lap now: the time since the last one belongs to no phase."""
        self._mark = time.perf_counter()

    def layer(self, name: str, hit: bool) -> None:
        # A request that looks a layer up twice (model lists: one entry per provider) hit only
        # if every look-up hit.
        if hit and self.layers.get(name) == MISS:
            return
        self.layers[name] = HIT if hit else MISS

    def add(self, cost: str, n: int = 1) -> None:
        self.costs[cost] = self.costs.get(cost, 0) + n

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def server_timing(self) -> str:
        """The W3C ``Server-Timing`` value: layer names, hit or miss, and times in ms; nothing else.

        Phases in the order they ran, each with its layer's ``desc`` where it has one; layers
        without a phase of their own (``adapter``) as ``desc`` only; then ``gateway`` (the total
        less ``upstream``) and ``total``: the time to the response's first byte.
        """
        total = self.elapsed() if self.first_byte is None else self.first_byte
        layers, phases = self.layers, self.phases
        # One comprehension per kind of entry: this runs on every traced response (measured by
        # benchmarks.micro's request_trace_on).
        parts = [f'{name};desc="{layers[name]}";dur={dur * 1000:.3f}' if name in layers
                 else f"{name};dur={dur * 1000:.3f}" for name, dur in phases.items()]
        parts += [f'{name};desc="{state}"' for name, state in layers.items()
                  if name in TIMED_LAYERS and name not in phases]
        parts.append(f"gateway;dur={(total - phases.get('upstream', 0.0)) * 1000:.3f}, total;dur={total * 1000:.3f}")
        return ", ".join(parts)

    def log_fields(self) -> dict:
        """What the access log says of this request: its facts, layers, costs, phases and moments in ms."""
        out = dict(self.fields)
        out["cache"] = dict(self.layers)
        if self.costs:
            out["costs"] = dict(self.costs)
        out["phases_ms"] = {k: round(v * 1000, 3) for k, v in self.phases.items()}
        if self.points:
            out["at_ms"] = {k: round(v * 1000, 3) for k, v in self.points.items()}
        return out


class _NoTrace:
    """The trace of a request nobody reads (tracing off): every method does nothing."""

    __slots__ = ()
    costs: dict[str, int] = {}  # never written: ``add`` is a no-op here

    def __bool__(self) -> bool:
        return False

    def lap(self, phase: str) -> None: ...
    def skip(self) -> None: ...
    def layer(self, name: str, hit: bool) -> None: ...
    def note(self, **fields) -> None: ...
    def point(self, name: str) -> None: ...
    def sent_first_byte(self) -> None: ...


NO_TRACE = _NoTrace()


def begin() -> Trace:
    trace = Trace()
    _current.set(trace)
    return trace


def current() -> Trace | None:
    return _current.get()


def background_task(coro: Coroutine) -> asyncio.Task:
    """Run ``coro`` as work no request asked for (a cache refresh), in a fresh context.

    A task inherits its creator's context: started from a request, it would see that request's
    trace and bill it for costs it does not wait for. Here no trace is current, and DB reads
    count as ``db_background_queries`` (the ``/_stats`` contract: ``db_queries`` are a request's).
    """
    context = Context()
    context.run(_background.set, True)
    task = asyncio.get_running_loop().create_task(coro, context=context)
    # The loop keeps only a weak reference to a task: hold it until it ends (and so shutdown can wait for it).
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


_running: set[asyncio.Task] = set()


async def settle_background(timeout: float) -> None:
    """At shutdown, before the store closes: let background work end, for ``timeout`` s, then cancel it."""
    tasks = [t for t in _running if t.get_loop() is asyncio.get_running_loop()]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


# --- the meter: every cost point's one call ------------------------------------------------------


class Layer:
    """The cost points of one cache layer (hot path: a hit is a slot increment and a contextvar read)."""

    __slots__ = ("name", "_mine", "_hit", "_miss", "_evict", "_expire", "_size", "_waits",
                 "_refreshes", "_refreshed", "_discarded", "_refresh_failed", "_bytes")

    def __init__(self, name: str, mine: memoryview) -> None:
        self.name = name
        self._mine = mine
        self._hit, self._miss = _INDEX[f"cache.{name}.hits"], _INDEX[f"cache.{name}.misses"]
        self._evict, self._expire = _INDEX[f"cache.{name}.evictions"], _INDEX[f"cache.{name}.expirations"]
        self._size, self._waits = _INDEX[f"cache.{name}.size"], _INDEX["coalesced_waits"]
        self._refreshes, self._refreshed = _INDEX[f"cache.{name}.refreshes"], _INDEX[f"cache.{name}.refreshes_stored"]
        self._discarded = _INDEX[f"cache.{name}.refreshes_discarded"]
        self._refresh_failed = _INDEX[f"cache.{name}.refresh_failures"]
        self._bytes = _INDEX.get(f"cache.{name}.bytes")

    def hit(self) -> None:
        self._mine[self._hit] += 1
        trace = _current.get()
        if trace is not None:
            trace.layer(self.name, True)

    def miss(self) -> None:
        self._mine[self._miss] += 1
        trace = _current.get()
        if trace is not None:
            trace.layer(self.name, False)

    def second_tier_hit(self) -> None:
        """An L1 miss served by the shared tier (Redis): the layer still spared the source."""
        trace = _current.get()
        if trace is not None:
            trace.layers[self.name] = HIT

    def evicted(self, n: int = 1) -> None:
        self._mine[self._evict] += n

    def expired(self, n: int) -> None:
        self._mine[self._expire] += n

    def size(self, n: int) -> None:
        self._mine[self._size] = n

    def coalesced(self) -> None:
        self._mine[self._waits] += 1

    # A background refresh (refresh-ahead): started, then stored, discarded or failed.

    def refresh_started(self) -> None:
        self._mine[self._refreshes] += 1

    def refresh_stored(self) -> None:
        self._mine[self._refreshed] += 1

    def refresh_discarded(self) -> None:
        """An invalidation overtook the refresh: its value was not stored."""
        self._mine[self._discarded] += 1

    def refresh_failed(self) -> None:
        self._mine[self._refresh_failed] += 1

    def held(self, entries: int, nbytes: int) -> None:
        """A layer bounded by bytes (``SIZED_LAYERS``): its entries and the bytes they hold."""
        self._mine[self._size] = entries
        self._mine[self._bytes] = nbytes


class Tracer:
    """This process's meter over ``SharedCounters``; create it after ``bind`` (after fork)."""

    def __init__(self, counters: SharedCounters | None = None) -> None:
        self.counters = counters if counters is not None else SharedCounters(1)
        self._mine = self.counters._mine
        self._read, self._write = _INDEX["db_queries"], _INDEX["db_writes"]
        self._background = _INDEX["db_background_queries"]
        self._decrypt, self._requests = _INDEX["decryptions"], _INDEX["requests"]
        self._upstream = {purpose: _INDEX[name] for purpose, name in UPSTREAM_COUNTERS.items()}
        self._layers: dict[str, Layer] = {}

    # cost points

    def request(self) -> None:
        self._mine[self._requests] += 1

    def db_statement(self, sql: str, *, background: bool = False) -> None:
        """The DB hook of both stores: reads are ``db_queries``, the rest ``db_writes``."""
        if background or _background.get():  # not on behalf of a request (invalidation polling, refreshes)
            self._mine[self._background] += 1
            return
        if sql.lstrip()[:6].upper() == "SELECT":
            slot, name = self._read, "db_queries"
        else:
            slot, name = self._write, "db_writes"
        self._mine[slot] += 1
        trace = _current.get()
        if trace is not None:
            trace.add(name)

    def decryption(self) -> None:
        self._mine[self._decrypt] += 1
        trace = _current.get()
        if trace is not None:
            trace.add("decryptions")

    def upstream_call(self, purpose: str) -> None:
        self._mine[self._upstream[purpose]] += 1
        trace = _current.get()
        if trace is not None:
            trace.add(UPSTREAM_COUNTERS[purpose])

    def upstream_pool_wait(self, seconds: float, trace: Trace | None) -> None:
        """A request waited ``seconds`` for a pooled upstream connection, and has one now.

        The upstream clients call this when the connection is handed over, sometimes from another
        request's callback: they pass the request's own trace, where the wait is the ``pool`` phase."""
        self._pool_wait("upstream_pool", "pool", seconds, trace)

    def db_pool_wait(self, seconds: float) -> None:
        """A statement waited ``seconds`` for a pooled PostgreSQL connection: the ``db_pool`` phase."""
        self._pool_wait("db_pool", "db_pool", seconds, _current.get())

    def _pool_wait(self, pool: str, phase: str, seconds: float, trace: Trace | None) -> None:
        self._mine[_INDEX[f"{pool}_waits"]] += 1
        self._mine[_INDEX[f"{pool}_wait_us"]] += round(seconds * 1e6)
        if trace is not None:
            trace.add(f"{pool}_waits")
            trace.lap(phase)

    def embeddings_batch(self, waits: list[float]) -> None:
        """Embeddings requests went upstream as one call, after each waited ``waits[i]`` seconds for it.

        Every request that waited for a batch counts in ``embeddings_batch_waits``; a call that merged
        several is one of ``embeddings_batches`` and its requests are ``embeddings_batched_requests``.
        The call runs for no single request, so no trace gets these costs (the ``batch`` phase shows
        each request's wait)."""
        mine = self._mine
        if len(waits) > 1:
            mine[_INDEX["embeddings_batches"]] += 1
            mine[_INDEX["embeddings_batched_requests"]] += len(waits)
        mine[_INDEX["embeddings_batch_waits"]] += len(waits)
        mine[_INDEX["embeddings_batch_wait_us"]] += round(sum(waits) * 1e6)

    def count(self, name: str, n: int = 1) -> None:
        """Costs off the hot path (services built, invalidations, Redis round trips, ...)."""
        self._mine[_INDEX[name]] += n
        trace = _current.get()
        if trace is not None:
            trace.add(name, n)

    def layer(self, name: str) -> Layer:
        layer = self._layers.get(name)
        if layer is None:
            layer = self._layers[name] = Layer(name, self._mine)
        return layer

    # reading

    def totals(self) -> dict[str, int]:
        return self.counters.totals()

    def total(self, name: str) -> int:
        return self.totals()[name]

    def reset(self) -> None:
        self.counters.reset()

    def snapshot(self, layers: dict[str, bool]) -> dict:
        """The ``/_stats`` document (DESIGN contract: these names may grow, never be renamed)."""
        t = self.totals()
        caches = {}
        for layer in CACHE_LAYERS:
            stats = {stat: t[f"cache.{layer}.{stat}"] for stat in CACHE_STATS}
            looked = stats["hits"] + stats["misses"]
            stats["hit_ratio"] = round(stats["hits"] / looked, 4) if looked else 0.0
            if layer in SIZED_LAYERS:
                stats["bytes"] = t[f"cache.{layer}.bytes"]
            caches[layer] = stats
        counters = {name: t[name] for name in COUNTERS}
        for name in WAIT_TIMES:
            counters[name.removesuffix("_us") + "_ms"] = round(t[name] / 1000, 3)
        return {
            "caches_enabled": dict(layers),
            "counters": counters,
            "caches": caches,
            "processes": self.counters.rows,
        }
