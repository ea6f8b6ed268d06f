"""Per-key limits enforced by the gateway itself.

``StreamLimiter``: at most ``FORGE_MAX_STREAMS_PER_KEY`` streams (chat, messages) open at
once per Forge key (per user, a user has one key), per process. Over the limit the request is
refused before any upstream call with 429 ``too_many_streams``. 0 means unlimited.

Per process on purpose: the count lives in a dict on the ``Gateway`` (no lock, no shared
memory, no network), so with ``--processes N`` a key may hold up to N times the limit. Streams
are long-lived and cheap to count; the point is to stop one key from pinning every upstream
connection of a process, which a per-process bound does.
"""

from __future__ import annotations

from .errors import ForgeError


class TooManyStreams(ForgeError):
    """The key already has the allowed number of streams open."""

    status = 429
    type = "rate_limit_error"
    code = "too_many_streams"


class StreamLimiter:
    __slots__ = ("limit", "_open")

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._open: dict[int, int] = {}

    def acquire(self, user_id: int) -> None:
        n = self._open.get(user_id, 0)
        if self.limit and n >= self.limit:
            raise TooManyStreams(f"this key already has {n} streams open; the limit is {self.limit} "
                                 "(FORGE_MAX_STREAMS_PER_KEY)", headers={"Retry-After": "1"})
        self._open[user_id] = n + 1

    def release(self, user_id: int) -> None:
        n = self._open.get(user_id, 0) - 1
        if n > 0:
            self._open[user_id] = n
        else:
            self._open.pop(user_id, None)  # bounded by streams open, not by users ever seen

    def __len__(self) -> int:
        return len(self._open)
