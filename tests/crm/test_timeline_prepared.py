"""The timeline's page statement on PostgreSQL runs prepared with its generic plan, set for it
alone in the same round trip (``server.db.prepared_statement(..., generic=True)``), and stays
prepared across requests that end with a ROLLBACK (``server.db.prepared_plans``); unprepared
statements keep plans made with their values. On both
databases the page leaves out what no timeline shows, and such a column still reads right
when asked for."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text

from server.crm.activities import ActivityParty, Email
from server.crm.models import Account
from server.crm.registry import RECORD_TYPES
from server.crm.services import records
from server.crm.services.timeline import timeline
from server.db import db, statements_commit_alone
from server.security import authz
from server.security.models import User

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def world(make_user):
    me = make_user("me@contoso.test", roles=["Sales Manager"])
    p = authz.principal(me)
    account = records.create(p, RECORD_TYPES["account"], {"name": "Fabrikam"})
    for n in range(3):
        db.session.add(Email(subject=f"Mail {n}", occurred_on=T0 + timedelta(hours=n),
                             owner_user_id=me.id, owning_business_unit_id=me.business_unit_id,
                             regarding_account_id=account.id, html_body=f"<p>body {n}</p>",
                             text_body=f"body {n}", message_id=f"<m{n}@fabrikam.test>",
                             parties=[ActivityParty(role="from", address="pat@fabrikam.test"),
                                      *(ActivityParty(role="to", address=f"to{k}@contoso.test")
                                        for k in range(n))]))
    db.session.commit()
    return me.id, account.id


def _page(user_id: int, account_id: int):
    p = authz.principal(db.session.get(User, user_id))
    return timeline(p, "account", account_id, limit=2, related=False)


def test_the_page_leaves_bodies_out_and_still_reads_them(world):
    user_id, account_id = world
    page = _page(user_id, account_id)
    assert [a.subject for a in page.items] == ["Mail 2", "Mail 1"]
    assert page.next_cursor is not None
    assert "html_body" not in page.items[0].__dict__  # not loaded with the page
    assert page.items[0].html_body == "<p>body 2</p>"  # loaded when read
    assert page.items[1].text_body == "body 1"
    assert page.items[0].owner_user.id == user_id


def test_a_page_is_one_statement_with_its_parties(world):
    user_id, account_id = world
    p = authz.principal(db.session.get(User, user_id))
    _ = p.unit_subtree, p.depths
    seen = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        page = timeline(p, "account", account_id, limit=5, related=False)
        shown = [(a.subject, a.state, a.regarding_ref, [x.role for x in a.parties])
                 for a in page.items]
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert [s for s in seen if not s.startswith("SET LOCAL")] == seen  # libpq's SETs unseen
    assert len(seen) == 1, seen
    assert shown == [(f"Mail {n}", "open", ("account", account_id), ["from", *["to"] * n])
                     for n in (2, 1, 0)]


def test_the_page_statement_stays_prepared_across_rolled_back_requests(world, db_backend):
    if db_backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    user_id, account_id = world
    for _ in range(3):  # three read-only "requests", each ending with a ROLLBACK
        assert [a.subject for a in _page(user_id, account_id).items] == ["Mail 2", "Mail 1"]
        db.session.remove()
    _page(user_id, account_id)
    plans = db.session.execute(text(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE 'SELECT activity.id, activity.activity_type%'")).all()
    # Prepared once on this connection and never planned with the values: a ROLLBACK that
    # deallocated it would have left one generic plan (prepared again by the last page).
    assert plans == [(4, 0)]
    # The transaction's other statements keep plans made with their values.
    assert db.session.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
    db.session.remove()


def test_the_generic_plan_setting_travels_with_the_page_in_one_round_trip(world, db_backend,
                                                                         tmp_path):
    """``SET LOCAL plan_cache_mode``, the page statement and the reset go in one pipeline:
    the client waits for the server once (one Sync), not three times."""
    if db_backend != "postgresql":
        pytest.skip("plan_cache_mode is PostgreSQL's")
    user_id, account_id = world
    p = authz.principal(db.session.get(User, user_id))
    _ = p.unit_subtree, p.depths
    pgconn = db.session.connection().connection.dbapi_connection.pgconn
    trace = tmp_path / "libpq.trace"
    with open(trace, "w") as out:
        pgconn.trace(out.fileno())
        try:
            page = timeline(p, "account", account_id, limit=5, related=False)
        finally:
            pgconn.untrace()
    sent = [(line.split("\t") + [""])[3:5] for line in trace.read_text().splitlines()
            if line.split("\t")[1:2] == ["F"]]
    assert [kind for kind, _ in sent].count("Sync") == 1, sent
    queries = [text for kind, text in sent if kind == "Parse"]
    assert any("force_generic_plan" in q for q in queries)
    assert any("TO DEFAULT" in q for q in queries)
    assert [a.subject for a in page.items] == ["Mail 2", "Mail 1", "Mail 0"]
    assert db.session.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
    db.session.remove()


def test_what_the_session_has_pending_is_on_the_page(world):
    user_id, account_id = world
    me = db.session.get(User, user_id)
    db.session.add(Email(subject="Pending", occurred_on=T0 + timedelta(days=1), owner_user_id=me.id,
                         owning_business_unit_id=me.business_unit_id,
                         regarding_account_id=account_id, message_id="<pending@fabrikam.test>"))
    assert [a.subject for a in _page(user_id, account_id).items] == ["Pending", "Mail 2"]


def test_records_with_small_and_large_ids_share_one_prepared_page(world, db_backend):
    """psycopg sends an int as int2, int4 or int8 by its value and keys prepared statements
    by their parameters' types: the prepared statements' integers all go as int8
    (``server.db``), so a record with an id above 32,767 (or 2**31) runs the page statement
    its small-id neighbour prepared."""
    if db_backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    user_id, account_id = world
    me = db.session.get(User, user_id)
    big = Account(id=40_000, name="Big id", owner_user_id=me.id,
                  owning_business_unit_id=me.business_unit_id)
    db.session.add(big)
    db.session.flush()
    db.session.add(Email(subject="Big", occurred_on=T0, owner_user_id=me.id,
                         owning_business_unit_id=me.business_unit_id,
                         regarding_account_id=big.id, message_id="<big@fabrikam.test>"))
    db.session.commit()
    for record_id in (account_id, big.id, account_id, big.id):
        assert _page(user_id, record_id).items
    types = db.session.execute(text(
        "SELECT parameter_types::text FROM pg_prepared_statements "
        "WHERE statement LIKE 'SELECT activity.id, activity.activity_type%'")).scalars().all()
    assert len(types) == 1 and "smallint" not in types[0] and "integer" not in types[0], types
    db.session.remove()


def test_in_autocommit_the_setting_ends_with_the_pipeline(world, db_backend, tmp_path):
    """A page that reads each statement alone (``statements_commit_alone``) sends no reset:
    its pipeline is its transaction. The page still runs its generic plan, and the next
    statement on the connection is planned with its values."""
    if db_backend != "postgresql":
        pytest.skip("plan_cache_mode is PostgreSQL's")
    user_id, account_id = world
    p = authz.principal(db.session.get(User, user_id))
    _ = p.unit_subtree, p.depths
    db.session.commit()
    statements_commit_alone()
    pgconn = db.session.connection().connection.dbapi_connection.pgconn
    trace = tmp_path / "libpq.trace"
    with open(trace, "w") as out:
        pgconn.trace(out.fileno())
        try:
            pages = [timeline(p, "account", account_id, limit=5, related=False) for _ in range(2)]
        finally:
            pgconn.untrace()
    sent = [(line.split("\t") + [""])[3:5] for line in trace.read_text().splitlines()
            if line.split("\t")[1:2] == ["F"]]
    queries = [text for kind, text in sent if kind == "Parse"]
    assert any("force_generic_plan" in q for q in queries)
    assert not any("TO DEFAULT" in q for q in queries), queries
    assert not any(word in text for _, text in sent for word in ("BEGIN", "ROLLBACK", "COMMIT"))
    assert [[a.subject for a in page.items] for page in pages] == \
        [["Mail 2", "Mail 1", "Mail 0"]] * 2
    assert db.session.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
    assert db.session.execute(text(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE 'SELECT activity.id, activity.activity_type%'")).one() == (2, 0)
    db.session.remove()
