"""The ``0013_acts_core`` upgrade over a database where two workers already made two (or
three) appointments of one meeting: the upgrade merges them into the oldest, which gets the
others' sync links, track requests, the attendees it lacked and a regarding where it had
none, and then holds the UID alone (SQLite and PostgreSQL); the history table is there."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at


# What a mailbox row must hold at 0011 (its columns without a server default).
MAILBOX = dict(is_forward_mailbox=False, incoming_method="none", outgoing_method="none",
               acts_method="server_side_sync", tracking_option="all",
               auto_create_contacts=False, email_approved=True, enabled=True,
               incoming_enabled=True, outgoing_enabled=True, incoming_status="not_run",
               outgoing_status="not_run", acts_status="success", sync_interval_seconds=300,
               consecutive_failures=0, backlog=0, sync_requested=False,
               owning_business_unit_id=1, created_on=WHEN)


def _appointment(conn, id_: int, uid: str | None, **regarding) -> None:
    _row(conn, "activity", id=id_, activity_type="appointment", subject=f"Meeting {id_}",
         state="open", priority="normal", occurred_on=WHEN, created_on=WHEN, modified_on=WHEN,
         owning_business_unit_id=1, owner_user_id=1, **regarding)
    _row(conn, "appointment", id=id_, is_all_day=False, global_object_id=uid, show_as="busy",
         sensitivity="normal")


def _records(conn) -> None:
    _ann(conn)
    _row(conn, "account", id=5, name="Fabrikam", is_active=True, created_on=WHEN,
         modified_on=WHEN, owning_business_unit_id=1, owner_user_id=1)
    for id_, address in ((1, "ann@contoso.test"), (2, "bob@contoso.test")):
        _row(conn, "mailbox", id=id_, name=address, email_address=address, user_id=1,
             **MAILBOX)
    _appointment(conn, 10, "meet@x")  # the oldest copy: kept
    _appointment(conn, 11, "meet@x", regarding_account_id=5)
    _appointment(conn, 12, "meet@x")
    _appointment(conn, 13, "other@x")
    _appointment(conn, 14, None)
    _appointment(conn, 15, None)
    for id_, activity, role, address in ((1, 10, "organizer", "ann@contoso.test"),
                                         (2, 11, "organizer", "ANN@contoso.test"),
                                         (3, 11, "required", "bob@contoso.test"),
                                         (4, 12, "optional", "carol@fabrikam.test")):
        _row(conn, "activity_party", id=id_, activity_id=activity, role=role, address=address)
    for id_, mailbox, activity in ((1, 1, 10), (2, 2, 11), (3, 2, 12)):
        _row(conn, "item_link", id=id_, mailbox_id=mailbox, kind="appointment",
             collection_key="/cal/", ref=f"/cal/{id_}.ics", uid="meet@x", activity_id=activity,
             tracked=True, origin="server", synced_on=WHEN)
    _row(conn, "track_request", id=1, user_id=1, item_type="appointment",
         internet_message_id="meet@x", status="done", activity_id=12, created_on=WHEN)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_merges_copies_of_one_meeting_into_the_oldest(database, tmp_path, request):
    app, url = app_at("0012_service_mail", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _records(conn)
        db.engine.dispose()
    _upgrade(app, "0013_acts_core")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            def rows(sql: str) -> list[tuple]:
                return sorted(tuple(r) for r in conn.execute(text(sql)))
            assert rows("SELECT id, global_object_id FROM appointment") == [
                (10, "meet@x"), (13, "other@x"), (14, None), (15, None)]
            assert rows("SELECT id FROM activity") == [(10,), (13,), (14,), (15,)]
            # Ann the organizer once; Bob and Carol moved over from the copies.
            assert rows("SELECT activity_id, role, address FROM activity_party") == [
                (10, "optional", "carol@fabrikam.test"), (10, "organizer", "ann@contoso.test"),
                (10, "required", "bob@contoso.test")]
            assert rows("SELECT id, activity_id FROM item_link") == [(1, 10), (2, 10), (3, 10)]
            assert rows("SELECT activity_id FROM track_request") == [(10,)]
            assert rows("SELECT regarding_account_id FROM activity WHERE id = 10") == [(5,)]
            assert "record_history" in inspect(conn).get_table_names()
            assert "starts_on" in {c["name"] for c in inspect(conn).get_columns("track_request")}
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one per UID from now
            _appointment(conn, 20, "meet@x")
    finally:
        engine.dispose()
    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0012_service_mail"])  # and back
    assert result.exit_code == 0, (result.output, result.exception)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert "record_history" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT COUNT(*) FROM appointment")).scalar() == 4
    finally:
        engine.dispose()
