"""The ``0015_wake`` upgrade over a database with mailboxes, item links and records: the
push marks' table is there and empty (every mailbox pushes in full once, then quietly), the
records keep their rows, and the indexes a quiet push reads by are in place (SQLite and
PostgreSQL); the downgrade takes them away again."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_acts_core import MAILBOX, _appointment
from tests.test_migrations_send import _upgrade, app_at


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_adds_empty_push_marks_and_the_indexes(database, tmp_path, request):
    app, url = app_at("0014_perf_sched", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _ann(conn)
            _row(conn, "mailbox", id=1, name="ann@contoso.test",
                 email_address="ann@contoso.test", user_id=1, **MAILBOX)
            _appointment(conn, 10, "meet@x")
            _row(conn, "item_link", id=1, mailbox_id=1, kind="appointment",
                 collection_key="/cal/", ref="/cal/1.ics", uid="meet@x", activity_id=10,
                 tracked=True, origin="server", synced_on=WHEN)
        db.engine.dispose()
    _upgrade(app, "0015_wake")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM item_push_mark")).scalar() == 0
            assert conn.execute(text("SELECT id FROM activity")).all() == [(10,)]
            assert conn.execute(text("SELECT count(*) FROM item_link")).scalar() == 1
        found = inspect(engine)
        assert {c["name"] for c in found.get_columns("item_push_mark")} == {
            "id", "mailbox_id", "kind", "filter_key", "pushed_from"}
        assert "ix_activity_type_modified" in {i["name"] for i in found.get_indexes("activity")}
        assert "ix_contact_modified" in {i["name"] for i in found.get_indexes("contact")}
    finally:
        engine.dispose()
    _upgrade_down(app)
    engine = create_engine(url)
    try:
        found = inspect(engine)
        assert "item_push_mark" not in found.get_table_names()
        assert "ix_contact_modified" not in {i["name"] for i in found.get_indexes("contact")}
    finally:
        engine.dispose()


def _upgrade_down(app) -> None:
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0014_perf_sched"])
    assert result.exit_code == 0, (result.output, result.exception)
