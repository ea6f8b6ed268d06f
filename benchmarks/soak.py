"""Soak: mixed load for a long, bounded time; memory must stay flat within the caches' bounds.

    python -m benchmarks.soak --minutes 30 [--tenants 5000] [--cache-max 500] [--concurrency 32]
                              [--processes 1] [--out results]

Starts the mock provider and ``forge-ref serve`` (SQLite, in-memory caches bounded well below
the tenant count, so entries are evicted all the time), seeds ``--tenants`` users with one to
three provider keys each (the many-tenants pattern), then runs ``--concurrency`` asyncio
clients (httpx) doing a mix of chats, streamed chats, embeddings, model lists and writes
(provider-key updates, key resets: invalidations) against random tenants. Every few seconds it
samples the server's RSS (all its processes) and ``/_stats``. The result is one immutable JSON
file ``results/<UTC time>_<commit>_soak.json``: settings, RSS samples, growth after warm-up,
the largest cache sizes seen, evictions, request and error counts.

Not part of CI; ``tests/test_reliability.py`` runs a 20-second version (``run(...)``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from forge_ref import store as store_mod
from forge_ref.auth import display_prefix, hash_key, new_key
from forge_ref.crypto import Crypto
from forge_ref.tracing import Tracer

from .procs import free_port
from .results import git_commit, utc, write_result

ADMIN = "soak-admin-token"
KINDS = {"openai": ("/openai/v1", "gpt-4o-mini"), "anthropic": ("/anthropic", "claude-haiku-4-5"),
         "gemini": ("/gemini", "gemini-2.5-flash")}
PATTERNS = (("openai",), ("openai", "anthropic"), ("openai", "gemini"), ("openai", "anthropic", "gemini"))
LAYERS = ("user", "service", "models")


def _wait(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def seed(db: Path, tenants: int, mock_url: str, enc_key: str) -> list[dict]:
    """Users with 1-3 provider keys each, written straight into the gateway's schema (fast)."""
    conn_db = store_mod.connect(str(db), tracer=None)
    store_mod.create_schema(conn_db)
    crypto = Crypto([enc_key], Tracer())
    conn, now, out = conn_db.conn, time.time(), []
    conn.execute("BEGIN")
    for uid in range(1, tenants + 1):
        key = new_key()
        conn.execute("INSERT INTO users (id, name, key_hash, key_prefix, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                     (uid, f"soak-{uid}", hash_key(key), display_prefix(key), now, now))
        kinds = PATTERNS[uid % len(PATTERNS)]
        for kind in kinds:
            conn.execute("INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                         " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                         (uid, kind, kind, crypto.encrypt(f"sk-soak-{kind}-{uid}"), mock_url + KINDS[kind][0], "{}",
                          now, now))
        out.append({"id": uid, "key": key, "kinds": list(kinds)})
    conn.execute("COMMIT")
    conn.close()
    return out


def _rss_mb(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except psutil.Error:
        return float("nan")


class Load:
    def __init__(self, url: str, tenants: list[dict], seed_value: int) -> None:
        self.url = url
        self.tenants = tenants
        self.rng = random.Random(seed_value)
        self.statuses: dict[str, int] = {}
        self.unexpected = 0
        self.requests = 0
        self.stop = False

    def _count(self, op: str, status: int, tenant: dict | None = None, key: str | None = None) -> None:
        self.requests += 1
        if status == 401 and tenant is not None and tenant["key"] != key:
            op = "revoked"  # another worker reset this tenant's key meanwhile: refusing the old one is right
        label = f"{op}:{status}"
        self.statuses[label] = self.statuses.get(label, 0) + 1
        if status >= 300 and op != "revoked":
            self.unexpected += 1

    async def one(self, c: httpx.AsyncClient) -> None:
        t = self.rng.choice(self.tenants)
        key = t["key"]
        h = {"Authorization": f"Bearer {key}"}
        kind = self.rng.choice(t["kinds"])
        model = f"{kind}/{KINDS[kind][1]}"
        roll = self.rng.random()
        text = f"soak {self.rng.randrange(10**6)}"
        if roll < 0.55:
            r = await c.post("/v1/chat/completions", headers=h, json={
                "model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]})
            self._count("chat", r.status_code, t, key)
        elif roll < 0.70:
            async with c.stream("POST", "/v1/chat/completions", headers=h, json={
                    "model": model, "stream": True, "messages": [{"role": "user", "content": text}]}) as r:
                body = b"".join([chunk async for chunk in r.aiter_bytes()])
            ok = r.status_code != 200 or (body.rstrip().endswith(b"data: [DONE]") and b'"error"' not in body)
            self._count("stream", r.status_code if ok else 599, t, key)
        elif roll < 0.80:
            emb = "openai/text-embedding-3-small" if kind != "gemini" else "gemini/text-embedding-004"
            r = await c.post("/v1/embeddings", headers=h, json={"model": emb, "input": text})
            self._count("embeddings", r.status_code, t, key)
        elif roll < 0.95:
            r = await c.get("/v1/models", headers=h)
            self._count("models", r.status_code, t, key)
        elif roll < 0.99:
            r = await c.put(f"/v1/provider-keys/{kind}", headers=h,
                            json={"model_mapping": {f"alias-{self.rng.randrange(100)}": KINDS[kind][1]}})
            self._count("update", r.status_code, t, key)
        else:
            r = await c.post("/v1/users/me/reset-key", headers=h)
            if r.status_code == 200:
                t["key"] = r.json()["api_key"]
            self._count("reset", r.status_code, t, key)

    async def worker(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
            while not self.stop:
                try:
                    await self.one(c)
                except httpx.HTTPError:
                    self._count("transport", 598)


def _stats(url: str) -> dict:
    return httpx.get(url + "/_stats", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).json()


async def _drive(load: Load, server_pid: int, url: str, *, seconds: float, warmup: float, concurrency: int,
                 sample_every: float, samples: list[dict]) -> None:
    workers = [asyncio.create_task(load.worker()) for _ in range(concurrency)]
    started = time.monotonic()
    try:
        while (now := time.monotonic() - started) < seconds:
            await asyncio.sleep(min(sample_every, max(0.0, seconds - now)))
            stats = await asyncio.to_thread(_stats, url)
            samples.append({"t": round(time.monotonic() - started, 2), "rss_mb": round(_rss_mb(server_pid), 2),
                            "warm": time.monotonic() - started >= warmup, "requests": load.requests,
                            "cache_sizes": {layer: stats["caches"][layer]["size"] for layer in LAYERS},
                            "evictions": sum(stats["caches"][layer]["evictions"] for layer in LAYERS)})
    finally:
        load.stop = True
        await asyncio.gather(*workers, return_exceptions=True)


def run(*, seconds: float, warmup: float = 30.0, tenants: int = 5000, cache_max: int = 500, concurrency: int = 32,
        processes: int = 1, sample_every: float = 5.0, workdir: Path | None = None, out: Path | None = Path("results"),
        seed_value: int = 1) -> dict:
    """Run one soak; returns the result document (and writes it under ``out`` unless None)."""
    from cryptography.fernet import Fernet

    tmp = Path(workdir or tempfile.mkdtemp(prefix="forge-soak-"))
    mock_port, port = free_port(), free_port()
    mock_url, url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{port}"
    enc = Fernet.generate_key().decode()
    env = {**os.environ, "FORGE_ADMIN_TOKEN": ADMIN, "FORGE_ALLOW_PRIVATE_UPSTREAMS": "1", "FORGE_ENCRYPTION_KEY": enc,
           "FORGE_USER_MAX": str(cache_max), "FORGE_SERVICE_MAX": str(cache_max), "FORGE_MODELS_MAX": str(cache_max),
           "FORGE_PROCESSES": str(processes), "FORGE_LOG_LEVEL": "warning"}
    logs = (tmp / "mock.log").open("w"), (tmp / "serve.log").open("w")
    mock = subprocess.Popen([sys.executable, "-m", "forge_mock", "--port", str(mock_port)],
                            stdout=logs[0], stderr=subprocess.STDOUT)
    server = None
    try:
        _wait(mock_url + "/_mock/stats")
        keys = seed(tmp / "soak.db", tenants, mock_url, enc)
        server = subprocess.Popen([sys.executable, "-m", "forge_ref.cli", "serve", "--port", str(port),
                                   "--db", str(tmp / "soak.db")], stdout=logs[1], stderr=subprocess.STDOUT, env=env)
        _wait(url + "/health")
        load = Load(url, keys, seed_value)
        samples: list[dict] = []
        started_at = time.time()
        asyncio.run(_drive(load, server.pid, url, seconds=seconds, warmup=warmup, concurrency=concurrency,
                           sample_every=sample_every, samples=samples))
        final = _stats(url)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        mock.terminate()
        mock.wait(10)
        for f in logs:
            f.close()
    warm = [s["rss_mb"] for s in samples if s["warm"]]
    k = max(1, min(3, len(warm) // 4))
    growth = statistics.median(warm[-k:]) - statistics.median(warm[:k]) if warm else float("nan")
    result = {
        "profile": "soak", "config": "all", "commit": git_commit()[0], "started_at": utc(started_at),
        "settings": {"seconds": seconds, "warmup": warmup, "tenants": tenants, "cache_max": cache_max,
                     "concurrency": concurrency, "processes": processes, "sample_every": sample_every},
        "requests": load.requests,
        "throughput_rps": round(load.requests / seconds, 1),
        "statuses": dict(sorted(load.statuses.items())),
        "errors": {"unexpected": load.unexpected},
        "rss": {"samples": samples, "after_warmup_first_mb": warm[:k], "after_warmup_last_mb": warm[-k:],
                "growth_after_warmup_mb": round(growth, 2),
                "peak_mb": max((s["rss_mb"] for s in samples), default=None)},
        "caches": {"max_size_seen": {layer: max((s["cache_sizes"][layer] for s in samples), default=0)
                                     for layer in LAYERS},
                   "evictions": sum(final["caches"][layer]["evictions"] for layer in LAYERS),
                   "final": final["caches"]},
        "counters": final["counters"],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
    }
    if out is not None:
        write_result(result, out, "soak", started_at)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS growth is measured")
    p.add_argument("--tenants", type=int, default=5000)
    p.add_argument("--cache-max", type=int, default=500, help="FORGE_USER_MAX / SERVICE_MAX / MODELS_MAX")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--out", default="results")
    a = p.parse_args(argv)
    result = run(seconds=a.minutes * 60, warmup=a.warmup, tenants=a.tenants, cache_max=a.cache_max,
                 concurrency=a.concurrency, processes=a.processes, sample_every=a.sample_every, out=Path(a.out))
    rss = result["rss"]
    print(f"{result['requests']} requests ({result['throughput_rps']}/s), {result['errors']['unexpected']} unexpected; "
          f"RSS growth after warm-up {rss['growth_after_warmup_mb']} MB (peak {rss['peak_mb']} MB); "
          f"largest caches {result['caches']['max_size_seen']} (max {a.cache_max}), "
          f"{result['caches']['evictions']} evictions")


if __name__ == "__main__":
    main()
