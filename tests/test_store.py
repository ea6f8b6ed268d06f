import pytest

from forge_ref.counters import SharedCounters
from forge_ref.errors import Conflict
from forge_ref.store import Store, connect, create_schema


@pytest.fixture
def store(tmp_path):
    c = SharedCounters()
    db = connect(str(tmp_path / "t.db"), counters=c)
    create_schema(db)
    c.reset()
    return Store(db), c


def counts(c):
    return c.total("db_queries"), c.total("db_writes")


def test_wal_mode(store):
    s, _ = store
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_method_is_one_statement(store):
    s, c = store
    u = s.create_user("alice", "h1", "forge-abc")
    assert counts(c) == (0, 1)
    assert s.user_by_key_hash("h1") == u
    assert counts(c) == (1, 1)
    assert s.user_by_key_hash("nope") is None
    assert counts(c) == (2, 1)
    row = s.add_provider_key(u.id, "openai", "openai", "enc", "http://x", {"fast": "gpt-4o-mini"})
    assert row.model_mapping == {"fast": "gpt-4o-mini"}
    assert counts(c) == (2, 2)
    assert [r.provider for r in s.provider_keys(u.id)] == ["openai"]
    assert counts(c) == (3, 2)
    updated = s.update_provider_key(u.id, "openai", {"base_url": "http://y"})
    assert (updated.base_url, updated.encrypted_key) == ("http://y", "enc")  # other fields kept
    assert counts(c) == (3, 3)
    assert s.update_user(u.id, "alice2").name == "alice2"
    assert s.reset_user_key(u.id, "h2", "forge-def").key_hash == "h2"
    assert counts(c) == (3, 5)
    s.insert_usage([(u.id, "openai", "m", 200, 1, 2, 3.0, 0.0)] * 3)
    assert counts(c) == (3, 6)  # a batch is one statement
    assert s.db.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == 3


def test_duplicate_provider_conflict(store):
    s, _ = store
    u = s.create_user("a", "h", "p")
    s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
    with pytest.raises(Conflict):
        s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})


def test_delete_user_drops_keys(store):
    s, c = store
    u = s.create_user("a", "h", "p")
    s.add_provider_key(u.id, "openai", "openai", "e", "http://x", {})
    before = counts(c)
    assert s.delete_user(u.id) is True
    assert counts(c) == (before[0], before[1] + 1)
    assert s.provider_keys(u.id) == []


def test_invalidation_log(store):
    s, _ = store
    ids = s.append_invalidations([("user", "h"), ("service", "1")])
    assert len(ids) == 2
    assert [(k, v) for _, k, v in s.invalidations_after(0)] == [("user", "h"), ("service", "1")]
    assert s.invalidations_after(ids[-1]) == []
    assert s.last_invalidation_id() == ids[-1]
