"""The ``0002_keys`` upgrade: email keys stored under the old tracking rules are rewritten as
``server.mailkeys`` writes them, on SQLite and PostgreSQL, and are found again by the lookups
of tracking, the sync engine and the add-in; nothing is lost where a key cannot move."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import text

from server.db import db
from tests.conftest import make_config
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)

WHEN = datetime(2026, 1, 1, 12, 0)
# A real Outlook Thread-Index without its base64 padding (the old rule read no id from it).
ROOT_UNPADDED = "AcpZlFLF/Y9EfcC0QZKKEuUFm2Snqw"
ODD_INDEX = "AQEBAQEBAQEBAQEBAQEBAQEBAQ=="  # 23 bytes: not 22 + 5n, no id by the one rule


def _row(conn, table: str, **values) -> None:
    conn.execute(sa.table(table, *(sa.column(c) for c in values)).insert().values(**values))


def _ann(conn) -> None:
    """The business unit Contoso and its user Ann Archer (id 1 each), as every revision
    since the first stores them."""
    _row(conn, "business_unit", id=1, name="Contoso", is_active=True, created_on=WHEN)
    _row(conn, "user", id=1, first_name="Ann", last_name="Archer", full_name="Ann Archer",
         email="ann@contoso.test", is_active=True, business_unit_id=1, session_version=1,
         alert_emails="errors", created_on=WHEN, modified_on=WHEN)


def _email(conn, id_: int, message_id: str, dedupe_key: str, **columns) -> None:
    _row(conn, "activity", id=id_, activity_type="email", subject="Quote", state="completed",
         priority="normal", occurred_on=WHEN, created_on=WHEN, modified_on=WHEN,
         owning_business_unit_id=1, owner_user_id=1)
    _row(conn, "email", id=id_, direction="incoming", status="received", delivery_attempts=0,
         message_id=message_id, dedupe_key=dedupe_key, **columns)


def _old_keys(conn) -> None:
    """Rows as the old tracking rules stored them."""
    _ann(conn)
    _row(conn, "user", id=2, first_name="Bob", last_name="Baker", full_name="Bob Baker",
         email="bob@contoso.test", is_active=True, business_unit_id=1, session_version=1,
         alert_emails="errors", created_on=WHEN, modified_on=WHEN)
    _email(conn, 1, "a(sent from web)@fabrikam.test", "a(sent from web)@fabrikam.test",
           in_reply_to="p(c)@fabrikam.test", references="r1(c)@fabrikam.test r2@fabrikam.test",
           conversation_index=ROOT_UNPADDED, conversation_id=None,
           sender_address='"carol"@fabrikam.test')
    # The same email tracked again under the other rule: its key is taken, it stays.
    _email(conn, 2, "a@fabrikam.test", "a@fabrikam.test")
    _email(conn, 3, "b@fabrikam.test", "b@fabrikam.test#owner:1", conversation_index=ODD_INDEX,
           conversation_id="01" * 16)
    _row(conn, "activity_party", id=1, activity_id=1, role="from", address='"carol"@fabrikam.test')
    _row(conn, "track_request", id=1, user_id=1, item_type="email", status="pending",
         internet_message_id="m(c)@fabrikam.test", created_on=WHEN)
    _row(conn, "track_request", id=2, user_id=1, item_type="email", status="untracked",
         internet_message_id="n(c)@fabrikam.test", created_on=WHEN)
    _row(conn, "track_request", id=3, user_id=1, item_type="email", status="pending",
         internet_message_id="n@fabrikam.test", created_on=WHEN)
    _row(conn, "track_request", id=4, user_id=2, item_type="email", status="pending",
         internet_message_id="n(c)@fabrikam.test", created_on=WHEN)
    _row(conn, "contact", id=1, is_active=True, created_on=WHEN, modified_on=WHEN,
         owning_business_unit_id=1, owner_user_id=1, last_name="Carol", full_name="Carol",
         email1="Carol <carol@straße.test>", email2='"Carol.C"@fabrikam.test')
    for address, kind, record in (("ann@contoso.test", "user", 1), ("bob@contoso.test", "user", 2),
                                  ("carol@strasse.test", "contact", 1),
                                  ('"carol.c"@fabrikam.test', "contact", 1)):
        _row(conn, "email_address", address=address, record_type=kind, record_id=record)
    _row(conn, "tracking_block", id=1, pattern='"spam"@junk.test', created_on=WHEN)


def _column(conn, table: str, column: str) -> list:
    return list(conn.execute(text(f'SELECT "{column}" FROM "{table}" ORDER BY id')).scalars())


def upgrade_old_keys(url: str, tmp_path) -> None:
    from server import create_app
    from server.crm.services import tracked
    from server.crm.services.resolution import resolve
    from server.mailkeys import conversation_id, normalize_message_id
    from server.security import authz
    from server.security.models import User

    app = create_app(make_config(url, tmp_path))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", "0001"])
    assert result.exit_code == 0, (result.output, result.exception)
    with app.app_context():
        with db.engine.begin() as conn:
            _old_keys(conn)
        db.engine.dispose()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, (result.output, result.exception)
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                assert _column(conn, "email", "message_id") == \
                    ["a@fabrikam.test", "a@fabrikam.test", "b@fabrikam.test"]
                assert _column(conn, "email", "dedupe_key") == \
                    ["a(sent from web)@fabrikam.test", "a@fabrikam.test", "b@fabrikam.test#owner:1"]
                assert _column(conn, "email", "in_reply_to") == ["p@fabrikam.test", None, None]
                assert _column(conn, "email", "references")[0] == "r1@fabrikam.test r2@fabrikam.test"
                assert _column(conn, "email", "conversation_id") == \
                    [conversation_id(ROOT_UNPADDED + "=="), None, "01" * 16]
                assert _column(conn, "email", "sender_address") == ["carol@fabrikam.test", None, None]
                assert _column(conn, "activity_party", "address") == ["carol@fabrikam.test"]
                assert _column(conn, "track_request", "internet_message_id") == \
                    ["m@fabrikam.test", "n(c)@fabrikam.test", "n@fabrikam.test", "n@fabrikam.test"]
                assert sorted(conn.execute(text("SELECT address, record_type, record_id FROM email_address"))
                              .all()) == [("ann@contoso.test", "user", 1), ("bob@contoso.test", "user", 2),
                                          ("carol.c@fabrikam.test", "contact", 1),
                                          ("carol@xn--strae-oqa.test", "contact", 1)]
                assert _column(conn, "tracking_block", "pattern") == ["spam@junk.test"]
            # Found again as the add-in and the sync engine ask.
            ann = authz.principal(db.session.get(User, 1))
            assert tracked.find_email(normalize_message_id("<a(sent from web)@Fabrikam.test>")).id == 1
            assert tracked.tracking_status(ann, "<m@fabrikam.test>").status == "pending"
            found = resolve(["carol@straße.test", '"Carol.C"@Fabrikam.test'])
            assert [m.record_id for ms in found.values() for m in ms] == [1, 1]
        finally:
            db.session.remove()
            db.engine.dispose()


def test_upgrade_rewrites_old_keys_on_sqlite(tmp_path):
    upgrade_old_keys(f"sqlite:///{tmp_path / 'old-keys.db'}", tmp_path)


def test_upgrade_rewrites_old_keys_on_postgresql(fresh_postgresql, tmp_path):  # noqa: F811
    upgrade_old_keys(fresh_postgresql, tmp_path)
