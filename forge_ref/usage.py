"""Usage rows, written off the request path: buffered in memory, flushed in batches.

A request only appends a tuple; a periodic flush writes the batch as one multi-row INSERT
(one ``db_writes`` per batch, not per request). A full buffer flushes early so memory stays
bounded under load.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .store import Store

log = logging.getLogger("forge_ref.usage")


class UsageRecorder:
    def __init__(self, store: Store, *, max_rows: int) -> None:
        self._store = store
        self._max_rows = max_rows
        self._rows: list[tuple] = []

    def record(self, user_id: int, provider: str, model: str, status: int,
               prompt_tokens: int | None, completion_tokens: int | None, latency_ms: float) -> None:
        self._rows.append((user_id, provider, model, status, prompt_tokens, completion_tokens,
                           round(latency_ms, 3), time.time()))
        if len(self._rows) >= self._max_rows:
            asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            await self._store.insert_usage(rows)
        except Exception:  # usage is telemetry: never fail requests over it, but say so
            log.exception("usage flush of %d rows failed", len(rows))

    def __len__(self) -> int:
        return len(self._rows)
