"""Email address resolution: which CRM records stand behind addresses, in Dynamics' order,
from the ``email_address`` index, in a bounded number of queries."""
from __future__ import annotations

import pytest
from sqlalchemy import event, insert, select, text

from server.crm.services import records
from server.crm.addresses import EmailAddress
from server.crm.models import Account, Contact, Lead, Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.crm.services.resolution import resolve
from server.db import db
from server.security import authz
from server.security.models import Team

pytestmark = pytest.mark.both_databases


def _owned(record, user):
    record.owner_user_id = user.id
    record.owning_business_unit_id = user.business_unit_id
    db.session.add(record)
    db.session.flush()
    return record


def contact(user, email, name="Contact", **kw):
    return _owned(Contact(last_name=name, full_name=name, email1=email, **kw), user)


def account(user, email, name="Account", **kw):
    return _owned(Account(name=name, email1=email, **kw), user)


def lead(user, email, name="Lead", **kw):
    return _owned(Lead(last_name=name, full_name=name, email1=email, **kw), user)


def queue(user, email, name="Support", **kw):
    return _owned(Queue(name=name, email=email, **kw), user)


def kinds(matches):
    return [(m.record_type, m.record_id) for m in matches]


def org() -> Organization:
    return db.session.get(Organization, 1)


# -- order and choice ---------------------------------------------------------------------------

def test_order_is_user_contact_account_lead_queue(app, make_user):
    me = make_user("me@contoso.test")
    shared = "shared@contoso.test"
    q = queue(me, shared)
    ld = lead(me, shared)
    ac = account(me, shared)
    co = contact(me, shared)
    user = make_user(shared)
    db.session.commit()
    got = resolve([shared], user_id=me.id)[shared]
    assert kinds(got) == [("user", user.id), ("contact", co.id), ("account", ac.id),
                          ("lead", ld.id), ("queue", q.id)]
    assert got[0].name == user.full_name and got[1].name == "Contact"


def test_the_asking_users_own_records_come_first_within_a_type(app, make_user):
    me, colleague = make_user(), make_user()
    theirs = contact(colleague, "pat@fabrikam.test", "Pat (theirs)")
    mine = contact(me, "pat@fabrikam.test", "Pat (mine)")
    older_theirs = contact(colleague, "pat@fabrikam.test", "Pat (theirs, too)")
    db.session.commit()
    assert kinds(resolve(["pat@fabrikam.test"], user_id=me.id)["pat@fabrikam.test"]) == \
        [("contact", mine.id), ("contact", theirs.id), ("contact", older_theirs.id)]
    assert kinds(resolve(["pat@fabrikam.test"], user_id=colleague.id)["pat@fabrikam.test"]) == \
        [("contact", theirs.id), ("contact", older_theirs.id), ("contact", mine.id)]
    # Asked without a user, the order is stable by record, team-owned ones included.
    team = Team(name="Support", business_unit_id=me.business_unit_id)
    db.session.add(team)
    db.session.flush()
    by_team = Contact(last_name="Pat (team)", full_name="Pat (team)", email1="pat@fabrikam.test",
                      owner_team_id=team.id, owning_business_unit_id=team.business_unit_id)
    db.session.add(by_team)
    db.session.commit()
    assert kinds(resolve(["pat@fabrikam.test"])["pat@fabrikam.test"]) == \
        [("contact", theirs.id), ("contact", mine.id), ("contact", older_theirs.id),
         ("contact", by_team.id)]


def test_inactive_records_are_left_out_unless_the_organization_resolves_them(app, make_user):
    me = make_user()
    gone = contact(me, "old@fabrikam.test", is_active=False)
    gone_user = make_user("left@contoso.test", is_active=False)
    db.session.commit()
    assert resolve(["old@fabrikam.test", "left@contoso.test"]) == \
        {"old@fabrikam.test": [], "left@contoso.test": []}
    org().resolve_inactive_records = True
    db.session.commit()
    got = resolve(["old@fabrikam.test", "left@contoso.test"])
    assert kinds(got["old@fabrikam.test"]) == [("contact", gone.id)]
    assert not got["old@fabrikam.test"][0].is_active
    assert kinds(got["left@contoso.test"]) == [("user", gone_user.id)]


def test_ambiguous_addresses_resolve_to_all_or_none(app, make_user):
    me = make_user()
    a = contact(me, "info@fabrikam.test", "First")
    b = account(me, "info@fabrikam.test", "Fabrikam")
    c = contact(me, "solo@fabrikam.test", "Solo")
    db.session.commit()
    assert kinds(resolve(["info@fabrikam.test"])["info@fabrikam.test"]) == \
        [("contact", a.id), ("account", b.id)]
    org().unresolve_ambiguous_addresses = True
    db.session.commit()
    got = resolve(["info@fabrikam.test", "solo@fabrikam.test"])
    assert got["info@fabrikam.test"] == []
    assert kinds(got["solo@fabrikam.test"]) == [("contact", c.id)]


def test_addresses_resolve_whatever_form_they_are_given_in(app, make_user):
    me = make_user()
    c = contact(me, "Pat.Doe@Bücher.example")
    db.session.commit()
    given = ["pat.doe@xn--bcher-kva.example", "<PAT.DOE@bücher.example>",
             "mailto:pat.doe@BÜCHER.example", "Pat Doe <pat.doe@bücher.example>",
             " pat.doe@xn--bcher-kva.example. "]
    got = resolve(given)
    assert set(got) == set(given)
    for address in given:
        assert kinds(got[address]) == [("contact", c.id)], address
    assert resolve(["not an address", ""]) == {"not an address": [], "": []}


def test_every_email_field_is_indexed(app, make_user):
    me = make_user()
    c = _owned(Contact(last_name="Three", full_name="Three", email1="one@x.test",
                       email2="two@x.test", email3="ONE@x.test"), me)
    db.session.commit()
    rows = db.session.execute(select(EmailAddress.address).where(
        EmailAddress.record_type == "contact", EmailAddress.record_id == c.id)).scalars().all()
    assert sorted(rows) == ["one@x.test", "two@x.test"]
    assert kinds(resolve(["two@x.test"])["two@x.test"]) == [("contact", c.id)]


# -- the index follows the records --------------------------------------------------------------

def index_of(kind, record_id):
    return sorted(db.session.scalars(select(EmailAddress.address).where(
        EmailAddress.record_type == kind, EmailAddress.record_id == record_id)))


def test_changing_and_removing_an_address_updates_the_index(app, make_user):
    me = make_user(roles=["Sales Manager"])
    p = authz.principal(me)
    c = records.create(p, RECORD_TYPES["contact"], {"last_name": "Moving",
                                                    "email1": "before@x.test"})
    db.session.commit()
    assert index_of("contact", c.id) == ["before@x.test"]
    records.update(p, c, {"email1": "After@X.test", "email2": "second@x.test"})
    db.session.commit()
    assert index_of("contact", c.id) == ["after@x.test", "second@x.test"]
    assert resolve(["before@x.test"])["before@x.test"] == []
    records.update(p, c, {"email1": None})
    db.session.commit()
    assert index_of("contact", c.id) == ["second@x.test"]
    assert resolve(["after@x.test"])["after@x.test"] == []
    # Changing another field leaves the index alone.
    before = db.session.scalars(select(EmailAddress.id).where(EmailAddress.record_id == c.id)).all()
    records.update(p, c, {"job_title": "Buyer"})
    db.session.commit()
    assert db.session.scalars(select(EmailAddress.id).where(EmailAddress.record_id == c.id)).all() == before


def test_user_and_queue_addresses_are_indexed(app, make_user):
    me = make_user("Someone@Contoso.test")
    q = queue(me, "Support@Contoso.test")
    db.session.commit()
    assert index_of("user", me.id) == ["someone@contoso.test"]
    assert index_of("queue", q.id) == ["support@contoso.test"]
    me.email = "someone.else@contoso.test"
    q.email = None
    db.session.commit()
    assert index_of("user", me.id) == ["someone.else@contoso.test"]
    assert index_of("queue", q.id) == []


def test_deleting_a_record_removes_its_index_rows(app, make_user):
    me = make_user(roles=["Sales Manager"])
    c = contact(me, "bye@x.test")
    a = account(me, "bye@x.test")
    db.session.commit()
    records.delete(authz.principal(me), c)
    db.session.delete(a)
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(EmailAddress).where(
        EmailAddress.address == "bye@x.test")) == 0
    assert resolve(["bye@x.test"])["bye@x.test"] == []


def test_a_rolled_back_change_leaves_the_index_as_it_was(app, make_user):
    me = make_user()
    c = contact(me, "stay@x.test")
    db.session.commit()
    c.email1 = "gone@x.test"
    db.session.flush()
    db.session.rollback()
    assert index_of("contact", c.id) == ["stay@x.test"]


# -- efficiency ---------------------------------------------------------------------------------

class StatementCounter:
    def __init__(self, engine):
        self.engine, self.statements = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)


def test_resolution_is_one_query_plus_one_for_the_matched_records(app, make_user):
    me = make_user()
    for n in range(5):
        contact(me, f"c{n}@x.test", f"C{n}")
        lead(me, f"l{n}@x.test", f"L{n}")
        account(me, f"a{n}@x.test", f"A{n}")
    db.session.commit()
    settings, me_id = org(), me.id
    addresses = [f"c{n}@x.test" for n in range(5)] + [f"l{n}@x.test" for n in range(5)] + \
        ["nobody@x.test", "bad address"]
    with StatementCounter(db.engine) as counter:
        got = resolve(addresses, user_id=me_id, org=settings)
    assert sum(1 for a in addresses if got[a]) == 10
    assert len(counter.statements) == 2, counter.statements  # index; contacts and leads
    with StatementCounter(db.engine) as counter:
        assert resolve(["nobody@x.test"], org=settings) == {"nobody@x.test": []}
    assert len(counter.statements) == 1
    with StatementCounter(db.engine) as counter:
        resolve(["bad address", ""], org=settings)
    assert counter.statements == []


def test_the_lookup_uses_the_address_index(app, make_user):
    me = make_user()
    db.session.execute(insert(EmailAddress), [
        {"address": f"bulk{n}@x.test", "record_type": "contact", "record_id": 10_000 + n}
        for n in range(3000)])
    db.session.commit()
    query = select(EmailAddress.address, EmailAddress.record_type, EmailAddress.record_id) \
        .where(EmailAddress.address.in_(["bulk7@x.test", "bulk8@x.test"]))
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    if db.engine.dialect.name == "sqlite":
        plan = " ".join(str(r[-1]) for r in db.session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        assert "USING INDEX ix_email_address_address" in plan, plan
        assert "SCAN" not in plan, plan
    else:
        db.session.execute(text("ANALYZE email_address"))
        plan = " ".join(r[0] for r in db.session.execute(text(f"EXPLAIN {compiled}")))
        assert "ix_email_address_address" in plan, plan
        assert "Seq Scan" not in plan, plan
    del me
