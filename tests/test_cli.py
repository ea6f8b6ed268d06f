"""The ``forge-ref`` command as a user runs it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from cryptography.fernet import Fernet


def forge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "FORGE_ALLOW_PRIVATE_UPSTREAMS": "1"}
    return subprocess.run([sys.executable, "-m", "forge_ref.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60)


def test_users_create_prints_key_alone(tmp_path):
    db = str(tmp_path / "c.db")
    r = forge("users", "create", "alice", "--db", db)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert r.stdout == key + "\n" and key.startswith("forge-") and len(key) >= 6 + 43
    rows = sqlite3.connect(db).execute("SELECT name, key_hash FROM users").fetchall()
    assert rows[0][0] == "alice" and key not in rows[0][1]  # only the hash is stored


def test_provider_keys_add_encrypts(tmp_path):
    db = str(tmp_path / "c.db")
    key = forge("users", "create", "bob", "--db", db).stdout.strip()
    r = forge("provider-keys", "add", "--forge-key", key, "--provider", "openai", "--api-key", "sk-cli-secret",
              "--base-url", "http://127.0.0.1:9/openai/v1", "--db", db)
    assert r.returncode == 0, r.stderr
    stored = sqlite3.connect(db).execute("SELECT provider, encrypted_key FROM provider_keys").fetchone()
    assert stored[0] == "openai" and "sk-cli-secret" not in stored[1]
    r = forge("provider-keys", "add", "--forge-key", "forge-nope", "--provider", "x", "--api-key", "k",
              "--base-url", "http://127.0.0.1:9", "--db", db)
    assert r.returncode != 0 and "no user" in r.stderr


def test_serve_refuses_a_key_that_cannot_decrypt(tmp_path):
    db = str(tmp_path / "c.db")
    key = forge("users", "create", "bob", "--db", db).stdout.strip()
    forge("provider-keys", "add", "--forge-key", key, "--provider", "openai", "--api-key", "sk-1",
          "--base-url", "http://127.0.0.1:9/v1", "--db", db)
    r = forge("serve", "--db", db, "--port", "0", env={"FORGE_ENCRYPTION_KEY": Fernet.generate_key().decode()})
    assert r.returncode != 0
    assert "cannot decrypt" in r.stderr and "Traceback" not in r.stderr


def test_bad_caches_list_is_a_clear_error(tmp_path):
    r = forge("serve", "--db", str(tmp_path / "c.db"), "--caches", "user,nonsense")
    assert r.returncode != 0 and "nonsense" in r.stderr and "Traceback" not in r.stderr


def test_a_malformed_encryption_key_is_a_clear_startup_error(tmp_path):
    for key in ("not-a-fernet-key", Fernet.generate_key().decode() + ",garbage"):
        r = forge("serve", "--db", str(tmp_path / "c.db"), "--port", "0", env={"FORGE_ENCRYPTION_KEY": key})
        assert r.returncode != 0
        assert "forge-ref: FORGE_ENCRYPTION_KEY is not a valid Fernet key" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "garbage" not in r.stderr and "not-a-fernet" not in r.stderr
    (tmp_path / "k.db.key").write_text("broken\n")  # a damaged key file beside the database
    r = forge("serve", "--db", str(tmp_path / "k.db"), "--port", "0")
    assert r.returncode != 0 and "the key file" in r.stderr and "Traceback" not in r.stderr


def test_the_gateway_runs_without_the_mock_package(tmp_path):
    """A gateway-only install may leave forge_mock out: serve and the CLI still work; mock-provider says why not."""
    code = ("import sys; sys.modules['forge_mock'] = None; sys.modules['forge_mock.config'] = None\n"
            "from forge_ref import cli\n"
            "assert cli.parser().parse_args(['serve']).command == 'serve'\n"
            "cli.main(['mock-provider'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "the mock provider (package forge_mock" in r.stderr and "Traceback" not in r.stderr
