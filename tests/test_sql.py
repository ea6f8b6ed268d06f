"""The statements, written once with ``?``: psycopg's copy is made by ``Statements.pyformat``."""

from dataclasses import fields

from forge_ref.pg_store import PgDriver
from forge_ref.sql import SQL, Statements
from forge_ref.store import SqliteDriver


def test_each_driver_holds_the_statements_in_its_parameter_style():
    assert SqliteDriver.sql is SQL
    pg = PgDriver.sql
    assert pg.user_by_key_hash == ("SELECT u.id, u.name, k.key_hash, k.key_prefix, k.providers FROM forge_keys AS k"
                                   " JOIN users AS u ON u.id = k.user_id WHERE k.key_hash = %s")
    for f in fields(Statements):
        sqlite_text, pg_text = getattr(SQL, f.name), getattr(pg, f.name)
        assert "?" not in pg_text and "%s" not in sqlite_text
        assert pg_text.count("%s") == sqlite_text.count("?")
        assert pg_text.replace("%s", "?") == sqlite_text  # nothing else changed


def test_marks_and_literal_percent():
    s = Statements(prune_invalidations="SELECT '5%' WHERE kind = ? AND key = ?").pyformat()
    assert s.prune_invalidations == "SELECT '5%%' WHERE kind = %s AND key = %s"


def test_per_call_fields_keep_their_slots():
    pg = PgDriver.sql
    sets = ", ".join(pg.set_column.format(c) for c in ("base_url", "updated_at"))
    assert pg.update_provider_key.format(sets).startswith(
        "UPDATE provider_keys SET base_url = %s, updated_at = %s WHERE user_id = %s AND provider = %s RETURNING ")
    assert pg.append_invalidations.format(", ".join([pg.invalidation_row] * 2)) == (
        "INSERT INTO invalidations (kind, key, created_at) VALUES (%s, %s, %s), (%s, %s, %s) RETURNING id")
