"""Per-operation costs of what the cache layers replace, measured in one process, one run.

    python -m benchmarks.micro [--out results] [--redis-url URL] [--postgres-url URL] [--n N]

Measures, through forge-ref's own code (not a synthetic stand-in): an in-process cache hit
(``Cache.get``), a Redis hit (``TieredCache`` after an L1 miss: one Lua round trip), a user
look-up on SQLite and on PostgreSQL (``Store.user_by_key_hash``: one indexed SELECT), a Fernet
decryption (``Crypto.decrypt``), building a ProviderService from 3 rows, and the response cache's own
work on a hit (opt-in, key, look-up) and on replaying a kept answer as a stream. Writes one immutable
result file (``profile: micro``) that the report and notebooks read like any other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from cryptography.fernet import Fernet

from forge_ref import tracing
from forge_ref.app import open_store
from forge_ref.auth import hash_key, new_key
from forge_ref.cache import Cache
from forge_ref.crypto import Crypto
from forge_ref.services import ProviderService
from forge_ref.settings import Settings
from forge_ref.store import connect, create_schema
from forge_ref.tracing import Tracer

from .results import SCHEMA_VERSION, git_commit, machine, utc, write_result


def _time_sync(fn, n: int, repeats: int = 5) -> dict:
    """Best-of-``repeats`` mean, in microseconds (the minimum filters the shared machine's noise)."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return {"us_per_op": round(min(samples), 3), "median_us": round(statistics.median(samples), 3), "n": n,
            "repeats": repeats}


async def _time_async(fn, n: int, repeats: int = 5) -> dict:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return {"us_per_op": round(min(samples), 3), "median_us": round(statistics.median(samples), 3), "n": n,
            "repeats": repeats}


async def _store_lookup(db: str, n: int) -> dict:
    store = await open_store(Settings(db=db, encryption_key=Fernet.generate_key().decode()), Tracer())
    try:
        for i in range(1000):  # a realistic index, not a one-row table
            await store.create_user(f"u{i}", hash_key(new_key()), "forge-x")
        target = hash_key(new_key())
        await store.create_user("target", target, "forge-x")
        return await _time_async(lambda: store.user_by_key_hash(target), n)
    finally:
        await store.close()


async def _redis_hit(url: str, n: int) -> dict:
    from forge_ref import redis_backend as rb

    tracer = Tracer()
    prefix = f"forge-micro:{uuid.uuid4().hex[:8]}:"
    link = rb.RedisLink(url, prefix=prefix, max_connections=4, timeout=1.0, tracer=tracer)
    l1 = Cache("user", maxsize=10, ttl=60, tracer=tracer)
    tiered = rb.TieredCache("user", l1, link, ttl=300, locate=rb.user_locator(prefix), encode=rb.encode_user,
                            decode=rb.decode_user, tracer=tracer)
    from forge_ref.store import User

    user = User(1, "micro", "h" * 64, "forge-x")

    async def load():
        return user

    try:
        await tiered.load("h" * 64, load)  # now in Redis

        async def hit():
            l1.clear()  # force the L1 miss: measure the Redis round trip + decode
            return await tiered.load("h" * 64, load)

        result = await _time_async(hit, n)
        assert tracer.total("redis_hits") >= n
        return result
    finally:
        await link.client.delete(f"{prefix}user:{'h' * 64}", f"{prefix}gen:user:{'h' * 64}")
        await link.close()


def _request_trace(tracer: Tracer, mode: str) -> Callable[[], None]:
    """What the trace adds to one warm chat request, as the handler and the cost points do it.

    ``counting``: the cost points alone (two cache hits, one upstream call), no trace calls: what
    counting cost before there was a trace. ``off``: the same plus every trace call going to
    ``NO_TRACE`` (each cost point also reads the contextvar and finds nothing). ``on``: a real trace
    (begin, eight laps, the layer notes and costs) and the Server-Timing header."""
    user, service = tracer.layer("user"), tracer.layer("service")
    if mode == "counting":
        def request() -> None:
            user.hit()
            service.hit()
            tracer.upstream_call("proxy")

        return request

    def request() -> None:
        trace = tracing.begin() if mode == "on" else tracing.NO_TRACE
        trace.lap("body")
        trace.lap("parse")
        user.hit()
        trace.lap("user")
        trace.note(user=1)
        service.hit()
        trace.lap("service")
        trace.layer("key", "decryptions" not in trace.costs)
        trace.lap("key")
        trace.note(provider="openai", model="gpt-4o-mini", stream=False)
        trace.layer("adapter", True)
        trace.lap("translate")
        tracer.upstream_call("proxy")
        trace.lap("upstream")
        trace.lap("respond")
        if trace:
            trace.sent_first_byte()
            trace.server_timing()
            tracing._current.set(None)

    return request


async def _response_hit(n: int) -> tuple[dict, dict]:
    """The response cache's own work on a hit (a 1.8 KB chat body, a 1 KB answer kept in process): the
    opt-in, the key (one hash of the canonical body) and the look-up; and replaying the answer as a stream."""
    import orjson

    from forge_ref import responses
    from forge_ref.replay import CHAT
    from forge_ref.store import ProviderRow

    row = ProviderRow(7, "openai", "openai", "ciphertext", "http://x", {}, 1700000000.5)
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "lorem ipsum " * 20}
             for i in range(5)]
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief. " * 30}, *turns]}
    answer = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 150},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 200, "completion_tokens": 150, "total_tokens": 350}})
    store = responses.MemoryAnswers(max_bytes=1 << 26, meter=Tracer().layer("responses"))
    await store.put(responses.cache_key("chat", 1, row, "gpt-4o-mini", body), answer, 600)

    async def hit() -> None:
        policy = responses.directive("max-age=600", None, row.cache_ttl, 86400.0)
        assert await store.get(responses.cache_key("chat", 1, row, "gpt-4o-mini", body), policy.max_age) is not None

    return await _time_async(hit, n), _time_sync(lambda: CHAT.replay(answer, True), n)


def measure(*, n: int, redis_url: str | None, postgres_url: str | None) -> dict:
    ops: dict[str, dict] = {}
    tracer = Tracer()
    cache = Cache("user", maxsize=10_000, ttl=300, tracer=tracer)
    cache.set("k", object())
    ops["in_process_hit"] = _time_sync(lambda: cache.get("k"), n * 20)
    for mode in ("counting", "off", "on"):
        ops[f"request_trace_{mode}"] = _time_sync(_request_trace(tracer, mode), n * 4)

    crypto = Crypto([Fernet.generate_key().decode()], tracer)
    token = crypto.encrypt("sk-" + "x" * 48)
    ops["fernet_decrypt"] = _time_sync(lambda: crypto.decrypt(token), n)
    ops["response_hit"], ops["response_replay_stream"] = asyncio.run(_response_hit(n))

    from forge_ref.store import ProviderRow

    rows = [ProviderRow(i, f"p{i}", "openai", token, "http://x", {}, 0.0) for i in range(3)]
    ops["service_build_3_keys_lazy"] = _time_sync(lambda: ProviderService(1, rows, crypto, lazy_keys=True), n)

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "micro.db")
        create_schema(connect(db, tracer=None))
        ops["sqlite_user_lookup"] = asyncio.run(_store_lookup(db, n))
    if postgres_url:
        import psycopg

        from forge_ref.pg_store import create_schema as pg_schema

        schema = "forge_micro_" + uuid.uuid4().hex[:8]
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in postgres_url else "?"
        url = f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
        try:
            pg_schema(url)
            ops["postgres_user_lookup"] = asyncio.run(_store_lookup(url, max(200, n // 10)))
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if redis_url:
        ops["redis_hit"] = asyncio.run(_redis_hit(redis_url, max(200, n // 10)))
    return ops


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--redis-url", default=None, help="measure a Redis hit too (e.g. redis://127.0.0.1:6379/0)")
    p.add_argument("--postgres-url", default=None, help="measure a PostgreSQL look-up too")
    args = p.parse_args(argv)
    started = time.time()
    ops = measure(n=args.n, redis_url=args.redis_url, postgres_url=args.postgres_url)
    commit, dirty = git_commit()
    doc = {
        "schema_version": SCHEMA_VERSION, "run_id": uuid.uuid4().hex[:12], "target": "micro", "profile": "micro",
        "config": "n/a", "variant": "", "commit": commit, "dirty": dirty, "machine": machine(),
        "started_at": utc(started), "finished_at": utc(time.time()),
        "settings": {"n": args.n, "redis": bool(args.redis_url), "postgres": bool(args.postgres_url)},
        "micro": ops,
    }
    path = write_result(doc, args.out, "micro", started)
    for name, m in ops.items():
        print(f"{name:28s} {m['us_per_op']:10.3f} us/op")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
