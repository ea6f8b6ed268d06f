"""Encryption-key rotation: ``forge-ref rotate-encryption-key`` under FORGE_ENCRYPTION_KEY="NEW,OLD",
while a server serves; afterwards NEW alone starts and decrypts everything."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading

import httpx
from cryptography.fernet import Fernet
from support import ServerProcess, add_provider, create_user

from forge_ref.crypto import Crypto
from forge_ref.rotation import rotate_all
from forge_ref.store import SqliteDriver, Store, connect, create_schema
from forge_ref.tracing import Tracer


def forge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forge_ref.cli", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def _store_with_rows(tmp_path, old: str, n: int = 5) -> tuple[Store, list[int]]:
    db = connect(str(tmp_path / "r.db"), tracer=None)
    create_schema(db)
    store = Store(SqliteDriver(db))
    crypto = Crypto([old], Tracer())
    ids = []
    for i in range(n):
        cur = db.execute("INSERT INTO users (name, key_hash, key_prefix, created_at, updated_at) VALUES (?,?,?,0,0)",
                         (f"u{i}", f"h{i}", "p"))
        row = db.execute("INSERT INTO provider_keys (user_id, provider, kind, encrypted_key, base_url, model_mapping,"
                         " created_at, updated_at) VALUES (?, 'openai', 'openai', ?, 'http://x', '{}', 0, 0)"
                         " RETURNING id", (cur.lastrowid, crypto.encrypt(f"sk-rot-{i}"))).fetchone()
        ids.append(row[0])
    return store, ids


def test_rotate_all_reencrypts_under_the_first_key(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store, _ = _store_with_rows(tmp_path, old)
    report = asyncio.run(rotate_all(store, [new, old], Crypto([new, old], Tracer())))
    assert (report.rows, report.rotated, report.already, report.done) == (5, 5, 0, True)
    only_new = Fernet(new.encode())
    tokens = [t for _, _, t in asyncio.run(store.all_encrypted_keys())]
    assert sorted(only_new.decrypt(t.encode()).decode() for t in tokens) == [f"sk-rot-{i}" for i in range(5)]
    again = asyncio.run(rotate_all(store, [new, old], Crypto([new, old], Tracer())))
    assert (again.rotated, again.already, again.done) == (0, 5, True)


def test_a_concurrent_update_is_not_overwritten(tmp_path):
    """A user changes a provider key between the rotation's read and its write: the change wins."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store, ids = _store_with_rows(tmp_path, old)
    crypto = Crypto([new, old], Tracer())

    class Racing:
        def __init__(self, inner):
            self.inner, self.db, self.raced = inner, inner.driver.db, False

        async def all_encrypted_keys(self):
            rows = await self.inner.all_encrypted_keys()
            if not self.raced:  # the server's PUT lands right after the read
                self.raced = True
                self.db.execute("UPDATE provider_keys SET encrypted_key = ? WHERE id = ?",
                                (crypto.encrypt("sk-rot-changed-by-user"), ids[2]))
            return rows

        async def swap_encrypted_key(self, key_id, old_token, new_token):
            return await self.inner.swap_encrypted_key(key_id, old_token, new_token)

    report = asyncio.run(rotate_all(Racing(store), [new, old], crypto))
    assert report.raced == 1 and report.rotated == 4 and report.done and report.passes == 2
    token = store.driver.db.execute("SELECT encrypted_key FROM provider_keys WHERE id = ?", (ids[2],)).fetchone()[0]
    assert Fernet(new.encode()).decrypt(token.encode()) == b"sk-rot-changed-by-user"


def test_undecryptable_rows_make_it_incomplete(tmp_path):
    old, new, stray = (Fernet.generate_key().decode() for _ in range(3))
    store, _ = _store_with_rows(tmp_path, old, n=2)
    store.driver.db.execute("UPDATE provider_keys SET encrypted_key = ? WHERE id = 1",
                     (Fernet(stray.encode()).encrypt(b"x").decode(),))
    report = asyncio.run(rotate_all(store, [new, old], Crypto([new, old], Tracer())))
    assert report.undecryptable == 1 and not report.done


def test_gen_key_prints_a_fernet_key():
    r = forge("gen-key")
    assert r.returncode == 0
    Fernet(r.stdout.strip().encode())  # valid


def test_rotation_end_to_end_while_serving(tmp_path, mock):
    old = forge("gen-key").stdout.strip()
    new = forge("gen-key").stdout.strip()
    server = ServerProcess(tmp_path, env={"FORGE_ENCRYPTION_KEY": old})
    keys = []
    for i in range(3):
        k = create_user(server.url, f"rot{i}")
        for provider in ("openai", "backup"):
            assert add_provider(server.url, k, provider=provider, api_key=f"sk-rot-{provider}-{i}-0123456789",
                                base_url=mock.url + "/openai/v1").status_code == 201
        keys.append(k)
    server.stop()

    # step 2: serve with both keys (new first); step 3: rotate while requests keep flowing
    server = ServerProcess(tmp_path, env={"FORGE_ENCRYPTION_KEY": f"{new},{old}"})
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                k = keys[i % 3]
                model = ("openai", "backup")[i % 2] + "/gpt-4o-mini"
                r = c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {k}"},
                           json={"model": model, "messages": [{"role": "user", "content": "rot"}]})
                statuses.append(r.status_code)
                if i % 7 == 0:  # a write racing the rotation: re-encrypted by the server under NEW
                    c.put("/v1/provider-keys/backup", headers={"Authorization": f"Bearer {k}"},
                          json={"api_key": f"sk-rot-backup-{i % 3}-0123456789"})
                i += 1

    t = threading.Thread(target=load)
    t.start()
    try:
        r = forge("rotate-encryption-key", "--db", str(tmp_path / "e2e.db"),
                  env={"FORGE_ENCRYPTION_KEY": f"{new},{old}"})
        assert r.returncode == 0, r.stderr
        assert "can be removed" in r.stdout
    finally:
        stop.set()
        t.join()
        server.stop()
    assert statuses and set(statuses) == {200}

    only_new = Fernet(new.encode())
    for (token,) in sqlite3.connect(tmp_path / "e2e.db").execute("SELECT encrypted_key FROM provider_keys"):
        assert only_new.decrypt(token.encode()).startswith(b"sk-rot-")

    # step 4: NEW alone starts, decrypts everything, serves; OLD alone no longer can
    server = ServerProcess(tmp_path, env={"FORGE_ENCRYPTION_KEY": new})
    try:
        for k in keys:
            h = {"Authorization": f"Bearer {k}"}
            assert httpx.get(server.url + "/v1/provider-keys", headers=h).status_code == 200
            for provider in ("openai", "backup"):
                r = httpx.post(server.url + "/v1/chat/completions", headers=h, json={
                    "model": f"{provider}/gpt-4o-mini", "messages": [{"role": "user", "content": "after"}]})
                assert r.status_code == 200
    finally:
        server.stop()
    r = forge("serve", "--db", str(tmp_path / "e2e.db"), "--port", "0", env={"FORGE_ENCRYPTION_KEY": old})
    assert r.returncode != 0 and "cannot decrypt" in r.stderr


def test_rotate_without_configured_keys_is_a_clear_error(tmp_path):
    r = forge("rotate-encryption-key", "--db", str(tmp_path / "x.db"))
    assert r.returncode != 0 and "NEW,OLD" in r.stderr and "Traceback" not in r.stderr
