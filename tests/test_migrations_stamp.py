"""The ``0017_stamp`` upgrade: the organization gets a security stamp, and triggers change it
on every write to a principal's inputs and to the organization (SQLite and PostgreSQL); they
are there at the head (a later SQLite migration rebuilding one of those tables would drop
them); the downgrade removes them. ``0018_unitstamp``: writes to ``business_unit`` change it
too, from a database at 0017 holding the demo organization; its downgrade leaves 0017's."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from server.db import db
from tests.test_migration_keys import _ann
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_demo import copy_demo
from tests.test_migrations_send import _upgrade, app_at, organization_row

TABLES = ("user_role", "team_member", "team_role", "security_role", "role_privilege",
          "secured_field", "organization", "business_unit")
UNIT_WRITES = (  # a unit added, moved under another parent, disabled, deleted
    "INSERT INTO business_unit (id, name, parent_id, is_active, created_on) "
    "VALUES (9001, 'Stamp unit', NULL, true, CURRENT_TIMESTAMP)",
    "UPDATE business_unit SET parent_id = (SELECT min(id) FROM business_unit WHERE id <> 9001) "
    "WHERE id = 9001",
    "UPDATE business_unit SET is_active = false WHERE id = 9001",
    "DELETE FROM business_unit WHERE id = 9001")


def _triggers(conn, database: str) -> set[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger'" if database == "sqlite" else
           "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    return {name for (name,) in conn.execute(text(sql)) if name.startswith("security_stamp_")}


def _stamp(conn) -> int | None:
    return conn.execute(text("SELECT security_stamp FROM organization WHERE id = 1")).scalar()


def _before(database: str, tmp_path, request):
    """A database at 0016 with Ann, the organization and a role; then upgraded to the head."""
    app, url = app_at("0016_pgtimeline", database, tmp_path, request)
    with app.app_context(), db.engine.begin() as conn:
        _ann(conn)
        organization_row(conn)
        conn.execute(text("INSERT INTO security_role (id, name, is_builtin) "
                          "VALUES (1, 'Salesperson', true)"))
    with app.app_context():
        db.engine.dispose()
    _upgrade(app, "head")
    return app, url


@contextmanager
def _connected(url: str):
    """A connection of its own (a transaction, committed) to the database at ``url``."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_stamps_the_organization_and_every_write_changes_it(database, tmp_path, request):
    app, url = _before(database, tmp_path, request)
    with _connected(url) as conn:
        names = _triggers(conn, database)
        assert all(any(n.startswith(f"security_stamp_{t}") for n in names) for t in TABLES)
        stamps = [_stamp(conn)]
    for write in ("INSERT INTO user_role (user_id, role_id) VALUES (1, 1)",
                  "INSERT INTO role_privilege (role_id, privilege, depth) "
                  "VALUES (1, 'contact.read', 2)",
                  "UPDATE role_privilege SET depth = 4",
                  "DELETE FROM user_role",
                  "INSERT INTO secured_field (table_name, field) VALUES ('contact', 'phone')",
                  "UPDATE organization SET tracking_token_prefix = 'TRK:'",
                  *UNIT_WRITES,
                  "DELETE FROM security_role"):  # (its privileges go by cascade)
        with _connected(url) as conn:
            conn.execute(text(write))
            stamps.append(_stamp(conn))
    assert None not in stamps and len(set(stamps)) == len(stamps), stamps
    with _connected(url) as conn:
        conn.execute(text("UPDATE \"user\" SET job_title = 'Buyer'"))  # not an input
        assert _stamp(conn) == stamps[-1]
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0016_pgtimeline"])
    assert result.exit_code == 0, (result.output, result.exception)
    with _connected(url) as conn:
        assert _triggers(conn, database) == set()
        assert "security_stamp" not in conn.execute(text("SELECT * FROM organization")).keys()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_unit_writes_change_the_stamp_of_a_demo_database_from_0017(database, tmp_path, request):
    app, url = app_at("0017_stamp", database, tmp_path, request)
    with app.app_context():
        db.engine.dispose()
    copy_demo(url, tmp_path)  # (today's code seeds the demo at the newest revision only)
    with _connected(url) as conn:
        at_0017 = _triggers(conn, database)
        units = conn.execute(text("SELECT count(*) FROM business_unit")).scalar()
        assert units >= 5 and not any("business_unit" in n for n in at_0017)
        stamps = [_stamp(conn)]
    _upgrade(app, "0018_unitstamp")
    with _connected(url) as conn:
        assert {n for n in _triggers(conn, database) if "business_unit" in n}
        assert conn.execute(text("SELECT count(*) FROM business_unit")).scalar() == units
    for write in UNIT_WRITES:
        with _connected(url) as conn:
            conn.execute(text(write))
            stamps.append(_stamp(conn))
    assert None not in stamps and len(set(stamps)) == len(stamps), stamps
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0017_stamp"])
    assert result.exit_code == 0, (result.output, result.exception)
    with _connected(url) as conn:
        assert _triggers(conn, database) == at_0017
        before = _stamp(conn)
        conn.execute(text(UNIT_WRITES[0]))
        assert _stamp(conn) == before
