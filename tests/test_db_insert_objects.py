"""``server.bulk.insert_objects`` writes new emails as the session's flush does: on PostgreSQL
with ids from the sequence and one COPY per table (issue 17 goal 2), elsewhere by a flush.
Generated emails (any subject, body, direction, regarding or none, dates in any zone) read
back column for column as flushed ones do, on both databases; the objects are persistent
and loaded (reading them sends nothing); a unique key taken fails inside its savepoint with
SQLAlchemy's ``IntegrityError``, losing nothing else."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from server.crm.activities import Activity, Email
from server.bulk import insert_objects
from server.db import db

pytestmark = pytest.mark.both_databases

ORDER = count()
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=60)
aware = st.builds(lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
                  st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1)),
                  st.integers(-14 * 60, 14 * 60))
email_values = st.fixed_dictionaries({
    "subject": text, "html_body": st.none() | text, "text_body": st.none() | text,
    "direction": st.sampled_from(["incoming", "outgoing"]),
    "occurred_on": aware, "sent_on": st.none() | aware, "tracking_token": st.none() | text,
    "regarding": st.booleans()}, optional={"state": st.sampled_from(["open", "completed"])})
LEFT_OUT = {"id", "id_1", "message_id", "dedupe_key", "created_on", "modified_on"}


@pytest.fixture
def owner(app, make_user):
    return make_user("owner@org.example")


def _email(owner, values: dict, account_id: int | None = None) -> Email:
    n = next(ORDER)
    values = dict(values)
    regarding = values.pop("regarding", False)
    if regarding and account_id is not None:
        values.update(Email.regarding_values("account", account_id))
    return Email(message_id=f"m{n}@x.example", dedupe_key=f"m{n}@x.example",
                 owner_user_id=owner.id, owning_business_unit_id=owner.business_unit_id,
                 created_by_id=owner.id, **values)


def _stored(email_id: int) -> dict:
    row = db.session.execute(select(Activity.__table__, Email.__table__).join_from(
        Activity.__table__, Email.__table__, Activity.__table__.c.id == Email.__table__.c.id)
        .where(Activity.__table__.c.id == email_id)).mappings().one()
    return {key: value for key, value in row.items() if key not in LEFT_OUT}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(email_values, min_size=1, max_size=6))
def test_emails_written_read_back_as_flushed_ones(owner, batch):
    from server.crm.models import Account
    account = Account(name="Fabrikam", owner_user_id=owner.id,
                      owning_business_unit_id=owner.business_unit_id)
    db.session.add(account)
    db.session.flush()
    try:
        written = [_email(owner, values, account.id) for values in batch]
        flushed = [_email(owner, values, account.id) for values in batch]
        insert_objects(written)
        db.session.add_all(flushed)
        db.session.flush()
        ids = [email.id for email in written]
        assert all(ids) and ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(email in db.session and email not in db.session.new for email in written)
        db.session.expire_all()
        for mine, theirs in zip(written, flushed):
            assert _stored(mine.id) == _stored(theirs.id)
            assert db.session.get(Activity, mine.id).activity_type == "email"
    finally:
        db.session.rollback()


def test_the_objects_are_loaded_and_reading_them_sends_nothing(owner):
    """On PostgreSQL three statements write them; then every column reads without a query."""
    emails = [_email(owner, {"subject": f"Order {n}", "occurred_on": datetime.now(timezone.utc)})
              for n in range(3)]  # (one alone is flushed)
    sent: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        insert_objects(emails)
        if db.engine.dialect.name == "postgresql":  # the ids, then one COPY a table
            assert [s.split()[0] for s in sent] == ["SELECT", "COPY", "COPY"], sent
            assert "nextval" in sent[0] and sent[1].startswith("COPY activity ") \
                and sent[2].startswith("COPY email ")
        sent.clear()
        columns = [attr.key for attr in Email.__mapper__.column_attrs]
        seen = [{key: getattr(email, key) for key in columns} for email in emails]
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert sent == []
    assert [s["subject"] for s in seen] == ["Order 0", "Order 1", "Order 2"]
    assert all(s["state"] == "open" and s["status"] == "received" and s["delivery_attempts"] == 0
               and s["created_on"] is not None and s["regarding_account_id"] is None
               for s in seen)
    db.session.commit()
    assert db.session.scalars(select(Email.subject).order_by(Email.id)).all() == \
        ["Order 0", "Order 1", "Order 2"]


def test_a_taken_key_fails_in_its_savepoint_and_loses_nothing_else(owner):
    first = _email(owner, {"occurred_on": datetime.now(timezone.utc)})
    insert_objects([first])  # flushed: one alone
    again = _email(owner, {"occurred_on": datetime.now(timezone.utc)})
    again.dedupe_key = first.dedupe_key
    other = _email(owner, {"occurred_on": datetime.now(timezone.utc)})
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            insert_objects([other, again])
    assert again not in db.session and other not in db.session
    db.session.commit()
    assert db.session.scalars(select(Email.id)).all() == [first.id]


def test_a_savepoint_rolled_back_forgets_them(owner):
    """Objects written in a savepoint that is rolled back (a wave that failed later) leave
    the session as new ones would: nothing refers to rows that are not there."""
    emails = [_email(owner, {"occurred_on": datetime.now(timezone.utc)}) for _ in range(2)]
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            insert_objects(emails)
            raise RuntimeError("the wave failed after")
    assert all(email not in db.session for email in emails)
    db.session.commit()
    assert db.session.scalars(select(Email.id)).all() == []
