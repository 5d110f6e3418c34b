"""Storage guarantees the database itself keeps (constraints, cascades, SET NULL), the
timeline's paging and filtering, and timezone-aware UTC datetimes — on SQLite and
PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from server.crm.services import records
from server.crm.activities import (REGARDING_COLUMNS, Activity, ActivityParty, Attachment,
                                   Email, Task)
from server.crm.models import Account, Contact, Lead
from server.crm.services.timeline import PLANS, timeline
from server.db import db
from server.security import authz
from server.security.bootstrap import root_unit
from server.security.models import BusinessUnit, Team

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def owned(record, owner):
    record.owner_user_id = owner.id
    record.owning_business_unit_id = owner.business_unit_id
    db.session.add(record)
    db.session.flush()
    return record


def task(owner, when=T0, subject="Call back", **kw):
    return owned(Task(subject=subject, occurred_on=when, **kw), owner)


def violates(fn):
    """``fn`` is refused by the database (a CHECK or foreign key), and nothing stays."""
    with pytest.raises(IntegrityError):
        fn()
        db.session.flush()
    db.session.rollback()


@pytest.fixture
def me(make_user):
    return make_user("me@contoso.test", roles=["Sales Manager"])


@pytest.fixture
def crm(me):
    account = owned(Account(name="Contoso"), me)
    contact = owned(Contact(last_name="Doe", full_name="Pat Doe", email1="pat@contoso.test"), me)
    lead = owned(Lead(last_name="Lee", full_name="Sam Lee"), me)
    db.session.commit()
    return account, contact, lead


# -- regarding ----------------------------------------------------------------------------------

def test_regarding_points_to_at_most_one_record(me, crm):
    account, contact, _ = crm
    one = task(me, regarding_account_id=account.id)
    db.session.commit()
    assert one.regarding_ref == ("account", account.id)
    violates(lambda: task(me, regarding_account_id=account.id, regarding_contact_id=contact.id))
    # Raw SQL is refused too: the database keeps the rule, not the model.
    violates(lambda: db.session.execute(text(
        "UPDATE activity SET regarding_contact_id = :c WHERE id = :a"), {"c": contact.id, "a": one.id}))


def test_set_regarding_replaces_the_previous_one(me, crm):
    account, contact, _ = crm
    t = task(me)
    t.set_regarding("account", account.id)
    t.set_regarding("contact", contact.id)
    db.session.commit()
    assert t.regarding_ref == ("contact", contact.id)
    assert t.regarding_account_id is None
    with pytest.raises(ValueError):
        t.set_regarding("queue", 1)


def test_regarding_must_exist(me, crm):
    violates(lambda: task(me, regarding_lead_id=999_999))


@pytest.mark.parametrize("kind", ["account", "contact", "lead"])
def test_deleting_the_regarding_record_clears_regarding(me, crm, kind):
    record = dict(zip(("account", "contact", "lead"), crm))[kind]
    t = task(me)
    t.set_regarding(kind, record.id)
    db.session.commit()
    records.delete(authz.principal(me), record)
    db.session.commit()
    db.session.expire_all()
    t = db.session.get(Activity, t.id)
    assert t is not None and t.regarding_ref is None
    assert getattr(t, REGARDING_COLUMNS[kind]) is None


def test_regarding_is_cleared_by_the_database_not_only_by_the_orm(me, crm):
    account, _, _ = crm
    t = task(me, regarding_account_id=account.id)
    db.session.commit()
    db.session.execute(delete(Account).where(Account.id == account.id))
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Activity, t.id).regarding_account_id is None


# -- parties and attachments --------------------------------------------------------------------

def test_an_activity_party_is_at_most_one_record(me, crm):
    account, contact, _ = crm
    t = task(me)
    party = ActivityParty(activity_id=t.id, role="to", address="pat@contoso.test")
    party.set_party("contact", contact.id)
    db.session.add(party)
    db.session.commit()
    assert party.party_ref == ("contact", contact.id)
    violates(lambda: db.session.add(ActivityParty(activity_id=t.id, role="to",
                                                  contact_id=contact.id, account_id=account.id)))
    # An unresolved party keeps only its address.
    bare = ActivityParty(activity_id=t.id, role="cc", address="unknown@x.test")
    db.session.add(bare)
    db.session.commit()
    assert bare.party_ref is None


def test_deleting_an_activity_deletes_its_parties_and_attachments(me, crm):
    _, contact, _ = crm
    mail = owned(Email(subject="Hello", occurred_on=T0, direction="incoming"), me)
    mail.parties.append(ActivityParty(role="from", contact_id=contact.id, address="pat@contoso.test"))
    mail.attachments.append(Attachment(filename="a.txt", size=3, content=b"abc"))
    db.session.commit()
    records.delete(authz.principal(me), mail)
    db.session.commit()
    for model in (ActivityParty, Attachment, Activity):
        assert db.session.scalar(select(db.func.count()).select_from(model)) == 0, model
    assert db.session.scalar(text("SELECT count(*) FROM email")) == 0


def test_the_database_cascades_an_activity_delete(me, crm):
    _, contact, _ = crm
    mail = owned(Email(subject="Hello", occurred_on=T0), me)
    mail.parties.append(ActivityParty(role="from", contact_id=contact.id))
    mail.attachments.append(Attachment(filename="a.txt", size=3, content=b"abc"))
    db.session.commit()
    db.session.execute(text("DELETE FROM activity WHERE id = :i"), {"i": mail.id})
    db.session.commit()
    db.session.expunge_all()
    for table in ("activity_party", "attachment", "email", "activity"):
        assert db.session.scalar(text(f"SELECT count(*) FROM {table}")) == 0, table


def test_deleting_a_party_record_keeps_the_party_and_its_address(me, crm):
    _, contact, _ = crm
    t = task(me)
    party = ActivityParty(activity_id=t.id, role="to", contact_id=contact.id, address="pat@contoso.test")
    db.session.add(party)
    db.session.commit()
    records.delete(authz.principal(me), contact)
    db.session.commit()
    db.session.expire_all()
    party = db.session.get(ActivityParty, party.id)
    assert party.contact_id is None and party.address == "pat@contoso.test"


# -- owner --------------------------------------------------------------------------------------

def test_owner_is_exactly_one_of_user_or_team(me):
    team = Team(name="Sales", business_unit_id=me.business_unit_id)
    db.session.add(team)
    db.session.commit()
    bu = me.business_unit_id
    violates(lambda: db.session.add(Account(name="Nobody's", owning_business_unit_id=bu)))
    violates(lambda: db.session.add(Account(name="Both", owner_user_id=me.id,
                                            owner_team_id=team.id, owning_business_unit_id=bu)))
    violates(lambda: db.session.add(Task(subject="Nobody's", occurred_on=T0,
                                         owning_business_unit_id=bu)))
    violates(lambda: db.session.add(Task(subject="Both", occurred_on=T0, owner_user_id=me.id,
                                         owner_team_id=team.id, owning_business_unit_id=bu)))
    db.session.add(Account(name="Team's", owner_team_id=team.id, owning_business_unit_id=bu))
    db.session.commit()


def test_a_customer_is_an_account_or_a_contact_not_both(me, crm):
    from server.crm.models import Opportunity
    account, contact, _ = crm
    violates(lambda: owned(Opportunity(name="Deal", customer_account_id=account.id,
                                       customer_contact_id=contact.id), me))


# -- timeline -----------------------------------------------------------------------------------

def collect(p, kind, record_id, limit, plan=None):
    """Every page of a timeline, following the cursors (by ``plan``: the database's by
    default)."""
    pages, cursor = [], None
    while True:
        page = timeline(p, kind, record_id, cursor=cursor, limit=limit, plan=plan)
        pages.append([a.id for a in page.items])
        if page.next_cursor is None:
            return pages
        assert len(page.items) == limit
        cursor = page.next_cursor


# Each plan (the one chosen for this database and the other) gives the same pages.
@pytest.mark.parametrize("plan", PLANS)
def test_timeline_holds_regarding_and_party_activities_newest_first(me, crm, plan):
    account, contact, lead = crm
    p = authz.principal(me)
    expected = []
    for n in range(7):  # regarding the contact
        expected.append((T0 + timedelta(minutes=n), task(me, T0 + timedelta(minutes=n),
                                                       regarding_contact_id=contact.id).id))
    for n in range(5):  # the contact is a party, the activity is regarding the account
        mail = owned(Email(subject=f"Mail {n}", occurred_on=T0 + timedelta(minutes=n, seconds=30),
                           regarding_account_id=account.id), me)
        mail.parties.append(ActivityParty(role="to", contact_id=contact.id))
        expected.append((mail.occurred_on, mail.id))
    both = task(me, T0 + timedelta(hours=1), regarding_contact_id=contact.id)  # both ways, twice
    both.parties += [ActivityParty(role="to", contact_id=contact.id),
                     ActivityParty(role="cc", contact_id=contact.id)]
    expected.append((both.occurred_on, both.id))
    task(me, T0, regarding_lead_id=lead.id)  # about someone else
    db.session.commit()
    want = [i for _, i in sorted(expected, key=lambda x: (x[0], x[1]), reverse=True)]
    page = timeline(p, "contact", contact.id, limit=100, plan=plan)
    assert [a.id for a in page.items] == want
    assert page.next_cursor is None
    assert {type(a).__name__ for a in page.items} == {"Task", "Email"}
    for limit in (1, 2, 3, 5, 13, 14):
        pages = collect(p, "contact", contact.id, limit, plan)
        flat = [i for pg in pages for i in pg]
        assert flat == want, limit


@pytest.mark.parametrize("plan", PLANS)
def test_timeline_paging_with_equal_times(me, crm, plan):
    _, contact, _ = crm
    same = [task(me, T0 + timedelta(microseconds=123_457), regarding_contact_id=contact.id).id
            for _ in range(6)]
    odd = [task(me, datetime(2031, 7, 9, 23, 59, 59, 999_999, tzinfo=timezone.utc),
                regarding_contact_id=contact.id).id for _ in range(3)]
    db.session.commit()
    want = sorted(odd, reverse=True) + sorted(same, reverse=True)
    for limit in (1, 2, 4):
        assert [i for pg in collect(authz.principal(me), "contact", contact.id, limit, plan)
                for i in pg] == want, limit


@pytest.mark.parametrize("plan", PLANS)
def test_timeline_shows_only_what_the_reader_may_read(app, make_user, crm, me, plan):
    _, contact, _ = crm
    unit_a = BusinessUnit(name="A", parent_id=root_unit().id)
    unit_b = BusinessUnit(name="B", parent_id=root_unit().id)
    db.session.add_all([unit_a, unit_b])
    db.session.commit()
    reader = make_user(roles=["Salesperson"], unit=unit_a)  # activities: read business unit
    colleague = make_user(unit=unit_a)
    stranger = make_user(unit=unit_b)
    visible = [task(reader, T0, regarding_contact_id=contact.id).id,
               task(colleague, T0 + timedelta(minutes=1), regarding_contact_id=contact.id).id]
    hidden = task(stranger, T0 + timedelta(minutes=2), regarding_contact_id=contact.id)
    db.session.commit()
    p = authz.principal(reader)
    assert [a.id for a in timeline(p, "contact", contact.id, plan=plan).items] == visible[::-1]
    for limit in (1, 2):
        assert [i for pg in collect(p, "contact", contact.id, limit, plan)
                for i in pg] == visible[::-1]
    records.share(authz.principal(stranger), hidden, reader, {"read"})
    db.session.commit()
    assert hidden.id in [a.id for a in timeline(authz.principal(reader), "contact", contact.id,
                                                plan=plan).items]


def test_timeline_of_a_user_and_of_an_empty_record(me, crm):
    _, contact, _ = crm
    t = task(me)
    t.parties.append(ActivityParty(role="owner", user_id=me.id))
    db.session.commit()
    p = authz.principal(me)
    assert [a.id for a in timeline(p, "user", me.id).items] == [t.id]
    empty = timeline(p, "contact", contact.id)
    assert empty.items == [] and empty.next_cursor is None


def test_a_broken_cursor_starts_from_the_top(me, crm):
    _, contact, _ = crm
    t = task(me, regarding_contact_id=contact.id)
    db.session.commit()
    for cursor in ("garbage", "1e400_1", "_", "12_x"):
        assert [a.id for a in timeline(authz.principal(me), "contact", contact.id,
                                       cursor=cursor).items] == [t.id]


# -- datetimes ----------------------------------------------------------------------------------

def test_datetimes_round_trip_as_aware_utc(me):
    paris = timezone(timedelta(hours=2))
    when = datetime(2026, 6, 30, 23, 30, 15, 123456, tzinfo=paris)
    t = task(me, when)
    db.session.commit()
    db.session.expire_all()
    got = db.session.get(Activity, t.id).occurred_on
    assert got == when
    assert got.tzinfo is timezone.utc
    assert got.isoformat() == "2026-06-30T21:30:15.123456+00:00"
    assert db.session.get(Activity, t.id).created_on.tzinfo is timezone.utc


def test_datetimes_are_utc_whatever_the_database_session_zone(me):
    t = task(me, T0)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET TIME ZONE 'America/New_York'"))
    got = db.session.execute(select(Activity.occurred_on).where(Activity.id == t.id)).scalar()
    assert got == T0 and got.tzinfo is timezone.utc
    db.session.rollback()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET TIME ZONE 'UTC'"))
        db.session.commit()


def test_postgresql_sessions_are_in_utc(me):
    """Each connection's session is set to UTC whatever the server's zone, so psycopg reads
    times in ``timezone.utc`` itself (``db.utc_sessions``)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's session time zone")
    db.session.remove()
    db.engine.dispose()  # a new connection, made by the engine's own connect
    assert db.session.execute(text("SHOW TimeZone")).scalar() == "UTC"
    got = db.session.execute(select(func.now())).scalar()
    assert got.tzinfo is timezone.utc
    db.session.rollback()


def test_naive_datetimes_are_refused(me):
    with pytest.raises(StatementError, match="naive datetime"):
        task(me, datetime(2026, 1, 1, 12, 0))
    db.session.rollback()


def test_datetime_comparisons_happen_in_utc(me):
    early = task(me, datetime(2026, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5))))  # 04:00Z
    late = task(me, datetime(2026, 1, 2, 3, 0, tzinfo=timezone(timedelta(hours=1))))  # 02:00Z
    db.session.commit()
    order = db.session.scalars(select(Activity.id).order_by(Activity.occurred_on)).all()
    assert order == [late.id, early.id]
    cutoff = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    assert db.session.scalars(select(Activity.id).where(Activity.occurred_on > cutoff)).all() == [early.id]
