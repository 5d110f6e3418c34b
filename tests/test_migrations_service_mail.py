"""The service mail revision (0012_service_mail) over a database that has a queue and an
email (SQLite and PostgreSQL): the queue keeps everything and accepts email from everyone,
as every queue did before; the email has no extra headers; down again, both columns go and
the rows stay."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401
from tests.test_migrations_send import _upgrade, app_at


def _read(url: str):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            queue_columns = {c["name"] for c in inspect(conn).get_columns("queue")}
            email_columns = {c["name"] for c in inspect(conn).get_columns("email")}
            queue = conn.execute(text("SELECT * FROM queue")).mappings().one()
            email = conn.execute(text("SELECT * FROM email")).mappings().one()
    finally:
        engine.dispose()
    return queue_columns, email_columns, dict(queue), dict(email)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_queues_and_emails_and_every_queue_accepts_everyone(database, tmp_path,
                                                                           request):
    app, url = app_at("0011_act", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO business_unit (id, name, parent_id, is_active, "
                              "created_on) VALUES (1, 'Contoso', NULL, true, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO team (id, name, business_unit_id, created_on) "
                              "VALUES (3, 'Care', 1, CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO queue (id, name, email, is_active, created_on, modified_on, "
                "owning_business_unit_id, owner_team_id) VALUES (5, 'Support', "
                "'support@contoso.test', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, 3)"))
            conn.execute(text(
                "INSERT INTO activity (id, activity_type, subject, state, priority, occurred_on, "
                "created_on, modified_on, owning_business_unit_id, owner_team_id) VALUES (9, "
                "'email', 'Help', 'open', 'normal', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, 1, 3)"))
            conn.execute(text("INSERT INTO email (id, direction, status, delivery_attempts, "
                              "message_id) VALUES (9, 'outgoing', 'pending_send', 0, 'a@b')"))
        db.engine.dispose()
    _, _, queue_before, email_before = _read(url)
    _upgrade(app, "0012_service_mail")
    queue_columns, email_columns, queue, email = _read(url)
    assert queue.pop("accepting") == "everyone" and queue == queue_before
    assert email.pop("internet_headers") is None and email == email_before
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0011_act"])
    assert result.exit_code == 0, (result.output, result.exception)
    queue_columns, email_columns, queue, email = _read(url)
    assert "accepting" not in queue_columns and "internet_headers" not in email_columns
    assert queue == queue_before and email == email_before
