"""The ``0021_actsoff`` upgrade: every mailbox keeps its appointments, contacts and tasks
syncing (``acts_enabled`` on), a mailbox added afterwards without the column named gets it
on too, and the downgrade drops the column and keeps the mailboxes (SQLite and
PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from server.db import db
from tests.test_migration_keys import _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_acts_core import MAILBOX
from tests.test_migrations_send import _upgrade, app_at, rows


def _mailboxes(url: str, columns: str) -> list[tuple]:
    return rows(url, f"SELECT {columns} FROM mailbox ORDER BY id")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_every_mailbox_syncing_its_items(database, tmp_path, request):
    app, url = app_at("0020_fkindexes", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _ann(conn)
            for n, method in ((1, "server_side_sync"), (2, "none")):
                _row(conn, "mailbox", id=n, name=f"box{n}@contoso.test",
                     email_address=f"box{n}@contoso.test", user_id=1,
                     **{**MAILBOX, "acts_method": method})
        db.engine.dispose()
    _upgrade(app, "0021_actsoff")
    assert _mailboxes(url, "id, acts_method, acts_enabled") == [
        (1, "server_side_sync", True), (2, "none", True)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:  # a row written without the column: the server's default
            _row(conn, "mailbox", id=3, name="box3@contoso.test",
                 email_address="box3@contoso.test", user_id=1, **MAILBOX)
    finally:
        engine.dispose()
    assert _mailboxes(url, "acts_enabled")[-1] == (True,)

    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0020_fkindexes"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert _mailboxes(url, "id, acts_method") == [
        (1, "server_side_sync"), (2, "none"), (3, "server_side_sync")]
