"""The composition root: the one place toggles are read and every dependency is built.

``build_gateway(settings)`` wires store, crypto, caches, services, models, adapters and the
invalidator together; ``make_app(gw)`` turns that into a Tornado application; ``serve``
binds, forks (``--processes N``, ``workers``), and runs ``serve_until``, which drains on SIGTERM
(``lifecycle``). Tests build the same objects the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Callable, Coroutine

import tornado.web
from tornado.ioloop import PeriodicCallback

from . import crypto as crypto_mod
from . import logs
from . import store as store_mod
from .adapters import AdapterRegistry
from .auth import Authenticator
from .batching import EmbeddingsBatcher
from .cache import make_cache
from .crypto import Crypto, EncryptionKeyError
from .gateway import Gateway
from .handlers import NotFoundHandler, routes
from .invalidation import InvalidationPoller, Invalidator, SqliteLogBroadcast
from .lifecycle import Lifecycle
from .limits import StreamLimiter
from .models import ModelLister
from .pg_store import PgDriver, is_postgres
from .pg_store import create_schema as pg_create_schema
from .responses import MemoryAnswers, Responses
from .server import Server, connection_cap, raise_file_limit
from .services import ServiceRegistry
from .settings import Settings
from .store import SqliteDriver, Store
from .tracing import SharedCounters, Tracer
from .upstream import UpstreamClient, make_upstream
from .usage import UsageRecorder
from .workers import Workers

log = logging.getLogger("forge_ref")


class StartupError(Exception):
    """The gateway cannot start with this configuration (the message says why and what to do)."""


async def open_store(settings: Settings, tracer: Tracer | None, *, background: bool = False) -> Store:
    """SQLite through sqlite-utils (a file path) or PostgreSQL (a ``postgresql://`` URL)."""
    if is_postgres(settings.db):
        return Store(await PgDriver(settings.db, tracer=tracer, background=background,
                                    max_size=settings.db_pool_size).open())
    return Store(SqliteDriver(store_mod.connect(settings.db, tracer=tracer, background=background), tracer=tracer))


async def prepare_storage(settings: Settings) -> list[str]:
    """Create the schema and settle the encryption key. Run once, before any fork."""
    if is_postgres(settings.db):
        if not settings.encryption_key:
            raise StartupError("the PostgreSQL store needs FORGE_ENCRYPTION_KEY: every node must use the same key, "
                               "so it cannot be a file generated on one of them")
        pg_create_schema(settings.db)
    else:
        store_mod.create_schema(store_mod.connect(settings.db, tracer=None))
    store = await open_store(settings, None)
    try:
        existing = await store.any_encrypted_key()
    finally:
        await store.close()
    if not settings.encryption_key and existing is not None and not crypto_mod.key_file_for(settings.db).exists():
        raise StartupError(
            f"{settings.db} holds encrypted provider keys but neither FORGE_ENCRYPTION_KEY nor the key file "
            f"{crypto_mod.key_file_for(settings.db)} is there; refusing to generate a new key, which would make "
            "them unreadable. Restore the key file or set FORGE_ENCRYPTION_KEY.")
    keys = crypto_mod.load_keys(settings.encryption_key, settings.db)
    try:
        check = Crypto(keys, Tracer())
    except EncryptionKeyError as exc:
        where = ("FORGE_ENCRYPTION_KEY" if settings.encryption_key
                 else f"the key file {crypto_mod.key_file_for(settings.db)}")
        raise StartupError(f"{exc} (read from {where})") from None
    if existing is not None and not check.can_decrypt(existing):
        raise StartupError(
            f"the configured encryption key cannot decrypt the provider keys stored in {settings.db}; "
            "set FORGE_ENCRYPTION_KEY to the key they were encrypted with (several, comma-separated, during rotation)")
    return keys


async def build_gateway(settings: Settings, *, keys: list[str], counters: SharedCounters | None = None,
                        timer: Callable[[], float] = time.monotonic, multi_process: bool = False) -> Gateway:
    tracer = Tracer(counters)
    layers = settings.layers()  # the toggles, read here and nowhere else
    store = await open_store(settings, tracer)
    crypto = Crypto(keys, tracer)

    def cache(name: str, on: bool, maxsize: int, ttl: float, refresh_ahead: float = 0.0, jitter: float = 0.0):
        return make_cache(name, enabled=on, maxsize=maxsize, ttl=ttl, tracer=tracer, coalesce=settings.coalesce,
                          refresh_ahead=refresh_ahead, jitter=jitter, timer=timer)

    def new_upstream(max_connections: int) -> UpstreamClient:
        return make_upstream(settings.upstream_client, max_connections=max_connections,
                             connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                             refuse_private=not settings.allow_private_upstreams, tracer=tracer)

    upstream = new_upstream(settings.upstream_max_connections)
    user_cache = cache("user", layers["user"], settings.user_max, settings.user_ttl,
                       settings.user_refresh_ahead, settings.user_ttl_jitter)
    service_cache = cache("service", layers["service"], settings.service_max, settings.service_ttl,
                          settings.service_refresh_ahead, settings.service_ttl_jitter)
    models_cache = cache("models", layers["models"], settings.models_max, settings.models_ttl,
                         settings.models_refresh_ahead, settings.models_ttl_jitter)
    link = None
    if settings.cache_backend == "redis":
        from . import redis_backend as rb

        link = rb.RedisLink(settings.redis_url, prefix=settings.redis_prefix, tracer=tracer,
                            max_connections=settings.redis_max_connections, timeout=settings.redis_timeout)

        def tiered(name: str, ttl: float, refresh_ahead: float, jitter: float, locate, encode, decode):
            # Refresh-ahead acts on the L1 (its refresh reads Redis, and loads only when Redis has
            # nothing, under the generation guard); jitter spreads both tiers' TTLs.
            l1 = cache(name, True, settings.redis_l1_max, min(settings.redis_l1_ttl, ttl), refresh_ahead, jitter)
            return rb.TieredCache(name, l1, link, ttl=ttl, jitter=jitter, locate=locate, encode=encode,
                                  decode=decode, tracer=tracer)

        if user_cache.enabled:
            user_cache = tiered("user", settings.user_ttl, settings.user_refresh_ahead, settings.user_ttl_jitter,
                                rb.user_locator(settings.redis_prefix), rb.encode_user, rb.decode_user)
        if models_cache.enabled:
            models_cache = tiered("models", settings.models_ttl, settings.models_refresh_ahead,
                                  settings.models_ttl_jitter, rb.models_locator(settings.redis_prefix),
                                  rb.identity, rb.identity)
        if service_cache.enabled:  # services hold decrypted keys: in process only, never in Redis
            service_cache = rb.GuardedCache(service_cache, link, tracer)
    auth = Authenticator(store, user_cache)
    services = ServiceRegistry(store, crypto, service_cache, tracer, lazy_keys=layers["keys"])
    adapters = AdapterRegistry(shared=layers["adapters"], upstream=upstream,
                               make_upstream=lambda: new_upstream(1), tracer=tracer)
    models = ModelLister(
        models_cache,
        # Remembering failures is resilience, not a cache layer under test: on unless its TTL is 0.
        cache("models_failures", settings.models_failure_ttl > 0, settings.models_max, settings.models_failure_ttl),
        adapters, timeout=settings.models_timeout, concurrency=settings.models_concurrency)
    if link is not None:
        broadcast = rb.RedisBroadcast(link)
    elif multi_process:
        broadcast = SqliteLogBroadcast(store)
    else:
        broadcast = None
    answers = None
    if layers["responses"]:
        if link is not None:
            from .responses_redis import RedisAnswers

            kept = RedisAnswers(link, max_bytes=settings.responses_max_bytes)
        else:
            kept = MemoryAnswers(max_bytes=settings.responses_max_bytes, meter=tracer.layer("responses"), timer=timer)
        answers = Responses(kept, tracer=tracer, max_ttl=settings.responses_max_ttl)
    invalidator = Invalidator(auth, services, models, tracer, broadcast=broadcast, responses=answers)
    checks = [("database", store.ping)] + ([("redis", link.ping)] if link is not None else [])
    gw = Gateway(settings=settings, layers=layers, tracer=tracer, store=store, crypto=crypto, auth=auth,
                 services=services, models=models, adapters=adapters, invalidator=invalidator,
                 usage=UsageRecorder(store, max_rows=settings.usage_flush_rows), upstream=upstream,
                 streams=StreamLimiter(settings.max_streams_per_key), lifecycle=Lifecycle(checks, tracer, timer=timer),
                 server_timing=settings.server_timing,
                 trace_requests=settings.server_timing or settings.access_log, responses=answers)
    if settings.embeddings_batch_window_ms > 0:
        gw.embeddings_batcher = EmbeddingsBatcher(window_ms=settings.embeddings_batch_window_ms,
                                                  max_inputs=settings.embeddings_batch_max_inputs,
                                                  adapters=adapters, tracer=tracer)
    if link is not None:
        gw.redis = link
        gw.subscriber = rb.Subscriber(link, broadcast, invalidator)
    elif multi_process:
        background = await open_store(settings, tracer, background=True)
        gw.poller = InvalidationPoller(invalidator, background, settings.invalidation_poll)
        await gw.poller.init()
    return gw


def _quiet_access_log(handler: tornado.web.RequestHandler) -> None:
    # One line per request at debug level only: at thousands of requests/s, logging is the bottleneck.
    if handler.get_status() >= 500:
        log.warning("%d %s %s %.1fms", handler.get_status(), handler.request.method, handler.request.path,
                    1000 * handler.request.request_time())
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("%d %s %s %.1fms", handler.get_status(), handler.request.method, handler.request.path,
                  1000 * handler.request.request_time())


def make_app(gw: Gateway) -> tornado.web.Application:
    return tornado.web.Application(
        routes(gw), default_handler_class=NotFoundHandler, default_handler_args={"gw": gw},
        log_function=logs.access_line if gw.settings.access_log else _quiet_access_log,
        compress_response=False, xheaders=False,
    )


def start_background(gw: Gateway) -> list[PeriodicCallback]:
    flusher = PeriodicCallback(gw.usage.flush, gw.settings.usage_flush_interval * 1000)
    flusher.start()
    if gw.poller is not None:
        gw.poller.start()
    if gw.subscriber is not None:
        gw.subscriber.start()
    return [flusher]


def make_server(gw: Gateway) -> Server:
    """The HTTP server of one process: its connection cap (from the file limit unless set) and timeouts."""
    s = gw.settings
    return Server(make_app(gw), max_connections=connection_cap(s),
                  max_per_client=s.max_connections_per_client, tracer=gw.tracer,
                  idle_connection_timeout=s.idle_timeout, body_timeout=s.body_timeout,
                  max_body_size=max(s.max_body_bytes * 4, 64 * 1024 * 1024))


async def serve_until(gw: Gateway, sockets: list, stop: asyncio.Event) -> None:
    """Serve on ``sockets`` until ``stop`` is set, then drain (``lifecycle``), flush usage and close."""
    server = make_server(gw)
    server.add_sockets(sockets)
    timers = start_background(gw)
    await stop.wait()
    await gw.lifecycle.shutdown(server, gw.settings.shutdown_timeout, gw.settings.shutdown_delay)
    for t in timers:  # after the drain: requests served meanwhile still flush usage and see invalidations
        t.stop()
    await gw.aclose()


def serve(settings: Settings, *, ready: Callable[[str], None] | None = None) -> None:
    """Bind, fork into ``settings.processes`` workers if asked, and serve until SIGTERM/SIGINT."""
    from tornado import netutil

    keys = asyncio.run(prepare_storage(settings))
    raise_file_limit(settings)  # before forking: the workers inherit it
    # Tornado's default backlog (128) overflows under a burst of new connections (measured: a
    # cold burst of 200 lost up to 172 SYNs, each retried a second later).
    sockets = netutil.bind_sockets(settings.port, settings.host, backlog=1024)
    port = sockets[0].getsockname()[1]
    n = settings.processes if settings.processes > 0 else (os.cpu_count() or 1)
    counters = SharedCounters(n)  # shared memory, mapped before fork so every worker sees every row
    if ready is not None:
        ready(f"forge-ref listening on http://{settings.host}:{port} ({n} process{'es' if n > 1 else ''}, "
              f"caches: {settings.caches})")
    task_id = Workers(n, sockets).run() if n > 1 else 0
    counters.bind(task_id)  # before build_gateway creates this process's Tracer
    run_on_loop(settings.event_loop, _run(settings, keys, counters, sockets, multi_process=n > 1))


def run_on_loop(kind: str, main: Coroutine) -> None:
    """Run ``main`` on the event loop ``FORGE_EVENT_LOOP`` names: asyncio's own, or uvloop's."""
    factory = None
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


async def _run(settings: Settings, keys: list[str], counters: SharedCounters, sockets, *, multi_process: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # first: a stop while starting up still drains
        loop.add_signal_handler(sig, stop.set)
    gw = await build_gateway(settings, keys=keys, counters=counters, multi_process=multi_process)
    await serve_until(gw, sockets, stop)
