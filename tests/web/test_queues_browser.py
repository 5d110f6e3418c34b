"""Queues and sending as a queue in headless Chromium against the real server (CSRF on):
compose from a queue's page starts with the queue's signature, changing the sender swaps
the signature, and the email goes out through the queue's mailbox to aiosmtpd; a queue's
items are picked and released on a 320 px wide screen; axe-core finds no violation on the
queue page and the compose page."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.crm.activities import Email
from server.crm.models import Queue
from server.crm.queues import QueueItem
from server.crm.services import records, tracking
from server.crm.services.tracking import EmailContent
from server.crm.registry import RECORD_TYPES
from server.crm.templates import Signature
from server.db import db
from server.security import authz, passwords
from server.sync.engine.outgoing import send_pending
from tests.sync.mailboxes import make_mailbox, make_profile
from tests.web.test_compose_browser import PASSWORD, sign_in

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def world(app, make_user, dovecot, make_mail_user, smtp_server):
    bea = make_user("bea@contoso.test", roles=["System Administrator"], name="Bea Boss")
    passwords.set_password(bea, PASSWORD)
    yvonne = records.create(authz.principal(bea), RECORD_TYPES["contact"], {
        "first_name": "Yvonne", "last_name": "McKay", "email1": "yvonne@customer.example"})
    support = Queue(name="Support", email="support@contoso.test", owner_user_id=bea.id,
                    owning_business_unit_id=bea.business_unit_id)
    db.session.add(support)
    db.session.flush()
    db.session.add_all([Signature(queue_id=support.id, body_html="<p>The Support team</p>"),
                        Signature(user_id=bea.id, body_html="<p>Bea, at your service</p>")])
    db.session.commit()
    profile = make_profile(dovecot=dovecot, smtp=smtp_server)
    own, box = make_mail_user("bea"), make_mail_user("support")
    make_mailbox(profile, user=bea, enabled=True, username=own.username, password=own.password)
    queue_box = make_mailbox(profile, queue=support, enabled=True, username=box.username,
                             password=box.password)
    return {"bea": bea, "yvonne": yvonne, "support": support, "queue_box": queue_box}


def no_violations(page) -> None:
    page.evaluate(AXE.read_text())  # through the debugger: the page's policy runs no inline script
    found = page.evaluate("() => axe.run(document).then(r => r.violations.map("
                          "v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))")
    assert found == []


def test_compose_from_a_queue_with_its_signature_and_send_as_the_queue(browser, live, world,
                                                                       smtp_server):
    page = sign_in(browser, live, world["bea"])
    page.goto(f"{live}/r/queue/{world['support'].id}")
    page.click("#compose-from-queue")
    expect(page.locator("#sender")).to_have_value(f"queue:{world['support'].id}")
    expect(page.locator("#editor")).to_contain_text("The Support team")
    page.select_option("#sender", f"user:{world['bea'].id}")
    expect(page.locator("#editor")).to_contain_text("Bea, at your service")
    expect(page.locator("#editor")).not_to_contain_text("The Support team")
    page.select_option("#sender", f"queue:{world['support'].id}")
    expect(page.locator("#editor")).to_contain_text("The Support team")
    expect(page.locator("#editor")).not_to_contain_text("Bea, at your service")
    no_violations(page)
    page.fill("#to", "Yvonne McKay <yvonne@customer.example>")
    page.fill("#subject", "Your printer")
    page.click("#editor")
    page.keyboard.press("Control+Home")
    page.keyboard.type("It is fixed.")
    page.click("#send")
    expect(page.locator("#send-status")).to_have_text("Waiting to be sent")
    db.session.rollback()  # see what the server thread committed
    assert send_pending(world["queue_box"].id).sent == 1
    [sent] = smtp_server.wait_for(1)
    assert sent.mail_from == "support@contoso.test"
    body = sent.message.get_body(("html",)).get_content()
    assert "It is fixed." in body and body.count("The Support team") == 1
    assert "Bea, at your service" not in body
    assert page.errors == []


def test_queue_items_picked_and_released_on_a_narrow_screen(browser, live, world):
    email, _ = tracking.track_email(authz.principal(world["bea"]), EmailContent(
        message_id="help@customer.example", subject="Printer on fire",
        from_=("Yvonne", "yvonne@customer.example"), to=[("Support", "support@contoso.test")],
        text_body="Help."))
    db.session.add(QueueItem(queue_id=world["support"].id, activity_id=email.id))
    db.session.commit()
    page = sign_in(browser, live, world["bea"])
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{live}/queues/{world['support'].id}")
    row = page.locator("#queue-items tr[data-item]")
    expect(row).to_contain_text("Printer on fire")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
    no_violations(page)
    row.get_by_role("button", name="Pick").click()
    expect(row.locator(".worked-by")).to_contain_text("Bea Boss")
    row.get_by_role("button", name="Release").click()
    expect(row.locator(".worked-by")).to_have_text("")
    db.session.rollback()
    assert db.session.scalar(select(QueueItem)).worked_by_id is None
    assert db.session.scalar(select(Email)).subject == "Printer on fire"
    assert page.errors == []
