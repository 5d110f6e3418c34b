"""The ``0019_slimindexes`` upgrade over a database with activities, parties and emails: the
regarding, party and email indexes hold the rows whose column is set, the redundant ones are
gone, every row is kept, and both databases still find a record's activities through them,
PostgreSQL's generic plans (the timeline's prepared page statement) included; the downgrade
puts the full indexes back (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migration_keys import WHEN, _ann, _row
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401 (fixtures)
from tests.test_migrations_send import _upgrade, app_at

PARTIAL = {"activity": {f"ix_activity_regarding_{t}_id_occurred"
                        for t in ("account", "contact", "lead", "opportunity", "case")},
           "activity_party": {f"ix_activity_party_{t}_id_occurred"
                              for t in ("user", "contact", "account", "lead", "queue")},
           "email": {"ix_email_tracking_token", "ix_email_parent_activity_id",
                     "ix_email_receiving_mailbox_id"}}
DROPPED = {"activity": {f"ix_activity_regarding_{t}_id"
                        for t in ("account", "contact", "lead", "opportunity", "case")},
           "email": {"ix_email_in_reply_to"}}
# (the query, the value it looks for, the index it must use): each the way the app asks.
LOOKUPS = [
    ("SELECT id FROM activity WHERE regarding_account_id = {v} "
     "ORDER BY occurred_on DESC, id DESC LIMIT 26", 7, "ix_activity_regarding_account_id_occurred"),
    ("SELECT activity_id FROM activity_party WHERE account_id = {v} "
     "ORDER BY occurred_on DESC, activity_id DESC LIMIT 26", 7,
     "ix_activity_party_account_id_occurred"),
    ("SELECT id FROM email WHERE tracking_token = {v}", "CRM:0001", "ix_email_tracking_token"),
    ("SELECT id FROM email WHERE parent_activity_id = {v}", 101, "ix_email_parent_activity_id"),
]


def _fill(conn) -> None:
    _ann(conn)
    _row(conn, "account", id=7, name="Fabrikam", is_active=True, owner_user_id=1,
         owning_business_unit_id=1, created_on=WHEN, modified_on=WHEN)
    for n in range(1, 31):
        _row(conn, "activity", id=100 + n, activity_type="email", subject="Quote",
             state="completed", priority="normal", occurred_on=WHEN + timedelta(hours=n),
             created_on=WHEN, modified_on=WHEN, owning_business_unit_id=1, owner_user_id=1,
             regarding_account_id=7 if n % 3 == 0 else None)
        _row(conn, "email", id=100 + n, direction="incoming", status="received",
             delivery_attempts=0, message_id=f"m{n}@fabrikam.test",
             dedupe_key=f"m{n}@fabrikam.test", tracking_token="CRM:0001" if n == 5 else None,
             parent_activity_id=101 if n > 20 else None,
             in_reply_to="<m1@fabrikam.test>" if n > 20 else None)
        _row(conn, "activity_party", id=n, activity_id=100 + n, role="from",
             address=f"a{n}@fabrikam.test", account_id=7 if n % 2 else None,
             occurred_on=WHEN + timedelta(hours=n))


def _indexes(engine, table: str) -> dict[str, str | None]:
    return {i["name"]: (i.get("dialect_options") or {}).get(f"{engine.dialect.name}_where")
            for i in inspect(engine).get_indexes(table)}


def _plan(conn, query: str, value) -> str:
    literal = repr(value)  # 7, or 'CRM:0001' (SQL's quotes)
    if conn.dialect.name == "sqlite":
        sql = "EXPLAIN QUERY PLAN " + query.format(v=literal)
        return " ".join(str(r[-1]) for r in conn.execute(text(sql)))
    # PostgreSQL: a prepared statement's generic plan (no values known when it is made), as
    # the timeline's page statement runs; the tables are tiny, so scans are ruled out.
    conn.execute(text("SET enable_seqscan = off"))
    conn.execute(text("SET plan_cache_mode = force_generic_plan"))
    typed = query.format(v="$1::varchar" if isinstance(value, str) else "$1::integer")
    conn.execute(text(f"PREPARE lookup AS {typed}"))
    plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN EXECUTE lookup({literal})")))
    conn.execute(text("DEALLOCATE lookup"))
    return plan


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_set_values_only_and_the_lookups_use_them(database, tmp_path, request):
    app, url = app_at("0018_unitstamp", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            _fill(conn)
        db.engine.dispose()
    _upgrade(app, "0019_slimindexes")
    engine = create_engine(url)
    try:
        for table, names in PARTIAL.items():
            found = _indexes(engine, table)
            for name in names:
                column = name.removeprefix(f"ix_{table}_").removesuffix("_occurred")
                assert name in found, name
                assert "is not null" in str(found[name]).lower(), (name, found[name])
                assert column in str(found[name]), (name, found[name])
            assert not (DROPPED.get(table, set()) & set(found))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM activity")).scalar() == 30
            assert conn.execute(text("SELECT count(*) FROM activity_party")).scalar() == 30
            assert conn.execute(text("SELECT count(*) FROM email WHERE in_reply_to IS NOT NULL")
                                ).scalar() == 10
            for query, value, index in LOOKUPS:
                plan = _plan(conn, query, value)
                assert index in plan, (query, plan)
            rows = conn.execute(text(LOOKUPS[0][0].format(v=7))).scalars().all()
            assert rows == [100 + n for n in range(30, 0, -1) if n % 3 == 0]
            parties = conn.execute(text(LOOKUPS[1][0].format(v=7))).scalars().all()
            assert parties == [100 + n for n in range(30, 0, -1) if n % 2]
            conn.rollback()
        with engine.begin() as conn:  # the foreign key's action finds the rows to clear
            conn.execute(text("DELETE FROM account WHERE id = 7"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM activity WHERE "
                                     "regarding_account_id IS NOT NULL")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM activity_party WHERE "
                                     "account_id IS NOT NULL")).scalar() == 0
    finally:
        engine.dispose()

    result = app.test_cli_runner().invoke(args=["db", "downgrade", "0018_unitstamp"])
    assert result.exit_code == 0, (result.output, result.exception)
    engine = create_engine(url)
    try:
        for table, names in PARTIAL.items():
            found = _indexes(engine, table)
            assert all(found.get(name, "missing") is None for name in names), found
            assert DROPPED.get(table, set()) <= set(found)
    finally:
        engine.dispose()
