"""The ``Gateway``: every long-lived object one server process uses, built by ``app.build_gateway``.

Handlers receive it through ``initialize`` (never a global); tests build the same object the
server runs and read its ``tracer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .adapters import AdapterRegistry
from .auth import Authenticator
from .batching import EmbeddingsBatcher
from .crypto import Crypto
from .invalidation import InvalidationPoller, Invalidator
from .limits import StreamLimiter
from .models import ModelLister
from .services import ServiceRegistry
from .settings import Settings
from .store import Store
from .tracing import Tracer
from .upstream import UpstreamClient
from .usage import UsageRecorder


@dataclass
class Gateway:
    settings: Settings
    layers: dict[str, bool]  # the resolved cache toggles (``Settings.layers``)
    tracer: Tracer
    store: Store
    crypto: Crypto
    auth: Authenticator
    services: ServiceRegistry
    models: ModelLister
    adapters: AdapterRegistry
    invalidator: Invalidator
    usage: UsageRecorder
    upstream: UpstreamClient
    streams: StreamLimiter
    server_timing: bool = False  # a Server-Timing header on every counted response
    trace_requests: bool = False  # start a trace per request: something reads it (Server-Timing, access log)
    poller: InvalidationPoller | None = None
    embeddings_batcher: EmbeddingsBatcher | None = None  # None: embeddings batching off (the default)
    redis: Any = None  # redis_backend.RedisLink with --cache-backend redis
    subscriber: Any = None  # redis_backend.Subscriber

    async def aclose(self) -> None:
        await self.usage.flush()
        if self.poller is not None:
            self.poller.stop()
            await self.poller.background.close()
        if self.subscriber is not None:
            await self.subscriber.stop()
        if self.redis is not None:
            await self.redis.close()
        self.upstream.close()
        await self.store.close()
