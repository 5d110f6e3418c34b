"""The pane branch's revision (``0008_pane``) upgrades a database that has users and their
add-in tokens: the tokens are kept (with no device, so each lives until it expires), and
the "who may track on my behalf" table is there, refusing a user as their own delegate
(SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import create_engine, text

from server.db import db
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at

WHEN = datetime(2026, 12, 1, 12, 0)


def _row(conn, table: str, **values) -> None:
    conn.execute(sa.table(table, *(sa.column(c) for c in values)).insert().values(**values))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_tokens_and_adds_tracking_delegates(database, tmp_path, request):
    app, url = app_at("0007_i18n", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _row(conn, "business_unit", id=1, name="Contoso", is_active=True, created_on=WHEN)
            for n, (first, email) in enumerate((("Ann", "ann@contoso.test"), ("Bob", "bob@contoso.test")), 1):
                _row(conn, "user", id=n, first_name=first, last_name="X", full_name=f"{first} X",
                     email=email, is_active=True, business_unit_id=1, session_version=1,
                     alert_emails="errors", created_on=WHEN, modified_on=WHEN)
            _row(conn, "api_token", id=1, user_id=1, name="Outlook add-in", kind="pane",
                 token_hash="a" * 64, prefix="rgp_aaaaaaaa", created_on=WHEN,
                 expires_on=WHEN + timedelta(hours=8))
        db.engine.dispose()
    _upgrade(app, "0008_pane")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT user_id, kind, device FROM api_token")).one() == (1, "pane", None)
            _row(conn, "tracking_delegate", owner_user_id=1, delegate_user_id=2, created_on=WHEN)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            _row(conn, "tracking_delegate", owner_user_id=2, delegate_user_id=2, created_on=WHEN)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT owner_user_id, delegate_user_id FROM tracking_delegate")).all() == [(1, 2)]
    finally:
        engine.dispose()
