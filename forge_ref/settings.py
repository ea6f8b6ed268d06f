"""Every option of forge-ref, once: name, default, environment variable, help.

``SETTINGS`` is the single table; the CLI flags, the environment, the README table and the
documentation test are all derived from it, so an option cannot exist undocumented.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

LAYERS = ("user", "service", "keys", "models", "adapters")


def _opt(default: Any, env: str, help: str, *, cli: bool = True) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "cli": cli})


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = _opt("127.0.0.1", "FORGE_HOST", "address to listen on")
    port: int = _opt(8000, "FORGE_PORT", "port to listen on")
    db: str = _opt("forge.db", "FORGE_DB", "SQLite database file, or a postgresql:// URL for PostgreSQL")
    db_pool_size: int = _opt(10, "FORGE_DB_POOL_SIZE", "PostgreSQL connections per process")
    caches: str = _opt("all", "FORGE_CACHES", "cache layers on: all, none, or a list of user,service,keys,models,adapters")
    processes: int = _opt(1, "FORGE_PROCESSES", "server processes sharing the port (0 = one per CPU)")
    encryption_key: str = _opt("", "FORGE_ENCRYPTION_KEY", "Fernet key(s), comma-separated, first encrypts; unset: a key file beside the DB", cli=False)
    admin_token: str = _opt("", "FORGE_ADMIN_TOKEN", "token for admin endpoints (/v1/users, /_stats, /metrics); unset: they answer 403", cli=False)
    allow_private_upstreams: bool = _opt(False, "FORGE_ALLOW_PRIVATE_UPSTREAMS", "allow provider base URLs on private/loopback addresses (tests, benchmarks)")
    upstream_client: str = _opt("aiohttp", "FORGE_UPSTREAM_CLIENT", "shared upstream HTTP client: curl (Tornado CurlAsyncHTTPClient), httpx or aiohttp")
    upstream_max_connections: int = _opt(4096, "FORGE_UPSTREAM_MAX_CONNECTIONS", "upstream connections per process, so requests in flight to providers, streams included (more wait for one: upstream_pool_waits); serve raises the open-file limit to 2 per connection")
    connect_timeout: float = _opt(5.0, "FORGE_CONNECT_TIMEOUT", "upstream connect timeout, seconds")
    read_timeout: float = _opt(120.0, "FORGE_READ_TIMEOUT", "upstream read timeout, seconds: the whole answer when not streaming, the gap between chunks when streaming")
    models_timeout: float = _opt(5.0, "FORGE_MODELS_TIMEOUT", "timeout of one provider's model-list call, seconds")
    models_concurrency: int = _opt(5, "FORGE_MODELS_CONCURRENCY", "model-list calls in flight at once per /v1/models request")
    models_failure_ttl: float = _opt(30.0, "FORGE_MODELS_FAILURE_TTL", "seconds a failed model-list call is remembered (0 = retry every time)")
    max_body_bytes: int = _opt(4 * 1024 * 1024, "FORGE_MAX_BODY_BYTES", "largest accepted request body (413 above)")
    max_streams_per_key: int = _opt(0, "FORGE_MAX_STREAMS_PER_KEY", "streams (chat completions and messages) open at once per Forge key, per process (429 above; 0 = unlimited)")
    embeddings_batch_window_ms: float = _opt(0.0, "FORGE_EMBEDDINGS_BATCH_WINDOW_MS", "concurrent embeddings requests of one user to one model (same provider key and parameters) wait up to this long to share one upstream call, per process (0 = no batching)")
    embeddings_batch_max_inputs: int = _opt(100, "FORGE_EMBEDDINGS_BATCH_MAX_INPUTS", "most inputs in one merged embeddings call: a full batch leaves at once; a request with more goes alone")
    user_ttl: float = _opt(300.0, "FORGE_USER_TTL", "user cache TTL, seconds (0 turns the layer off)")
    user_max: int = _opt(10_000, "FORGE_USER_MAX", "user cache max entries (0 turns the layer off)")
    user_refresh_ahead: float = _opt(0.0, "FORGE_USER_REFRESH_AHEAD", "reload a user entry in the background when read after this fraction of its TTL (0 = off; e.g. 0.8)")
    user_ttl_jitter: float = _opt(0.0, "FORGE_USER_TTL_JITTER", "spread each user entry's TTL over +- this fraction of it (0 = off; e.g. 0.1)")
    service_ttl: float = _opt(600.0, "FORGE_SERVICE_TTL", "ProviderService cache TTL, seconds (0 turns the layer off)")
    service_max: int = _opt(10_000, "FORGE_SERVICE_MAX", "ProviderService cache max entries (0 turns the layer off)")
    service_refresh_ahead: float = _opt(0.0, "FORGE_SERVICE_REFRESH_AHEAD", "reload a ProviderService entry in the background when read after this fraction of its TTL (0 = off; e.g. 0.8)")
    service_ttl_jitter: float = _opt(0.0, "FORGE_SERVICE_TTL_JITTER", "spread each ProviderService entry's TTL over +- this fraction of it (0 = off; e.g. 0.1)")
    models_ttl: float = _opt(3600.0, "FORGE_MODELS_TTL", "model-list cache TTL, seconds (0 turns the layer off)")
    models_max: int = _opt(10_000, "FORGE_MODELS_MAX", "model-list cache max entries, one per user+provider config (0 turns the layer off)")
    models_refresh_ahead: float = _opt(0.0, "FORGE_MODELS_REFRESH_AHEAD", "reload a model-list entry in the background when read after this fraction of its TTL (0 = off; e.g. 0.8)")
    models_ttl_jitter: float = _opt(0.0, "FORGE_MODELS_TTL_JITTER", "spread each model-list entry's TTL over +- this fraction of it (0 = off; e.g. 0.1)")
    coalesce: bool = _opt(True, "FORGE_COALESCE", "concurrent misses of one cache key share one load (single-flight)")
    usage_flush_interval: float = _opt(1.0, "FORGE_USAGE_FLUSH_INTERVAL", "seconds between batched usage-row writes")
    usage_flush_rows: int = _opt(500, "FORGE_USAGE_FLUSH_ROWS", "buffered usage rows that trigger an early flush")
    invalidation_poll: float = _opt(0.1, "FORGE_INVALIDATION_POLL", "seconds between invalidation-log polls when --processes > 1")
    cache_backend: str = _opt("memory", "FORGE_CACHE_BACKEND", "memory (per process) or redis (user and models layers shared in Redis)")
    redis_url: str = _opt("redis://127.0.0.1:6379/0", "REDIS_URL", "Redis server for --cache-backend redis")
    redis_prefix: str = _opt("forge:v1:", "FORGE_REDIS_PREFIX", "namespace of every Redis key and channel")
    redis_l1_ttl: float = _opt(10.0, "FORGE_REDIS_L1_TTL", "TTL of the in-process L1 in front of Redis, seconds")
    redis_l1_max: int = _opt(10_000, "FORGE_REDIS_L1_MAX", "max entries of each in-process L1")
    redis_max_connections: int = _opt(32, "FORGE_REDIS_MAX_CONNECTIONS", "Redis connection pool size per process")
    redis_timeout: float = _opt(0.25, "FORGE_REDIS_TIMEOUT", "Redis connect/command timeout, seconds (an outage costs at most this)")
    event_loop: str = _opt("uvloop", "FORGE_EVENT_LOOP", "event loop of the server: asyncio (the standard library's) or uvloop (libuv)")
    log_level: str = _opt("info", "FORGE_LOG_LEVEL", "debug, info, warning or error")
    access_log: bool = _opt(False, "FORGE_ACCESS_LOG", "one JSON line per request (logger forge_ref.access, info level); off: only 5xx are logged")
    server_timing: bool = _opt(False, "FORGE_SERVER_TIMING", "a Server-Timing header on proxied responses: each layer's hit or miss and each phase's time")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith(("_refresh_ahead", "_ttl_jitter")) and not 0.0 <= getattr(self, f.name) < 1.0:
                raise ValueError(f"{f.metadata['env']} is a fraction of the TTL, at least 0 (off) and below 1, "
                                 f"not {getattr(self, f.name)}")

    def layers(self) -> dict[str, bool]:
        """The cache toggles, resolved (the one place ``caches`` is interpreted)."""
        return parse_layers(self.caches, self)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def parse_layers(spec: str, settings: Settings | None = None) -> dict[str, bool]:
    spec = spec.strip().lower()
    if spec == "all":
        on = set(LAYERS)
    elif spec in ("none", ""):
        on = set()
    else:
        on = {p.strip() for p in spec.split(",") if p.strip()}
        unknown = on - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown cache layer(s): {', '.join(sorted(unknown))}; choose from {', '.join(LAYERS)}")
    if settings is not None:
        # A TTL or a bound of 0 means "do not cache": the layer is off, whatever the list says, and
        # /_stats says so (the one rule; make_cache only follows it).
        bounds = (("user", settings.user_ttl, settings.user_max), ("service", settings.service_ttl, settings.service_max),
                  ("models", settings.models_ttl, settings.models_max))
        for layer, ttl, maxsize in bounds:
            if ttl <= 0 or maxsize <= 0:
                on.discard(layer)
    return {layer: layer in on for layer in LAYERS}


def layers_label(layers: Mapping[str, bool]) -> str:
    on = [name for name in LAYERS if layers.get(name)]
    if len(on) == len(LAYERS):
        return "all"
    return ",".join(on) if on else "none"


def options() -> list[dataclasses.Field]:
    return list(dataclasses.fields(Settings))


def _convert(f: dataclasses.Field, raw: str) -> Any:
    if f.type in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if f.type in (int, "int"):
        return int(raw)
    if f.type in (float, "float"):
        return float(raw)
    return raw


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then environment variables, then explicit overrides (CLI flags), in that order."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in options():
        env = f.metadata["env"]
        if env in environ and environ[env] != "":
            try:
                values[f.name] = _convert(f, environ[env])
            except ValueError:
                raise SystemExit(f"forge-ref: {env}={environ[env]!r} is not a valid {f.type}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    parse_layers(settings.caches)  # fail fast on a bad list
    if settings.cache_backend not in ("memory", "redis"):
        raise ValueError(f"cache backend must be memory or redis, not {settings.cache_backend!r}")
    if settings.upstream_client not in ("curl", "httpx", "aiohttp"):
        raise ValueError(f"upstream client must be curl, httpx or aiohttp, not {settings.upstream_client!r}")
    if settings.embeddings_batch_window_ms < 0 or settings.embeddings_batch_max_inputs < 1:
        raise ValueError("the embeddings batch window must be >= 0 ms and its max inputs >= 1")
    if settings.event_loop not in ("asyncio", "uvloop"):
        raise ValueError(f"event loop must be asyncio or uvloop, not {settings.event_loop!r}")
    return settings


def markdown_table() -> str:
    """The README's configuration table (kept in sync by tests/test_settings.py)."""
    rows = ["| option | env | default | meaning |", "|---|---|---|---|"]
    for f in options():
        flag = "--" + f.name.replace("_", "-") if f.metadata["cli"] else ""
        default = f.default if f.default != "" else "(unset)"
        rows.append(f"| `{flag or f.name}` | `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
