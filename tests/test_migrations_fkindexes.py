"""The ``0020_fkindexes`` upgrade over a database with decision rows and track requests: the
columns that point at an activity are indexed where set, so deleting an activity finds the
rows to clear through them instead of reading the whole decision log; the sender index
nothing could use is gone; every row is kept; the downgrade puts things back (SQLite and
PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from server.db import db
from tests.conftest import make_config
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_acts_core import MAILBOX, _appointment
from tests.test_migrations_send import _upgrade, app_at
from tests.test_migrations_slimindexes import _indexes, _plan

PARTIAL = {"message_decision": {"ix_message_decision_activity_id": "activity_id"},
           "track_request": {"ix_track_request_activity_id": "activity_id"},
           "case_acknowledgement": {"ix_case_acknowledgement_email_id": "email_id",
                                    "ix_case_acknowledgement_case_id": "case_id"},
           "mailbox_job_item": {"ix_mailbox_job_item_mailbox_id": "mailbox_id"}}
LOOKUPS = [("SELECT id FROM message_decision WHERE activity_id = {v}", 10,
            "ix_message_decision_activity_id"),
           ("SELECT id FROM track_request WHERE activity_id = {v}", 10,
            "ix_track_request_activity_id")]


def _fill(conn) -> None:
    _ann(conn)
    _row(conn, "mailbox", id=1, name="ann@contoso.test", email_address="ann@contoso.test",
         user_id=1, **MAILBOX)
    for activity in (10, 11):
        _appointment(conn, activity, f"meet{activity}@x")
    for n, activity in enumerate((10, 11, None, None), start=1):
        _row(conn, "message_decision", id=n, mailbox_id=1, identity=f"m{n}@fabrikam.test",
             from_address="sales@fabrikam.test", subject="Quote", tracked=activity is not None,
             reason="Tracked." if activity else "No CRM record.", rule_hits="[]",
             activity_id=activity, processed_on=WHEN)
    _row(conn, "track_request", id=1, user_id=1, item_type="email",
         internet_message_id="m1@fabrikam.test", status="done", activity_id=10,
         created_on=WHEN)


def _count(conn, sql: str) -> int:
    return conn.execute(text(sql)).scalar()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_indexes_what_points_at_an_activity_and_keeps_every_row(database, tmp_path,
                                                                       request):
    app, url = app_at("0019_slimindexes", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _fill(conn)
        db.engine.dispose()
    _upgrade(app, "0020_fkindexes")
    engine = create_engine(url)
    try:
        for table, names in PARTIAL.items():
            found = _indexes(engine, table)
            for name, column in names.items():
                assert name in found, (name, found)
                assert f"{column} is not null" in str(found[name]).lower(), (name, found[name])
        assert "ix_case_acknowledgement_queue_id" in _indexes(engine, "case_acknowledgement")
        assert "ix_message_decision_from_address" not in _indexes(engine, "message_decision")
        with engine.connect() as conn:
            for query, value, index in LOOKUPS:
                assert index in _plan(conn, query, value), query
            conn.rollback()
        with engine.begin() as conn:  # the foreign keys' action finds its rows by the index
            conn.execute(text("DELETE FROM appointment WHERE id = 10"))
            conn.execute(text("DELETE FROM activity WHERE id = 10"))
        with engine.connect() as conn:
            assert _count(conn, "SELECT count(*) FROM message_decision") == 4
            assert conn.execute(text("SELECT id, activity_id FROM message_decision "
                                     "WHERE activity_id IS NOT NULL")).all() == [(2, 11)]
            assert _count(conn, "SELECT count(*) FROM track_request "
                                "WHERE activity_id IS NULL AND status = 'done'") == 1
            assert _count(conn, "SELECT count(*) FROM message_decision "
                                "WHERE from_address LIKE '%fabrikam%'") == 4
    finally:
        engine.dispose()

    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0019_slimindexes"])
    assert result.exit_code == 0, (result.output, result.exception)
    engine = create_engine(url)
    try:
        for table, names in PARTIAL.items():
            assert not set(names) & set(_indexes(engine, table))
        assert "ix_message_decision_from_address" in _indexes(engine, "message_decision")
    finally:
        engine.dispose()


# Tables whose rows people delete in the ordinary course (records, activities, queues,
# mailboxes); users, business units and roles are deactivated, not deleted.
DELETED_FROM = {"activity", "email", "appointment", "task", "phone_call", "account", "contact",
                "lead", "opportunity", "support_case", "queue", "mailbox"}


def test_every_foreign_key_into_a_table_people_delete_from_is_indexed(tmp_path):
    """A parent's delete finds the rows that point at it through an index on their column
    (the first of some index, a unique constraint or the primary key), never by reading
    the whole child table."""
    from server import create_app
    create_app(make_config(f"sqlite:///{tmp_path / 'schema.db'}", tmp_path))  # every model
    unindexed = []
    for table in db.metadata.sorted_tables:
        first = {next(iter(index.columns)).name for index in table.indexes}
        first |= {next(iter(c.columns)).name for c in table.constraints
                  if hasattr(c, "columns") and len(c.columns) and not c.__class__.__name__
                  .startswith(("ForeignKey", "Check"))}
        unindexed += [f"{table.name}.{fk.parent.name}" for fk in table.foreign_keys
                      if fk.column.table.name in DELETED_FROM and fk.parent.name not in first]
    assert unindexed == []
