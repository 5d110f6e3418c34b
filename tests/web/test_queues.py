"""Queue pages and the compose page's sender: a queue's items with who works them, Pick,
Release, Route and Remove through forms with the same privilege checks as the API; case
rules edited on their page with every bad value named; "send as" offered only with the
privilege, and refused when forced."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.crm.models import Queue
from server.crm.queues import CaseRule, QueueItem
from server.crm.services import tracking
from server.crm.services.tracking import EmailContent
from server.crm.templates import Signature
from server.db import db
from server.security import authz
from tests.sync.mailboxes import make_mailbox, make_profile


@pytest.fixture
def desk(app, make_user):
    boss = make_user("boss@contoso.test", roles=["System Administrator"], name="Bea Boss")
    agent = make_user("agent@contoso.test", roles=["Customer Service Representative"],
                      name="Al Agent")
    seller = make_user("sam@contoso.test", roles=["Salesperson"], name="Sam Seller")
    support = Queue(name="Support", email="support@contoso.test", owner_user_id=boss.id,
                    owning_business_unit_id=boss.business_unit_id)
    billing = Queue(name="Billing", owner_user_id=boss.id,
                    owning_business_unit_id=boss.business_unit_id)
    db.session.add_all([support, billing])
    db.session.flush()
    email, _ = tracking.track_email(authz.principal(agent), EmailContent(
        message_id="help@customer.test", subject="Printer on fire",
        from_=("Ann", "ann@customer.test"), to=[("Support", "support@contoso.test")],
        text_body="Help."))
    item = QueueItem(queue_id=support.id, activity_id=email.id)
    db.session.add(item)
    make_mailbox(make_profile(incoming_protocol="maildir"), queue=support)
    db.session.add(Signature(queue_id=support.id, body_html="<p>The Support team</p>"))
    db.session.commit()
    from types import SimpleNamespace
    return SimpleNamespace(boss=boss, agent=agent, seller=seller, support=support,
                           billing=billing, item=item)


def test_queue_page_lists_items_and_forms_work_them(signin, desk):
    c = signin(desk.agent)
    assert "Support" in c.get("/queues/").get_data(as_text=True)
    page = c.get(f"/queues/{desk.support.id}").get_data(as_text=True)
    assert "Printer on fire" in page and "Pick" in page and "New email from this queue" in page
    assert c.post(f"/queues/items/{desk.item.id}/pick").status_code == 302
    page = c.get(f"/queues/{desk.support.id}?worked=mine").get_data(as_text=True)
    assert "Al Agent" in page and "Release" in page
    assert c.post(f"/queues/items/{desk.item.id}/release").status_code == 302
    r = c.post(f"/queues/items/{desk.item.id}/route", data={"to": f"queue:{desk.billing.id}"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/queues/{desk.support.id}")
    assert db.session.get(QueueItem, desk.item.id).queue_id == desk.billing.id
    assert c.post(f"/queues/items/{desk.item.id}/route", data={"to": "nowhere"}).status_code == 400
    assert c.post(f"/queues/items/{desk.item.id}/remove").status_code == 302
    assert db.session.scalars(select(QueueItem)).all() == []


def test_pages_check_the_same_privileges(signin, desk, make_user):
    seller = signin(desk.seller)  # reads the queue and the email, may not append to it
    assert "Printer on fire" in seller.get(f"/queues/{desk.support.id}").get_data(as_text=True)
    for action in ("pick", "release", "remove"):
        assert seller.post(f"/queues/items/{desk.item.id}/{action}").status_code == 403
    nobody = signin(make_user("nobody@contoso.test", roles=[]))
    assert nobody.get(f"/queues/{desk.support.id}").status_code == 404
    assert nobody.post(f"/queues/items/{desk.item.id}/pick").status_code == 404
    db.session.expire_all()
    assert db.session.get(QueueItem, desk.item.id).worked_by_id is None


def test_case_rules_page_saves_and_names_bad_values(signin, desk):
    c = signin(desk.boss)
    form = {"name": "Invoices", "enabled": "on", "condition_kind": ["subject_contains",
                                                                   "business_hours", ""],
            "condition_value": ["invoice", "whenever", ""], "priority": "high",
            "routing": "round_robin", "route_team_id": "", "on_resolved": "reopen",
            "resolved_window_days": "7", "ack_per_sender_per_day": "3"}
    bad = c.post(f"/queues/{desk.support.id}/case-rules/new", data=form)
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "Write business hours as days" in text
    assert "Routing over a team needs the team." in text
    assert db.session.scalars(select(CaseRule)).all() == []
    form.update(condition_value=["invoice", "mon-fri 08:00-18:00 Europe/Paris", ""],
                routing="queue")
    assert c.post(f"/queues/{desk.support.id}/case-rules/new", data=form).status_code == 302
    rule = db.session.scalar(select(CaseRule))
    assert rule.conditions == [{"kind": "subject_contains", "value": "invoice"},
                               {"kind": "business_hours",
                                "value": "mon-fri 08:00-18:00 Europe/Paris"}]
    assert "Invoices" in c.get(f"/queues/{desk.support.id}/case-rules").get_data(as_text=True)
    agent = signin(desk.agent)  # reads the rules, may not change them
    assert agent.get(f"/queues/case-rules/{rule.id}").status_code == 200
    assert agent.post(f"/queues/case-rules/{rule.id}/delete").status_code == 403
    assert c.post(f"/queues/case-rules/{rule.id}/delete").status_code == 302


def test_send_as_is_offered_with_the_privilege_only(signin, desk):
    boss = signin(desk.boss)
    page = boss.get(f"/compose?sender=queue:{desk.support.id}").get_data(as_text=True)
    assert f'<option value="queue:{desk.support.id}"' in page
    assert f'value="queue:{desk.support.id}" data-signature=' in page and " selected" in page
    assert "The Support team" in page  # the queue's signature starts the body
    seller = signin(desk.seller)
    page = seller.get(f"/compose?sender=queue:{desk.support.id}").get_data(as_text=True)
    assert f"queue:{desk.support.id}" not in page and "You may not send as that" in page
    forced = seller.post("/compose", data={"sender": f"queue:{desk.support.id}",
                                           "to": "ann@customer.test", "subject": "Hi",
                                           "action": "save"})
    assert forced.status_code == 400 and "You may not send as that" in forced.get_data(as_text=True)
    assert db.session.scalars(select(Email).where(Email.status == "draft")).all() == []
    saved = boss.post("/compose", data={"sender": f"queue:{desk.support.id}",
                                        "to": "ann@customer.test", "subject": "From support",
                                        "action": "save"})
    assert saved.status_code == 302
    draft = db.session.scalar(select(Email).where(Email.status == "draft"))
    assert [(p.role, p.party_ref) for p in draft.parties if p.role == "from"] == \
        [("from", ("queue", desk.support.id))]
    # The draft opens again with the queue as its sender.
    assert 'selected>Support &lt;support@contoso.test&gt; (queue)' in \
        boss.get(f"/compose/{draft.id}").get_data(as_text=True)


def test_the_queue_form_sets_whose_email_the_queue_accepts(signin, desk):
    c = signin(desk.boss)
    form = c.get(f"/r/queue/{desk.support.id}/edit").get_data(as_text=True)
    assert "Accepts email from" in form and 'value="known_senders"' in form
    r = c.post(f"/r/queue/{desk.support.id}/edit", data={"name": "Support",
                                                         "accepting": "nobody"})
    assert r.status_code == 302
    assert c.post(f"/r/queue/{desk.support.id}/edit", data={
        "name": "Support", "accepting": "friends"}).status_code == 400
    db.session.expire_all()
    assert db.session.get(Queue, desk.support.id).accepting == "nobody"
