"""Where a request's time goes, as the load generator sees it: forge-ref's ``Server-Timing`` header.

The runner starts forge-ref with ``FORGE_SERVER_TIMING=1``; the locustfile hands every response's
header to a ``Recorder``, which keeps two histograms and writes them when Locust quits (one file
per Locust process; the runner merges them):

- ``phases``: per phase (``user``, ``service``, ``key``, ``translate``, ``upstream``, ``respond``,
  ``gateway``, ``total``, ...) the gateway's own time, in microseconds;
- ``layers``: per endpoint and layer state (``user:hit``, ``service:miss``, ...) the latency the
  client saw, in milliseconds: the latency of hits against misses.

Values are bucketed to two significant digits (1.2 us, 13 us, 140 us, ...): about 1% resolution
at any scale, and a bounded number of buckets. Locust's own histograms round everything under
100 ms to a whole millisecond, too coarse for phases that take microseconds.
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

from .locust_stats import percentile


def parse(header: str) -> list[tuple[str, str | None, float | None]]:
    """``name;desc="x";dur=1.2, ...`` (W3C Server-Timing) -> [(name, desc, dur ms), ...]."""
    out = []
    for entry in header.split(","):
        name, *params = entry.strip().split(";")
        desc = dur = None
        for param in params:
            key, _, value = param.strip().partition("=")
            if key == "desc":
                desc = value.strip('"')
            elif key == "dur":
                try:
                    dur = float(value)
                except ValueError:
                    pass
        if name:
            out.append((name, desc, dur))
    return out


def bucket(value: float) -> float:
    """Two significant digits."""
    if value <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return round(round(value / scale) * scale, 6)


class Recorder:
    def __init__(self) -> None:
        self.phases: dict[str, dict[float, int]] = {}
        self.layers: dict[str, dict[float, int]] = {}

    @staticmethod
    def _add(hists: dict[str, dict[float, int]], key: str, value: float) -> None:
        hist = hists.setdefault(key, {})
        b = bucket(value)
        hist[b] = hist.get(b, 0) + 1

    def add_latency(self, key: str, ms: float) -> None:
        """One client latency under a key of the caller's own (``* turnover:near``), in milliseconds."""
        self._add(self.layers, key, ms)

    def add(self, endpoint: str, header: str, latency_ms: float) -> None:
        for name, desc, dur in parse(header):
            if dur is not None:
                self._add(self.phases, name, dur * 1000)
            if desc is not None:
                self._add(self.layers, f"{endpoint} {name}:{desc}", latency_ms)

    def write(self, path: str | Path) -> None:
        doc = {"phases_us": {k: {str(b): n for b, n in v.items()} for k, v in self.phases.items()},
               "layers_ms": {k: {str(b): n for b, n in v.items()} for k, v in self.layers.items()}}
        Path(path).write_text(json.dumps(doc))


def _summary(hist: dict[float, int]) -> dict:
    n = sum(hist.values())
    return {"n": n, "mean": round(sum(k * v for k, v in hist.items()) / n, 3) if n else None,
            "p50": percentile(hist, 0.5), "p90": percentile(hist, 0.9), "p99": percentile(hist, 0.99)}


def summarize(prefix: str | Path) -> dict | None:
    """The files ``<prefix>*.json`` of one measured window (one per Locust process), merged:
    ``{"phases_us": {phase: {n, mean, p50, p90, p99}}, "layers_ms": {"<endpoint> <layer>:<state>": {...}}}``.
    None when no response carried the header (not forge-ref, or Server-Timing off)."""
    merged: dict[str, dict[str, dict[float, int]]] = {"phases_us": {}, "layers_ms": {}}
    for path in sorted(glob.glob(f"{prefix}*.json")):
        doc = json.loads(Path(path).read_text())
        for section, hists in merged.items():
            for key, hist in doc.get(section, {}).items():
                into = hists.setdefault(key, {})
                for b, n in hist.items():
                    into[float(b)] = into.get(float(b), 0) + n
    if not any(merged.values()):
        return None
    return {section: {key: _summary(hist) for key, hist in sorted(hists.items())}
            for section, hists in merged.items()}
