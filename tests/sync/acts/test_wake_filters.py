"""The wake asks for the mailboxes of every user whose synchronization filter takes a changed
record, whatever the filter's owner says (``server.sync.acts.wake``): "me" (the owner),
"my teams" (the owning team's members), "anyone" (every user whose filter, their own or the
organization's, says so); each judged by the filter itself (its conditions, what the user
may read) and the kind's privilege; an inactive user never. And a record leaving such a
user's filter asks for their mailbox too, so that the push takes the item away (against
Radicale)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, select

from server.crm.activities import ActivityParty
from server.crm.models import Contact
from server.db import db
from server.security import authz
from server.security.models import RecordShare, Role, RolePrivilege, Team
from server.security.privileges import Depth
from server.sync.acts import filters, records
from server.sync.acts.run import sync_items
from server.sync.models import FILTER_OWNERS, Mailbox, SyncFilter
from tests.sync.acts.conftest import RadicaleSide
from tests.sync.acts.test_wake import _flagged, _mailbox

KINDS = ("appointment", "contact", "task")


def _filter(user, kind: str, owner: str, conditions=()) -> None:
    db.session.add(SyncFilter(user_id=user.id if user else None, kind=kind, name=owner,
                              owner=owner, conditions=[list(c) for c in conditions]))
    db.session.commit()


def _create(api, kind: str, owner=None, **fields) -> int:
    """A record of ``kind`` made through the REST API (owned by the caller, or ``owner``)."""
    body = {**fields, **({"owner": {"type": "team" if isinstance(owner, Team) else "user",
                                   "id": owner.id}} if owner is not None else {})}
    if kind == "contact":
        r = api.post("/api/v1/contacts", json={"last_name": "Dale", **body})
    else:
        times = {"scheduled_start": "2030-01-07T09:00:00Z",
                 "scheduled_end": "2030-01-07T10:00:00Z"} if kind == "appointment" else {}
        r = api.post("/api/v1/activities", json={"type": kind, "subject": "Pricing",
                                                 **times, **body})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


@pytest.fixture
def office(make_user, make_unit, api_client):
    """Ann (who makes the changes, a Sales Manager: she may give records to her team) and
    Bob share the team Sales; Carl is in their unit but not the team; Dora is in another
    unit. Those three are Salespeople (they read their unit's records). Each has a mailbox
    syncing items."""
    ann = make_user("ann@contoso.test", roles=["Sales Manager"])
    bob, carl = (make_user(f"{n}@contoso.test") for n in ("bob", "carl"))
    dora = make_user("dora@contoso.test", unit=make_unit("Far away"))
    team = Team(name="Sales", business_unit_id=ann.business_unit_id, members=[ann, bob])
    db.session.add(team)
    db.session.commit()
    for user in (ann, bob, carl, dora):
        _mailbox(user)
    _flagged()
    return {"ann": ann, "bob": bob, "carl": carl, "dora": dora, "team": team,
            "api": api_client(ann)}


# Whose mailbox a record of Ann's, then one of the team Sales, asks for besides the owners':
# Bob's filter (for every kind) saying ...
WOKEN = {"me": (set(), set()),
         "my_teams": (set(), {"bob@contoso.test"}),  # his teams' records, not his teammates'
         "any": ({"bob@contoso.test"}, {"bob@contoso.test"})}


@pytest.mark.parametrize("owner", sorted(WOKEN))
def test_each_owner_option_wakes_whom_it_takes_for_every_kind(office, owner):
    bob, dora = office["bob"], office["dora"]
    for kind in KINDS:
        _filter(bob, kind, owner)
        _filter(dora, kind, "any")  # she may read nothing of Ann's unit: never woken
    anns, teams = WOKEN[owner]
    for kind in KINDS:
        _create(office["api"], kind)
        assert _flagged() == {"ann@contoso.test"} | anns, kind
        _create(office["api"], kind, owner=office["team"])
        # Ann's own filter ("My ...") takes her records, not her team's.
        assert _flagged() == teams, kind


def test_the_organizations_anyone_wakes_those_without_a_filter_of_their_own(office):
    _filter(None, "task", "any")
    _filter(office["carl"], "task", "me")
    _create(office["api"], "task")
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}  # not Carl, nor Dora
    _create(office["api"], "contact")  # the organization's says nothing of contacts
    assert _flagged() == {"ann@contoso.test"}


@pytest.mark.both_databases
def test_anyones_field_conditions_are_kept(office):
    _filter(office["bob"], "contact", "any", [("job_title", "eq", "Buyer")])
    api = office["api"]
    clerk = _create(api, "contact", job_title="Clerk")
    assert _flagged() == {"ann@contoso.test"}
    _create(api, "contact", job_title="Buyer")
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}
    assert api.patch(f"/api/v1/contacts/{clerk}", json={"job_title": "Buyer"}).status_code == 200
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}


def test_no_wake_without_the_kinds_privilege_nor_for_an_inactive_user(office, make_user):
    """Eve's role has no "Sync contacts" (it has "Sync tasks"); Finn is disabled."""
    eve = make_user("eve@contoso.test", roles=["Customer Service Representative"])
    finn = make_user("finn@contoso.test")
    for user in (eve, finn):
        _mailbox(user)
        for kind in ("contact", "task"):
            _filter(user, kind, "any")
    finn.is_active = False
    db.session.commit()
    _create(office["api"], "contact")
    assert _flagged() == {"ann@contoso.test"}
    _create(office["api"], "task")
    assert _flagged() == {"ann@contoso.test", "eve@contoso.test"}


@pytest.mark.both_databases
def test_statements_per_commit_do_not_grow_with_those_whose_filter_says_anyone(
        office, make_user):
    """The wake reads in a few statements whoever may take the record: two users or twelve
    whose filter says "anyone", the commit of a change issues as many statements."""
    api = office["api"]

    def statements() -> int:
        seen = []
        listener = lambda *_: seen.append(1)  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert api.patch(f"/api/v1/contacts/{contact}",
                             json={"job_title": f"Buyer {len(woken)}"}).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        woken.append(_flagged())
        return len(seen)

    contact, woken = _create(api, "contact"), []
    _flagged()
    people = [make_user(f"any{n}@contoso.test") for n in range(12)]
    for user in people:
        _mailbox(user)
    statements()  # the first call keeps the principal for the security stamp: not counted
    woken.clear()
    for user in people[:2]:
        _filter(user, "contact", "any")
    few = statements()
    for user in people[2:]:
        _filter(user, "contact", "any")
    assert statements() == few
    assert woken == [{"ann@contoso.test"} | {u.email for u in people[:2]},
                     {"ann@contoso.test"} | {u.email for u in people}]


def test_a_record_leaving_a_teams_or_anyone_filter_is_taken_off_their_server(
        office, radicale):
    """Bob's contacts filter says "my teams", Carl's "anyone"; a contact of the team Sales
    reaches both; given to Dora (another unit, another team) it leaves both filters: their
    mailboxes are asked for (the push's links to it), and their next run removes it."""
    if not radicale.running:
        radicale.start()
    side = RadicaleSide(radicale)
    bob, carl = office["bob"], office["carl"]
    _filter(bob, "contact", "my_teams")
    _filter(carl, "contact", "any")
    db.session.execute(delete(Mailbox).where(Mailbox.user_id.in_([bob.id, carl.id])))
    db.session.commit()  # the fixture's, for theirs on Radicale
    boxes = {u.id: side.mailbox(u) for u in (bob, carl)}
    api = office["api"]
    contact = _create(api, "contact", owner=office["team"], first_name="Gus", last_name="Gale")
    assert {bob.email, carl.email} <= _flagged()

    def cards(user) -> list[str]:
        with side.client(user) as client:
            return [i.data for i in side.server(client, "contact").items().values()]
    for user in (bob, carl):
        sync_items(boxes[user.id].id)
        assert any("Gus Gale" in card for card in cards(user)), user.email
    r = api.post(f"/api/v1/contacts/{contact}/assign",
                 json={"owner": {"type": "user", "id": office["dora"].id}})
    assert r.status_code == 200, r.get_json()
    assert {bob.email, carl.email} <= _flagged()
    for user in (bob, carl):
        sync_items(boxes[user.id].id)
        assert not any("Gus Gale" in card for card in cards(user)), user.email


def test_a_change_committed_without_a_flush_of_its_own_wakes_too(app, office):
    """The commit's own flush is where the change is seen: a record added, or changed, and
    committed at once in a request asks for its owner's mailbox all the same."""
    ann = office["ann"]
    with app.test_request_context():
        contact = Contact(last_name="Hale", full_name="Hale", owner_user_id=ann.id,
                          owning_business_unit_id=ann.business_unit_id)
        db.session.add(contact)
        db.session.commit()
    assert _flagged() == {"ann@contoso.test"}
    with app.test_request_context():
        db.session.get(Contact, contact.id).job_title = "Buyer"
        db.session.commit()
    assert _flagged() == {"ann@contoso.test"}


# -- generated: whatever the filters say, the wake asks for exactly whom they take ------------

_CONDITIONS = {"contact": ("job_title", "eq", "Buyer"),
               "task": ("subject", "contains", "Buyer"),
               "appointment": ("subject", "contains", "Buyer")}
_RULES = st.none() | st.tuples(st.sampled_from(FILTER_OWNERS), st.booleans())
_PEOPLE = 13  # (role, in the other unit, teams, active, mailbox syncs items)
# Several alike but for who they are (the wake asks those alike once: a record of one of
# them, or shared with one, or with a team of one, must still tell them apart): Salespeople
# of one unit, in a team or not; "Own records" people (user-depth reads) in a team or not;
# Sales Managers (parent-child reads) of either unit.
_SHAPES = [("Salesperson", False, (0,), True, True), ("Salesperson", False, (0,), True, True),
           ("Sales Manager", False, (1,), True, True), ("Salesperson", True, (1,), True, True),
           ("Customer Service Representative", False, (), True, True),
           ("Salesperson", False, (0,), False, True), ("Salesperson", True, (), True, False),
           ("System Administrator", False, (), True, True),
           ("Salesperson", False, (), True, True), ("Own records", False, (0,), True, True),
           ("Own records", False, (), True, True), ("Own records", False, (), True, True),
           ("Sales Manager", True, (), True, True)]
_OWN_RECORDS = {"contact.read": Depth.USER, "activity.read": Depth.USER,
                "sync_appointments": Depth.ORGANIZATION, "sync_contacts": Depth.ORGANIZATION,
                "sync_tasks": Depth.ORGANIZATION}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), owner=st.integers(0, _PEOPLE + 1),
       value=st.sampled_from(["Buyer", "Clerk"]),
       # the organization's "anyone" often: all those without their own are asked then,
       # those alike once (``wake._condition_key``)
       organization=st.sampled_from([("any", False), ("any", True)]) | _RULES,
       own=st.lists(_RULES, min_size=_PEOPLE, max_size=_PEOPLE),
       attendees=st.sets(st.integers(0, _PEOPLE - 1), max_size=3),
       shares=st.sets(st.integers(0, _PEOPLE + 1), max_size=3))
# Always, with the organization's "anyone": a record of a Salesperson of the first unit,
# shared with one "Own records" person of two alike (and readable by unit to some of
# those alike but for their unit or depth); a record of the other; one of a team, shared
# with the other team.
@example(kind="contact", owner=0, value="Buyer", organization=("any", False),
         own=[None] * _PEOPLE, attendees=set(), shares={10})
@example(kind="task", owner=10, value="Buyer", organization=("any", False),
         own=[None] * _PEOPLE, attendees=set(), shares=set())
@example(kind="appointment", owner=_PEOPLE, value="Buyer", organization=("any", True),
         own=[None] * _PEOPLE, attendees={11}, shares={_PEOPLE + 1})
def test_the_wake_asks_for_whom_the_filters_take(app, make_user, make_unit, kind, owner,
                                                 value, organization, own, attendees, shares):
    """A new record, owned by any of thirteen people of all kinds (roles, units, teams,
    depths, one disabled, one whose mailbox syncs no items) or either team, shared with
    some of them or the teams, under any mix of filters: the mailboxes asked for are those
    of the users each of whose filter, asked alone (``filters.selected``, the privilege),
    takes it."""
    people, teams = _population(make_user, make_unit)
    db.session.execute(delete(SyncFilter))
    for user, rule in [(None, organization), *zip(people, own)]:
        if rule is not None:
            _filter(user, kind, rule[0], [_CONDITIONS[kind]] if rule[1] else ())
    _flagged()
    model = records.MODELS[kind]
    holder = (people + teams)[owner]
    fields = {"job_title": value, "full_name": "Dale", "last_name": "Dale"} \
        if kind == "contact" else {"subject": value, "state": "open",
                                   "occurred_on": datetime.now(timezone.utc)}
    with app.test_request_context():
        record = model(owning_business_unit_id=holder.business_unit_id, **fields,
                       **{"owner_team_id" if owner >= _PEOPLE else "owner_user_id": holder.id})
        if kind == "appointment":
            record.parties = [ActivityParty(role="required", user_id=people[n].id)
                              for n in sorted(attendees)]
        db.session.add(record)
        db.session.flush()
        db.session.add_all(RecordShare(
            table_name=authz.table_of(model), record_id=record.id,
            **{"team_id" if n >= _PEOPLE else "user_id": (people + teams)[n].id})
            for n in sorted(shares))
        db.session.commit()
    taking = set()
    for user in people:
        p = authz.principal(user)  # outside a request: computed afresh
        box = db.session.scalar(select(Mailbox).where(Mailbox.user_id == user.id))
        if box.acts_method == "server_side_sync" and p.has(records.PRIVILEGES[kind]) and \
                db.session.scalar(select(model.id).where(model.id == record.id,
                                                         filters.selected(p, kind))):
            taking.add(user.email)
    assert _flagged() == taking, (kind, owner, value, organization, own, attendees, shares)


_populations: dict[int, tuple] = {}


def _population(make_user, make_unit):
    """``_SHAPES``' people and the two teams, made once per test run."""
    if id(make_user) not in _populations:
        _populations.clear()
        far = make_unit("Far away")
        root = make_user("root@contoso.test").business_unit
        teams = [Team(name=f"Team {n}", business_unit_id=root.id) for n in range(2)]
        db.session.add_all(teams)
        db.session.add(Role(name="Own records", privileges=[
            RolePrivilege(privilege=k, depth=int(d)) for k, d in _OWN_RECORDS.items()]))
        db.session.flush()
        people = []
        for n, (role, away, in_teams, active, items) in enumerate(_SHAPES):
            user = make_user(f"p{n}@contoso.test", roles=[role], unit=far if away else None)
            user.is_active = active
            for t in in_teams:
                teams[t].members.append(user)
            box = _mailbox(user)
            box.acts_method = "server_side_sync" if items else "none"
            people.append(user)
        db.session.commit()
        _populations[id(make_user)] = (people, teams)
    return _populations[id(make_user)]
