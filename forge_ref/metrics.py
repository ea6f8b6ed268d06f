"""``/metrics``: the ``/_stats`` snapshot in Prometheus text format (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class _Snapshot:
    def __init__(self, snap: dict) -> None:
        self._snap = snap

    def collect(self):
        for name, value in self._snap["counters"].items():
            yield CounterMetricFamily(f"forge_{name}", f"forge-ref counter {name}", value=value)
        enabled = GaugeMetricFamily("forge_cache_enabled", "cache layer on (1) or off (0)", labels=["layer"])
        for layer, on in self._snap["caches_enabled"].items():
            enabled.add_metric([layer], 1 if on else 0)
        yield enabled
        for stat in ("hits", "misses", "evictions", "expirations",
                     "refreshes", "refreshes_stored", "refreshes_discarded", "refresh_failures"):
            fam = CounterMetricFamily(f"forge_cache_{stat}", f"cache {stat} per layer", labels=["layer"])
            for layer, stats in self._snap["caches"].items():
                fam.add_metric([layer], stats[stat])
            yield fam
        for stat in ("size", "hit_ratio"):
            fam = GaugeMetricFamily(f"forge_cache_{stat}", f"cache {stat} per layer", labels=["layer"])
            for layer, stats in self._snap["caches"].items():
                fam.add_metric([layer], stats[stat])
            yield fam


def render(snap: dict) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snap))
    return generate_latest(registry)
