import asyncio
import os
import stat

import pytest
from cryptography.fernet import Fernet

from forge_ref.app import StartupError, prepare_storage
from forge_ref.crypto import Crypto, Secret, key_file_for, load_keys, mask
from forge_ref.settings import Settings
from forge_ref.store import SqliteDriver, Store, connect
from forge_ref.tracing import Tracer


def test_secret_is_masked():
    s = Secret("sk-live-123456")
    assert "sk-live" not in repr(s) and "sk-live" not in str(s) and "sk-live" not in f"{s}"
    assert s.reveal() == "sk-live-123456"


def test_mask():
    assert mask("sk-abcdefghijkl") == "sk-...ijkl"
    assert mask("short") == "****"


def test_decrypt_counts():
    c = Tracer()
    cr = Crypto([Fernet.generate_key().decode()], c)
    token = cr.encrypt("sk-secret")
    assert "sk-secret" not in token
    assert cr.decrypt(token).reveal() == "sk-secret"
    assert c.total("decryptions") == 1


def test_multifernet_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Crypto([old], Tracer()).encrypt("k")
    both = Crypto([new, old], Tracer())
    rotated = both.rotate(token)
    assert Crypto([new], Tracer()).decrypt(rotated).reveal() == "k"


def test_key_file_created_once_0600(tmp_path):
    db = str(tmp_path / "f.db")
    k1 = load_keys("", db)
    k2 = load_keys("", db)
    assert k1 == k2
    assert stat.S_IMODE(os.stat(key_file_for(db)).st_mode) == 0o600


def test_wrong_key_is_a_clear_startup_error(tmp_path):
    db = str(tmp_path / "f.db")
    settings = Settings(db=db)

    async def seed():
        keys = await prepare_storage(settings)
        store = Store(SqliteDriver(connect(db, tracer=None)))
        u = await store.create_user("a", "h", "p")
        await store.add_provider_key(u.id, "openai", "openai", Crypto(keys, Tracer()).encrypt("sk"),
                                     "http://x", {})

    asyncio.run(seed())
    with pytest.raises(StartupError, match="cannot decrypt"):
        asyncio.run(prepare_storage(Settings(db=db, encryption_key=Fernet.generate_key().decode())))
    key_file_for(db).unlink()
    with pytest.raises(StartupError, match="refusing to generate"):
        asyncio.run(prepare_storage(settings))
    assert not key_file_for(db).exists()  # nothing was regenerated
