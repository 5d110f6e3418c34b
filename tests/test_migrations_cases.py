"""The cases branch's revision over a database full of demo data (SQLite and PostgreSQL):
seeded at the head, taken back to 0009_provision and up again, every case, queue item and
email is kept; the case rule and acknowledgement tables come and go; a resolved case has
no resolution time until it is resolved again, and nothing is worked by anyone."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.conftest import make_config
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401

COUNTED = ("support_case", "queue_item", "email", "contact")


def _cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, (result.output, result.exception)


def _counts(url: str) -> tuple[dict, set[str], set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in COUNTED}
            tables = set(inspect(conn).get_table_names())
            columns = {c["name"] for c in inspect(conn).get_columns("support_case")}
    finally:
        engine.dispose()
    return counts, tables, columns


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_down_and_up_over_demo_data_keeps_everything(database, tmp_path, request):
    from server import create_app
    url = (f"sqlite:///{tmp_path / 'demo.db'}" if database == "sqlite"
           else request.getfixturevalue("fresh_postgresql"))
    app = create_app(make_config(url, tmp_path))
    _cli(app, "db", "upgrade")
    with app.app_context():
        from server.demo import seed
        seed()
        from sqlalchemy import select
        from server.crm.activities import Email
        from server.crm.models import Queue
        from server.crm.queues import QueueItem
        queue = db.session.scalar(select(Queue))
        db.session.add_all(QueueItem(queue_id=queue.id, activity_id=e) for e in db.session.scalars(
            select(Email.id).order_by(Email.id).limit(5)))
        db.session.commit()
        db.engine.dispose()
    before, tables, columns = _counts(url)
    assert before["support_case"] and before["queue_item"]
    assert {"case_rule", "case_acknowledgement"} <= tables and "resolved_on" in columns
    _cli(app, "db", "downgrade", "0009_provision")
    down, tables, columns = _counts(url)
    assert down == before and "case_rule" not in tables and "parent_case_id" not in columns
    _cli(app, "db", "upgrade")
    after, tables, columns = _counts(url)
    assert after == before and {"case_rule", "case_acknowledgement"} <= tables
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM queue_item WHERE worked_on IS NOT "
                                     "NULL")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM support_case WHERE resolved_on IS "
                                     "NOT NULL OR parent_case_id IS NOT NULL")).scalar() == 0
    finally:
        engine.dispose()
