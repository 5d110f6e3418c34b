"""The ``0022_svcheld`` upgrade: every email server profile is kept with no refusal held
(``service_refusals`` empty), one can then hold one, and the downgrade drops the column and
keeps the profiles (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at, rows

PROFILE = dict(incoming_protocol="imap", incoming_host="imap.contoso.test", incoming_port=993,
               incoming_security="tls", outgoing_security="starttls", auth_method="password",
               use_service_account=True, service_username="crm-service", settings="{}",
               max_connections=10, owning_business_unit_id=1, created_on=WHEN,
               modified_on=WHEN)


def _profiles(url: str, columns: str) -> list[tuple]:
    return rows(url, f"SELECT {columns} FROM email_server_profile ORDER BY id")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_every_profile_with_nothing_held(database, tmp_path, request):
    app, url = app_at("0021_actsoff", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _ann(conn)
            for n in (1, 2):
                _row(conn, "email_server_profile", id=n, name=f"Profile {n}", **PROFILE)
        db.engine.dispose()
    _upgrade(app, "0022_svcheld")
    assert _profiles(url, "id, name, service_refusals") == [
        (1, "Profile 1", None), (2, "Profile 2", None)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE email_server_profile SET service_refusals = :held "
                              "WHERE id = 2"), {"held": '{"incoming": {"on": "x"}}'})
    finally:
        engine.dispose()

    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0021_actsoff"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert _profiles(url, "id, name, service_username") == [
        (1, "Profile 1", "crm-service"), (2, "Profile 2", "crm-service")]
