"""The ``0016_pgtimeline`` upgrade over a database with activities and their parties: every
party row gets its activity's ``occurred_on`` (the column then NOT NULL), and the timeline's
``(<party>_id, occurred_on, activity_id)`` indexes replace the ``(<party>_id,
activity_id)`` ones (SQLite and PostgreSQL); the downgrade puts the old ones back."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at


def _task(conn, id_: int, when) -> None:
    _row(conn, "activity", id=id_, activity_type="task", subject=f"Task {id_}", state="open",
         priority="normal", occurred_on=when, created_on=WHEN, modified_on=WHEN,
         owning_business_unit_id=1, owner_user_id=1)
    _row(conn, "task", id=id_, percent_complete=0, task_status="not_started", sensitivity="normal")


def _indexes(engine) -> set[str]:
    return {i["name"] for i in inspect(engine).get_indexes("activity_party")}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_gives_each_party_its_activity_time(database, tmp_path, request):
    app, url = app_at("0015_wake", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _ann(conn)
            _task(conn, 10, WHEN)
            _task(conn, 11, WHEN + timedelta(days=2, microseconds=7))
            for id_, activity, role in ((1, 10, "owner"), (2, 11, "owner"), (3, 11, "to")):
                _row(conn, "activity_party", id=id_, activity_id=activity, role=role, user_id=1)
        db.engine.dispose()
    _upgrade(app, "0016_pgtimeline")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            mismatched = conn.execute(text(
                "SELECT count(*) FROM activity_party JOIN activity ON activity.id = "
                "activity_party.activity_id WHERE activity_party.occurred_on IS NULL "
                "OR activity_party.occurred_on <> activity.occurred_on")).scalar()
            assert mismatched == 0
            assert conn.execute(text("SELECT count(*) FROM activity_party")).scalar() == 3
        column = next(c for c in inspect(engine).get_columns("activity_party")
                      if c["name"] == "occurred_on")
        assert column["nullable"] is False
        names = _indexes(engine)
        assert "ix_activity_party_account_id_occurred" in names
        assert not {n for n in names if n.endswith("_id_activity")}
    finally:
        engine.dispose()
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0015_wake"])
    assert result.exit_code == 0, (result.output, result.exception)
    engine = create_engine(url)
    try:
        assert "occurred_on" not in {c["name"] for c in inspect(engine).get_columns("activity_party")}
        assert "ix_activity_party_account_id_activity" in _indexes(engine)
    finally:
        engine.dispose()
