"""The timeline's roll-up ("include related", as in Dynamics): an account's timeline shows,
by default, what concerns its contacts, opportunities and cases as well as itself; "this
record only" shows the account's own; a contact rolls up its opportunities and cases when
asked. Paging through a rolled-up timeline returns every activity once, newest first, only
what the reader may read; and the record page and the REST API offer the same choice."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.crm.services.timeline import timeline
from server.db import utcnow
from server.security import authz

pytestmark = pytest.mark.both_databases

WAYS = ("account", "account_party", "contact", "contact_party", "opportunity", "case",
        "unrelated")


@pytest.fixture
def world(make_user, make_unit, make_record):
    """An account with a contact, an opportunity and a case, an unrelated account, and a
    reader of the account's unit; an outsider's unit holds what the reader may not read."""
    unit, elsewhere = make_unit("Sales"), make_unit("Elsewhere")
    roles = ("Salesperson", "Customer Service Representative")
    me, outsider = make_user(unit=unit, roles=roles), make_user(unit=elsewhere, roles=roles)
    account = make_record(me, "account", name="Fabrikam Inc")
    other = make_record(me, "account", name="Northwind")
    contact = make_record(me, "contact", first_name="Elena", last_name="Moreau",
                          parent_account_id=account.id, email1="elena@fabrikam.example")
    opportunity = make_record(me, "opportunity", name="Contoso deal",
                              customer_account_id=account.id)
    case = make_record(me, "case", title="Printer jam", customer_account_id=account.id)
    return {"me": me, "outsider": outsider, "account": account, "other": other,
            "contact": contact, "opportunity": opportunity, "case": case}


def _email(make_email, world, way: str, n: int, owner=None):
    """An email that concerns the world's account in one ``way`` (or none)."""
    regarding, parties = None, []
    if way in ("account", "contact", "opportunity", "case"):
        regarding = (way, world[way].id)
    elif way == "account_party":
        parties = [("to", "info@fabrikam.example", None, ("account", world["account"].id))]
    elif way == "contact_party":
        parties = [("from", "elena@fabrikam.example", "Elena", ("contact", world["contact"].id))]
    else:
        regarding = ("account", world["other"].id)
    return make_email(owner or world["me"], regarding=regarding, parties=parties,
                      subject=f"{way} {n}", when=utcnow() - timedelta(minutes=n))


def _all_pages(p, record_type, record_id, *, limit, related=None):
    seen, cursor = [], None
    for _ in range(100):
        page = timeline(p, record_type, record_id, cursor=cursor, limit=limit, related=related)
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


def test_an_account_rolls_up_its_contacts_opportunities_and_cases_by_default(world, make_email):
    made = {way: _email(make_email, world, way, i) for i, way in enumerate(WAYS)}
    p = authz.principal(world["me"])
    rolled = timeline(p, "account", world["account"].id, limit=25)
    assert rolled.related is True
    assert [a.subject for a in rolled.items] == [f"{w} {i}" for i, w in enumerate(WAYS)
                                                 if w != "unrelated"]
    own = timeline(p, "account", world["account"].id, limit=25, related=False)
    assert own.related is False
    assert {a.id for a in own.items} == {made["account"].id, made["account_party"].id}
    # A contact's own timeline by default; with related records, its opportunities' too.
    opp = make_email(world["me"], regarding=("opportunity", world["opportunity"].id),
                     subject="deal", when=utcnow())
    world["opportunity"].customer_account_id = None
    world["opportunity"].customer_contact_id = world["contact"].id
    contact = world["contact"].id
    assert opp.id not in {a.id for a in timeline(p, "contact", contact, limit=25).items}
    assert opp.id in {a.id for a in timeline(p, "contact", contact, limit=25, related=True).items}
    # A type without related records ignores the ask.
    assert timeline(p, "case", world["case"].id, limit=25, related=True).related is False


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(ways=st.lists(st.sampled_from(WAYS), min_size=1, max_size=14),
       hidden=st.sets(st.integers(0, 13), max_size=4), limit=st.integers(1, 5))
def test_paging_a_rolled_up_timeline_gives_each_readable_activity_once_newest_first(
        world, make_email, ways, hidden, limit):
    p = authz.principal(world["me"])
    before = {a.id for a in _all_pages(p, "account", world["account"].id, limit=50)}
    made = []
    for i, way in enumerate(ways):
        owner = world["outsider"] if i in hidden else None
        made.append((way, i in hidden, _email(make_email, world, way, 1000 + i, owner)))
    wanted = [e.id for way, secret, e in made if way != "unrelated" and not secret]
    seen = [a.id for a in _all_pages(p, "account", world["account"].id, limit=limit)
            if a.id not in before]
    assert seen == wanted  # made oldest last: minutes ago grow with i
    got = _all_pages(p, "account", world["account"].id, limit=limit)
    assert len({a.id for a in got}) == len(got)
    stamps = [(a.occurred_on, a.id) for a in got]
    assert stamps == sorted(stamps, reverse=True)


def test_the_record_page_and_the_api_offer_the_same_choice(world, make_email, signin, api_client):
    _email(make_email, world, "case", 1)
    _email(make_email, world, "account", 2)
    c = signin(world["me"])
    url = f"/r/account/{world['account'].id}"
    page = c.get(url).get_data(as_text=True)
    assert "case 1" in page and "account 2" in page
    assert '<option value="1" selected>With related records</option>' in page
    own = c.get(url + "?related=0").get_data(as_text=True)
    assert "case 1" not in own and "account 2" in own
    assert '<option value="0" selected>This record only</option>' in own
    contact = c.get(f"/r/contact/{world['contact'].id}").get_data(as_text=True)
    assert '<option value="0" selected>This record only</option>' in contact
    case = c.get(f"/r/case/{world['case'].id}").get_data(as_text=True)
    assert 'name="related"' not in case  # nothing to roll up
    api = api_client(world["me"])
    base = f"/api/v1/accounts/{world['account'].id}/timeline"
    rolled = api.get(base).get_json()["items"]
    assert {i["subject"] for i in rolled} == {"case 1", "account 2"}
    own = api.get(base + "?related=false").get_json()["items"]
    assert [i["subject"] for i in own] == ["account 2"]
    assert api.get(base + "?related=maybe").status_code == 400


def test_many_related_records_share_one_branch_with_the_same_result(world, make_email,
                                                                    monkeypatch):
    from server.crm.services import timeline as timelines
    for i, way in enumerate(WAYS):
        _email(make_email, world, way, i)
    p = authz.principal(world["me"])
    each = [a.id for a in _all_pages(p, "account", world["account"].id, limit=2)]
    monkeypatch.setattr(timelines, "BRANCH_EACH_UP_TO", 0)
    shared = [a.id for a in _all_pages(p, "account", world["account"].id, limit=2)]
    assert shared == each and len(each) == len(WAYS) - 1
