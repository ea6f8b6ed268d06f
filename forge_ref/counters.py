"""The cost counters: one slot per cost per process, in memory shared by forked processes.

Each process increments only its own row, so no lock is needed; ``/_stats`` in any process sums
the rows, which is how ``--processes N`` reports totals without an external service. The
memory is an anonymous ``MAP_SHARED`` mmap created before ``fork`` (single process: same code,
one row).
"""

from __future__ import annotations

import mmap

COUNTERS = (
    "requests",
    "db_queries",
    "db_writes",
    "db_background_queries",
    "decryptions",
    "upstream_requests",
    "upstream_model_list_requests",
    "services_built",
    "adapters_built",
    "coalesced_waits",
    "invalidations",
    "redis_round_trips",
    "redis_hits",
    "redis_misses",
    "redis_errors",
)
CACHE_LAYERS = ("user", "service", "models", "models_failures")
CACHE_STATS = ("hits", "misses", "evictions", "expirations", "size")

_SLOTS = list(COUNTERS) + [f"cache.{layer}.{stat}" for layer in CACHE_LAYERS for stat in CACHE_STATS]
_INDEX = {name: i for i, name in enumerate(_SLOTS)}
_WIDTH = 8  # bytes per slot, signed 64-bit


class SharedCounters:
    """Rows of int64 counters; ``bind(row)`` after fork picks this process's row."""

    def __init__(self, rows: int = 1) -> None:
        self.rows = rows
        self._mem = mmap.mmap(-1, rows * len(_SLOTS) * _WIDTH)  # MAP_SHARED|MAP_ANONYMOUS
        self._all = memoryview(self._mem).cast("q")
        self.bind(0)

    def bind(self, row: int) -> None:
        n = len(_SLOTS)
        self._mine = self._all[row * n : (row + 1) * n]

    def incr(self, name: str, n: int = 1) -> None:
        self._mine[_INDEX[name]] += n

    def set(self, name: str, value: int) -> None:
        self._mine[_INDEX[name]] = value

    def slot(self, name: str) -> int:
        """Index for hot paths that increment ``self._mine`` directly (saves a dict lookup)."""
        return _INDEX[name]

    def total(self, name: str) -> int:
        i, n = _INDEX[name], len(_SLOTS)
        return sum(self._all[r * n + i] for r in range(self.rows))

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
        keep = {i for name, i in _INDEX.items() if name.endswith(".size")}
        for r in range(self.rows):
            for i in range(n):
                if i not in keep:
                    self._all[r * n + i] = 0


def snapshot(counters: SharedCounters, layers: dict[str, bool]) -> dict:
    """The ``/_stats`` document (DESIGN contract: these names may grow, never be renamed)."""
    t = counters.totals()
    caches = {}
    for layer in CACHE_LAYERS:
        stats = {stat: t[f"cache.{layer}.{stat}"] for stat in CACHE_STATS}
        looked = stats["hits"] + stats["misses"]
        stats["hit_ratio"] = round(stats["hits"] / looked, 4) if looked else 0.0
        caches[layer] = stats
    return {
        "caches_enabled": dict(layers),
        "counters": {name: t[name] for name in COUNTERS},
        "caches": caches,
        "processes": counters.rows,
    }
