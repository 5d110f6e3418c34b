"""The timeline's party entries in timeline order: every party row carries its activity's
``occurred_on`` whichever way it was written (the ORM, an ``activity_id`` alone, tracking's
Core insert, a moved activity), and whatever mix of ways, equal times, moved activities and
page sizes, both plans page through exactly the activities concerning the record, each once,
newest first — on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from server.crm.activities import Activity, ActivityParty, Task
from server.crm.registry import RECORD_TYPES
from server.crm.services import records, tracking
from server.crm.services.timeline import PLANS, timeline
from server.crm.services.tracking import EmailContent
from server.db import db
from server.security import authz

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def mismatched_parties() -> list:
    """Party rows whose time is not their activity's."""
    return db.session.execute(
        select(ActivityParty.id, ActivityParty.occurred_on, Activity.occurred_on)
        .join(Activity, Activity.id == ActivityParty.activity_id)
        .where(ActivityParty.occurred_on != Activity.occurred_on)).all()


@pytest.fixture
def me(make_user):
    return make_user("me@contoso.test", roles=["Sales Manager"])


def new_task(me, when, **kw):
    task = Task(subject="Call", occurred_on=when, owner_user_id=me.id,
                owning_business_unit_id=me.business_unit_id, **kw)
    db.session.add(task)
    db.session.flush()
    return task


def test_every_write_path_gives_a_party_its_activity_time(me):
    p = authz.principal(me)
    contact = records.create(p, RECORD_TYPES["contact"], {"last_name": "Doe",
                                                          "email1": "pat@fabrikam.example"})
    added = new_task(me, T0)
    added.parties.append(ActivityParty(role="to", contact_id=contact.id))  # by the relationship
    alone = new_task(me, T0 + timedelta(hours=1))
    db.session.add(ActivityParty(activity_id=alone.id, role="to", contact_id=contact.id))
    db.session.flush()
    # Tracking writes its parties with one Core INSERT.
    email, created = tracking.track_email(p, EmailContent(
        message_id="<time@fabrikam.example>", subject="Hello", from_=("Pat", "pat@fabrikam.example"),
        to=[(me.full_name, me.email)], text_body="Hi",
        received_on=T0 + timedelta(days=3)))
    db.session.commit()
    assert created and len(email.parties) == 2
    assert mismatched_parties() == []
    # An activity that moves takes its parties along; the timeline follows.
    added.occurred_on = T0 + timedelta(days=9)
    db.session.commit()
    assert mismatched_parties() == []
    assert [a.id for a in timeline(p, "contact", contact.id).items][0] == added.id


WAYS = ("regarding", "party", "party twice", "regarding and party", "elsewhere")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=st.lists(st.tuples(st.sampled_from(WAYS), st.integers(0, 4),
                                  st.none() | st.integers(0, 4)), max_size=12),
       limit=st.integers(1, 5))
def test_both_plans_page_through_each_activity_once_newest_first(me, entries, limit):
    p = authz.principal(me)
    contact = records.create(p, RECORD_TYPES["contact"], {"last_name": "Doe"})
    other = records.create(p, RECORD_TYPES["contact"], {"last_name": "Roe"})
    mine, tasks = set(), []
    for way, minute, moved_to in entries:
        task = new_task(me, T0 + timedelta(minutes=minute),
                        regarding_contact_id=contact.id if "regarding" in way else other.id)
        copies = {"party": 1, "party twice": 2, "regarding and party": 1}.get(way, 0)
        task.parties += [ActivityParty(role=role, contact_id=contact.id)
                         for role in ("to", "cc")[:copies]]
        task.parties.append(ActivityParty(role="from", contact_id=other.id))
        tasks.append((task, moved_to))
        if way != "elsewhere":
            mine.add(task)
    db.session.flush()
    for task, moved_to in tasks:  # some move after their parties were written
        if moved_to is not None:
            task.occurred_on = T0 + timedelta(minutes=moved_to, seconds=30)
    db.session.commit()
    want = [t.id for t in sorted(mine, key=lambda t: (t.occurred_on, t.id), reverse=True)]
    for plan in PLANS:
        got, cursor = [], None
        while True:
            page = timeline(p, "contact", contact.id, cursor=cursor, limit=limit, plan=plan)
            got += [a.id for a in page.items]
            if page.next_cursor is None:
                break
            assert len(page.items) == limit
            cursor = page.next_cursor
        assert got == want, plan
