"""The demo organization: loads once (the command and the function are idempotent), holds
what its docstring promises, and gives each role a sensible share of it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.crm.activities import Activity, ActivityParty, Appointment, Email, PhoneCall, Task
from server.crm.addresses import EmailAddress
from server.crm.models import Account, Case, Contact, Opportunity, Queue
from server.db import db, utcnow
from server.demo import CONTOSO_DEAL, COUNTS, DEMO_SIGNINS, seed, summary_counts
from server.security import authz
from server.security.models import RecordShare, Team, User
from server.security.passwords import check_password_strength

pytestmark = pytest.mark.both_databases


@pytest.fixture
def demo(app):
    summary = seed()
    db.session.commit()
    return summary


def _user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def _visible(email: str, model) -> set[int]:
    p = authz.principal(_user(email))
    return set(db.session.scalars(select(model.id).where(authz.scope(p, model, "read"))))


def test_seed_is_idempotent_from_the_command_line(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "Contoso Ltd loaded" in first.output
    counts = summary_counts()
    activities = db.session.scalar(select(func.count()).select_from(Activity))
    addresses = db.session.scalar(select(func.count()).select_from(EmailAddress))
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and second.output.strip() == "already loaded"
    assert seed() == "already loaded"
    assert summary_counts() == counts
    assert db.session.scalar(select(func.count()).select_from(Activity)) == activities
    assert db.session.scalar(select(func.count()).select_from(EmailAddress)) == addresses


def test_counts_are_as_documented(demo):
    assert summary_counts() == COUNTS
    assert f"{COUNTS['account']} accounts" in demo and f"{COUNTS['contact']} contacts" in demo
    kinds = dict(db.session.execute(
        select(Activity.activity_type, func.count()).group_by(Activity.activity_type)).all())
    assert set(kinds) == {"email", "appointment", "task", "phone_call"}
    assert sum(kinds.values()) >= 300 and kinds["email"] >= 150
    assert f"{sum(kinds.values())} activities" in demo
    assert db.session.scalar(select(func.count()).select_from(User)) == len(DEMO_SIGNINS)
    # Every email-enabled record is in the address index: 5 users, the queue and every
    # account, contact and lead address.
    indexed = db.session.scalar(select(func.count()).select_from(EmailAddress))
    assert indexed == len(DEMO_SIGNINS) + 1 + COUNTS["account"] + COUNTS["contact"] + COUNTS["lead"]
    deal = db.session.scalar(select(Opportunity).where(Opportunity.name == CONTOSO_DEAL))
    assert deal is not None and deal.owner_user.email == "sam.sales@contoso.example"
    assert db.session.scalar(select(Queue).where(Queue.name == "Support")).email == "support@contoso.example"
    tickets = db.session.scalars(select(Case.ticket_number)).all()
    assert len(set(tickets)) == COUNTS["case"] and all(t.startswith("CAS-") for t in tickets)
    assert db.session.scalar(select(func.count()).select_from(Account)
                             .where(Account.parent_account_id.is_not(None))) >= 4
    # Only reserved example domains: no real company's address.
    for (address,) in db.session.execute(select(EmailAddress.address)):
        assert address.endswith(".example"), address


def test_each_demo_user_can_sign_in(demo, client):
    for email, password, role in DEMO_SIGNINS:
        assert check_password_strength(password) is None
        user = _user(email)
        assert [r.name for r in user.roles] == [role]
        response = client.post("/signin", data={"email": email, "password": password})
        assert response.status_code == 302, (email, response.status_code)
        client.post("/signout")
    wrong = client.post("/signin", data={"email": DEMO_SIGNINS[0][0], "password": "not-the-password-1"})
    assert wrong.status_code == 401


def test_each_role_sees_a_sensible_subset(demo):
    everything = set(db.session.scalars(select(Account.id)))
    admin = _visible("admin@contoso.example", Account)
    manager = _visible("mia.manager@contoso.example", Account)
    sam = _visible("sam.sales@contoso.example", Account)
    sara = _visible("sara.sales@contoso.example", Account)
    chris = _visible("chris.service@contoso.example", Account)
    assert admin == everything
    assert sam and sara and chris
    assert len(sam) < len(admin) and len(sara) < len(admin) and not sam & sara
    assert sam | sara < manager < admin  # the manager sees Sales and its units, not the root's
    # The Key Accounts team's accounts are in Sales East: Sam's unit, not Sara's.
    team = db.session.scalar(select(Team).where(Team.name == "Key Accounts"))
    team_accounts = set(db.session.scalars(select(Account.id).where(Account.owner_team_id == team.id)))
    assert team_accounts and team_accounts <= sam and not team_accounts & sara
    # Service sees exactly the case customers shared with its team, and every case.
    shared = set(db.session.scalars(select(RecordShare.record_id)
                                    .where(RecordShare.table_name == "account")))
    assert chris == shared
    assert _visible("chris.service@contoso.example", Case) == set(db.session.scalars(select(Case.id)))
    assert not _visible("sam.sales@contoso.example", Case)
    # Activities: each salesperson sees their unit's, service its own, the admin all.
    activities = set(db.session.scalars(select(Activity.id)))
    seen = {e: _visible(e, Activity) for e, _, _ in DEMO_SIGNINS}
    assert seen["admin@contoso.example"] == activities
    for email in ("sam.sales@contoso.example", "sara.sales@contoso.example",
                  "chris.service@contoso.example"):
        assert 20 < len(seen[email]) < len(activities)
    assert seen["sam.sales@contoso.example"] | seen["sara.sales@contoso.example"] \
        <= seen["mia.manager@contoso.example"]


def test_activities_are_complete_and_consistent(demo):
    now = utcnow()
    emails = db.session.scalars(select(Email)).all()
    by_message_id = {e.message_id: e for e in emails}
    assert len(by_message_id) == len(emails)
    for email in emails:
        roles = {p.role for p in email.parties}
        assert {"from", "to"} <= roles, email.subject
        assert all(p.party_ref is not None and p.address for p in email.parties)
        assert email.regarding_ref is not None, email.subject
        assert email.html_body.startswith("<div><p>Hi ") and "<script" not in email.html_body
        assert email.text_body and email.conversation_index and email.conversation_id
        assert now - timedelta(days=91) < email.occurred_on < now
        if email.in_reply_to:
            parent = by_message_id[email.in_reply_to]
            assert email.parent_activity_id == parent.id
            assert email.regarding_ref == parent.regarding_ref
            assert email.conversation_id == parent.conversation_id
            assert email.references.split()[-1] == parent.message_id
        if email.direction == "outgoing":
            assert email.tracking_token and email.subject.endswith(email.tracking_token)
    assert sum(1 for e in emails if e.in_reply_to) >= 50
    assert any(e.regarding_opportunity_id == db.session.scalar(
        select(Opportunity.id).where(Opportunity.name == CONTOSO_DEAL)) for e in emails)
    # Parties of incoming mail resolve to contacts, and case mail goes to the Support queue.
    assert db.session.scalar(select(func.count()).select_from(ActivityParty)
                             .where(ActivityParty.queue_id.is_not(None))) > 0
    for appt in db.session.scalars(select(Appointment)):
        assert {"organizer", "required"} <= {p.role for p in appt.parties}
        assert appt.scheduled_end > appt.scheduled_start and appt.regarding_ref
    assert all(t.regarding_ref for t in db.session.scalars(select(Task)))
    assert all(len(c.parties) == 2 for c in db.session.scalars(select(PhoneCall)))
    # Owners and owning units agree, so depth checks mean what they say.
    units = dict(db.session.execute(select(User.id, User.business_unit_id)).all())
    for owner, unit in db.session.execute(select(Activity.owner_user_id,
                                                 Activity.owning_business_unit_id)):
        assert units[owner] == unit


def test_a_demo_contacts_address_resolves(demo):
    from server.crm.services.resolution import resolve
    contact = db.session.scalar(select(Contact).where(Contact.is_active.is_(True)).order_by(Contact.id))
    sam = _user("sam.sales@contoso.example")
    given = f"  {contact.email1.upper()} "
    result = resolve([given, "support@contoso.example", "nobody@nowhere.example",
                      "sam.sales@contoso.example"], user_id=sam.id)
    [match] = result[given]
    assert (match.record_type, match.record_id, match.name) == ("contact", contact.id, contact.full_name)
    assert result["support@contoso.example"][0].record_type == "queue"
    assert result["nobody@nowhere.example"] == []
    assert result["sam.sales@contoso.example"][0].record_type == "user"


def test_the_readmes_walk_through_finds_what_it_names(demo):
    """README's "Try it": the search it names finds the account it names, whose timeline
    (with related records, the default) holds the Contoso deal's emails and more than the
    account's own."""
    import re
    from pathlib import Path

    from server.crm.services import search
    from server.crm.services.timeline import timeline
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    said = re.search(r'search for "([^"]+)", open the account "([^"]+)"', readme)
    assert said, "README no longer says what to search for and open"
    query, name = said.groups()
    p = authz.principal(_user("admin@contoso.example"))
    found = {hits.rt.name: [r for r, _ in hits.rows] for hits in search.home(p, query).results}
    account = next(a for a in found.get("account", []) if a.name == name)
    rolled = timeline(p, "account", account.id, limit=50)
    own = timeline(p, "account", account.id, limit=50, related=False)
    assert rolled.related and len(rolled.items) > len(own.items)
    deal = db.session.scalar(select(Opportunity).where(Opportunity.name == CONTOSO_DEAL))
    assert deal.customer_account_id == account.id
    assert any(a.regarding_opportunity_id == deal.id for a in rolled.items)
