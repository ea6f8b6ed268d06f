"""A per-key sliding-window rate limit, as providers put on model listing."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Hashable


class SlidingWindow:
    """At most ``limit`` calls per key within any ``window`` seconds; refused calls do not count.

    Memory is ``limit`` timestamps per key that has called (a mock serves a bounded set of keys).
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._calls: dict[Hashable, deque[float]] = {}

    def hit(self, key: Hashable) -> int:
        """Count a call: 0 if allowed, else whole seconds until one is (a ``Retry-After``)."""
        now = self.clock()
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = deque()
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) < self.limit:
            calls.append(now)
            return 0
        return max(1, math.ceil(calls[0] + self.window - now))

    def reset(self) -> None:
        """Forget every call: each key starts a fresh window (``DELETE /_mock/stats``, between benchmark jobs)."""
        self._calls.clear()
