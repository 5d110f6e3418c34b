"""Pages run a fixed number of queries however many rows they show (no N+1).

The test client shares the test's application context (and so its session); the session is
expired before each counted request so that nothing loaded earlier hides a per-row query."""
from __future__ import annotations

from datetime import timedelta

import pytest

from server.db import db, utcnow
from server.security.models import Team
from tests.web.conftest import count_queries

pytestmark = pytest.mark.both_databases


def _list_queries(c, path):
    c.get(path)  # warm up (first request loads the user, compiles statements)
    db.session.expire_all()  # nothing loaded before may hide a per-row query
    with count_queries() as n:
        r = c.get(path)
    assert r.status_code == 200
    return n[0]


def test_list_page_query_count_does_not_grow_with_rows(make_user, make_record, signin):
    user = make_user()
    team = Team(name="Team T", business_unit_id=user.business_unit_id, members=[user])
    db.session.add(team)
    db.session.commit()
    c = signin(user)
    parent = make_record(user, "account", name="Parent")
    make_record(user, "contact", last_name="First", parent_account_id=str(parent.id))
    make_record(user, "contact", last_name="Second", owner=team)
    few = _list_queries(c, "/r/contact/")
    for i in range(20):
        p = make_record(user, "account", name=f"Parent {i}")
        make_record(user, "contact", last_name=f"C{i}", parent_account_id=str(p.id),
                    owner=team if i % 2 else None)
    many = _list_queries(c, "/r/contact/")
    assert many == few, (few, many)
    assert many <= 15


def test_timeline_page_query_count_does_not_grow_with_activities(make_user, make_record,
                                                                make_email, signin):
    user = make_user()
    account = make_record(user, "account")
    contact = make_record(user, "contact")
    c = signin(user)
    make_email(user, regarding=("account", account.id),
               parties=[("from", "a@b.example", "A", ("contact", contact.id))])
    make_email(user, regarding=("contact", contact.id),  # one regarding another record type
               parties=[("to", "x@y.example", None, ("account", account.id))])
    path = f"/r/account/{account.id}"
    few = _list_queries(c, path)
    for i in range(20):
        regarding = ("account", account.id) if i % 2 else ("contact", contact.id)
        make_email(user, regarding=regarding, subject=f"E{i}", when=utcnow() - timedelta(minutes=i),
                   parties=[("from", "a@b.example", "A", ("contact", contact.id)),
                            ("to", "x@y.example", None, ("account", account.id))])
    many = _list_queries(c, path)
    assert many == few, (few, many)
    assert many <= 20


def test_a_parent_child_scope_costs_no_statement_for_the_unit_tree(make_user, make_record,
                                                                   signin):
    """A Sales Manager's scope (parent-child depth) walks the business-unit tree: it comes
    with the principal's grants (in their statement) and is kept with them while the
    security stamp is unchanged, so their page runs as many statements as a Salesperson's
    (one more before: the tree, read on every request)."""
    counts = {}
    for role in ("Salesperson", "Sales Manager"):
        user = make_user(roles=[role])
        account = make_record(user, "account")
        counts[role] = _list_queries(signin(user), f"/r/account/{account.id}")
    assert counts["Sales Manager"] == counts["Salesperson"], counts
