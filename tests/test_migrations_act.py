"""The ``0011_act`` upgrade over a database with records: appointments, tasks and contacts
keep what they had and get the calendar defaults (busy, normal, not started); the sync
tables are there (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at


def _records(conn) -> None:
    _ann(conn)
    _row(conn, "contact", id=1, is_active=True, created_on=WHEN, modified_on=WHEN,
         owning_business_unit_id=1, owner_user_id=1, last_name="Carol", full_name="Carol",
         city="Oslo")
    for id_, kind in ((1, "appointment"), (2, "task")):
        _row(conn, "activity", id=id_, activity_type=kind, subject=f"A {kind}", state="open",
             priority="normal", occurred_on=WHEN, created_on=WHEN, modified_on=WHEN,
             owning_business_unit_id=1, owner_user_id=1)
    _row(conn, "appointment", id=1, location="Room 1", is_all_day=False,
         global_object_id="uid-1@contoso.test")
    _row(conn, "task", id=2, percent_complete=50)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_records_and_adds_the_sync_tables(database, tmp_path, request):
    app, url = app_at("0010_cases", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _records(conn)
        db.engine.dispose()
    _upgrade(app, "0011_act")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text(
                "SELECT location, global_object_id, show_as, sensitivity, recurrence_rule "
                "FROM appointment")).one() == ("Room 1", "uid-1@contoso.test", "busy",
                                               "normal", None)
            assert conn.execute(text("SELECT percent_complete, task_status FROM task")).one() \
                == (50, "not_started")
            assert conn.execute(text("SELECT city, street, birthday FROM contact")).one() \
                == ("Oslo", None, None)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"item_cursor", "item_link", "sync_filter", "field_direction"} <= tables
    _upgrade(app, "0010_cases")  # and back down, losing nothing it had before
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT location FROM appointment")).scalar() == "Room 1"
    finally:
        engine.dispose()
