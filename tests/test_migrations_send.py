"""The send branch's revision upgrades a database that already has an organization: the new
setting "allow messages to unresolved recipients" is on, and the template and signature
tables are there (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.conftest import make_config
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401


def _upgrade(app, revision):
    result = app.test_cli_runner().invoke(args=["db", "upgrade", revision])
    assert result.exit_code == 0, (result.output, result.exception)


def app_at(revision: str, database: str, tmp_path, request):
    """(app, url) of a new database (SQLite, or PostgreSQL of its own) upgraded to
    ``revision``: where a revision's upgrade test fills in rows before upgrading."""
    from server import create_app
    url = (f"sqlite:///{tmp_path / 'old.db'}" if database == "sqlite"
           else request.getfixturevalue("fresh_postgresql"))
    app = create_app(make_config(url, tmp_path))
    _upgrade(app, revision)
    return app, url


def rows(url: str, sql: str) -> list[tuple]:
    """What ``sql`` reads from the database at ``url``, on a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).all()
    finally:
        engine.dispose()


def organization_row(conn) -> None:
    """The organization as revision 0003 and every later one can store it."""
    conn.execute(text(
        "INSERT INTO organization (id, name, base_currency, resolve_inactive_records, "
        "unresolve_ambiguous_addresses, attachment_max_bytes, use_tracking_token, "
        "tracking_token_prefix, track_sent_items, track_between_users_as_two, "
        "smart_matching, require_email_approval, modified_on) VALUES (1, 'Contoso', "
        "'USD', false, false, 1000, true, 'CRM:', true, false, false, true, "
        "CURRENT_TIMESTAMP)"))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_the_organization_and_turns_the_setting_on(database, tmp_path, request):
    app, url = app_at("0003_secb", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            organization_row(conn)
        db.engine.dispose()
    _upgrade(app, "0004_send")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name, allow_unresolved_recipients FROM "
                                     "organization")).one() == ("Contoso", True)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"email_template", "email_signature"} <= tables
