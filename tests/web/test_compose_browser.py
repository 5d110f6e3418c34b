"""Email from the CRM in headless Chromium against the real server (CSRF on), sent through
aiosmtpd with the Sent copy in Dovecot: compose from a contact page with a template and an
attachment and see it sent; reply from the timeline; a reply written by swaks (a mail
client no one here wrote) tracked regarding the same contact; a failing SMTP server shown
as not sent with its reason, and Retry; a user without a working mailbox told why."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.crm.activities import Email
from server.crm.services import records
from server.crm.registry import RECORD_TYPES
from server.crm.templates import EmailTemplate
from server.db import db
from server.security import authz, passwords
from server.sync.engine.outgoing import send_pending
from server.sync.engine.run import sync_mailbox
from tests.sync.mailboxes import make_mailbox, make_profile

PASSWORD = "Correct-horse-9"


@pytest.fixture
def world(app, make_user, dovecot, mail_user, smtp_server):
    sam = make_user("sam@contoso.test", name="Sam Seller")
    passwords.set_password(sam, PASSWORD)
    yvonne = records.create(authz.principal(sam), RECORD_TYPES["contact"], {
        "first_name": "Yvonne", "last_name": "McKay", "email1": "yvonne@customer.example"})
    db.session.add(EmailTemplate(name="Quote", subject="Quote for {{ recipient.account or "
                                 "recipient.name }}", user_id=sam.id,
                                 body_html="<p>Dear {{ recipient.first_name }},</p>"
                                           "<p>the quote is attached.</p>"))
    db.session.commit()
    profile = make_profile(dovecot=dovecot, smtp=smtp_server)
    mailbox = make_mailbox(profile, user=sam, enabled=True, username=mail_user.username,
                           password=mail_user.password)
    return {"sam": sam, "yvonne": yvonne, "mailbox": mailbox}


def sign_in(browser, live, user):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(f"{live}/signin")
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/")
    return page


def the_worker_sends(mailbox) -> None:
    """What the sync worker does for the mailbox the Send woke."""
    db.session.rollback()  # see what the server thread committed
    send_pending(mailbox.id)


def test_compose_with_template_and_attachment_send_and_see_it_sent(
        browser, live, world, smtp_server, dovecot, mail_user, tmp_path):
    page = sign_in(browser, live, world["sam"])
    page.goto(f"{live}/r/contact/{world['yvonne'].id}")
    page.click("#compose-email")
    expect(page.locator("#to")).to_have_value("Yvonne McKay <yvonne@customer.example>")
    expect(page.locator("#editor")).to_be_visible()  # the rich-text editor took over
    page.select_option("#template", label="Quote (mine)")
    page.click("#apply-template")
    expect(page.locator("#subject")).to_have_value("Quote for Yvonne McKay")
    expect(page.locator("#editor")).to_contain_text("Dear Yvonne,")
    page.click("#editor")
    page.keyboard.press("Control+End")
    page.keyboard.type("Best regards")
    quote = tmp_path / "quote.pdf"
    quote.write_bytes(b"%PDF-1.4 the quote")
    page.set_input_files("#attachments", str(quote))
    page.click("#send")
    expect(page.locator("#send-status")).to_have_text("Waiting to be sent")

    the_worker_sends(world["mailbox"])
    expect(page.locator("#send-status")).to_have_text("Sent", timeout=10_000)
    email = db.session.scalar(select(Email))
    # When it was sent, in the reader's locale and time zone (UTC here): "Dec 6, 2026, 3:20 AM".
    expect(page.locator("#send-when")).to_contain_text(
        f"{email.sent_on:%b} {email.sent_on.day}, {email.sent_on.year}")
    assert email.status == "sent" and email.regarding_ref == ("contact", world["yvonne"].id)

    received = smtp_server.wait_for(1)[0]
    msg = received.message
    assert received.rcpt_tos == ("yvonne@customer.example",)
    assert msg["From"] == "Sam Seller <sam@contoso.test>"
    assert msg["To"] == "Yvonne McKay <yvonne@customer.example>"
    assert msg["Subject"] == f"Quote for Yvonne McKay {email.tracking_token}"
    assert msg["Message-ID"] == f"<{email.message_id}>"
    html = msg.get_body(("html",)).get_content()
    assert "Dear Yvonne," in html and "Best regards" in html
    assert [(a.get_filename(), a.get_content()) for a in msg.iter_attachments()] == [
        ("quote.pdf", b"%PDF-1.4 the quote")]
    with dovecot.imap_client(mail_user) as imap:
        imap.select_folder("Sent")
        uids = imap.search("ALL")
        data = imap.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    assert len(uids) == 1
    assert email.message_id.encode() in data[uids[0]][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]
    assert page.errors == []


def customer_email(world) -> Email:
    """Yvonne's question, as tracked from Sam's mailbox."""
    from server.crm.activities import ActivityParty
    sam, yvonne = world["sam"], world["yvonne"]
    email = Email(subject="Question about the quote", html_body="<p>Is shipping included?</p>",
                  direction="incoming", status="received", message_id="q1@customer.example",
                  dedupe_key="q1@customer.example", owner_user_id=sam.id,
                  owning_business_unit_id=sam.business_unit_id,
                  occurred_on=db.func.now(), received_on=db.func.now())
    email.set_regarding("contact", yvonne.id)
    sender = ActivityParty(role="from", address="yvonne@customer.example", name="Yvonne McKay")
    sender.set_party("contact", yvonne.id)
    email.parties.extend([sender, ActivityParty(role="to", address=sam.email, name=sam.full_name)])
    db.session.add(email)
    db.session.commit()
    return email


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is installed by scripts/test.sh")
def test_reply_from_the_timeline_and_the_customers_reply_by_swaks_is_tracked(
        browser, live, world, smtp_server, dovecot, mail_user):
    question = customer_email(world)
    page = sign_in(browser, live, world["sam"])
    page.goto(f"{live}/r/contact/{world['yvonne'].id}")
    page.click("text=Question about the quote")
    page.click("button:text-is('Reply')")
    expect(page.locator("#subject")).to_have_value("RE: Question about the quote")
    expect(page.locator("#to")).to_have_value("Yvonne McKay <yvonne@customer.example>")
    expect(page.locator("#editor")).to_contain_text("Is shipping included?")
    page.click("#editor")
    page.keyboard.press("Control+Home")
    page.keyboard.type("Yes, shipping is included.")
    page.click("#send")
    expect(page.locator("#send-status")).to_have_text("Waiting to be sent")
    the_worker_sends(world["mailbox"])
    expect(page.locator("#send-status")).to_have_text("Sent", timeout=10_000)
    ours = db.session.scalar(select(Email).where(Email.parent_activity_id == question.id))
    sent = smtp_server.wait_for(1)[0].message
    assert sent["In-Reply-To"] == "<q1@customer.example>"
    assert sent["References"] == "<q1@customer.example>"
    assert sent["Subject"] == f"RE: Question about the quote {ours.tracking_token}"
    assert "Yes, shipping is included." in sent.get_body(("html",)).get_content()

    # Yvonne answers with swaks through her own SMTP server (aiosmtpd here), and the
    # message lands in Sam's Dovecot inbox as an MTA would put it there.
    smtp_server.clear()
    subprocess.run([
        "swaks", "--server", f"{smtp_server.host}:{smtp_server.port}", "--silent", "2",
        "--from", "yvonne@customer.example", "--to", world["sam"].email,
        "--header", f"Subject: Re: {sent['Subject']}",
        "--header", f"In-Reply-To: {sent['Message-ID']}",
        "--header", f"References: <q1@customer.example> {sent['Message-ID']}",
        "--body", "Great, thanks! Please send the order form."], check=True, timeout=30)
    answer = smtp_server.wait_for(1)[0]
    dovecot.deliver(mail_user, answer.data)
    db.session.rollback()
    result = sync_mailbox(world["mailbox"].id)
    assert result.status == "success", result
    db.session.expire_all()
    tracked = db.session.scalar(select(Email).where(Email.subject.startswith("Re: RE:")))
    assert tracked is not None and tracked.direction == "incoming"
    assert tracked.correlation_method == "in_reply_to"
    assert "Please send the order form" in (tracked.text_body or "")
    assert tracked.regarding_ref == ("contact", world["yvonne"].id)
    assert tracked.parent_activity_id == ours.id
    page.goto(f"{live}/r/contact/{world['yvonne'].id}")
    expect(page.locator(".timeline-list")).to_contain_text("Re: RE: Question about the quote")


def test_a_failing_smtp_server_shows_not_sent_with_the_reason_and_retry_sends(
        browser, live, world, smtp_server):
    page = sign_in(browser, live, world["sam"])
    page.goto(f"{live}/compose?regarding=contact:{world['yvonne'].id}")
    page.fill("#subject", "Order form")
    page.click("#editor")
    page.keyboard.type("Here it is.")
    page.click("#send")
    expect(page.locator("#send-status")).to_have_text("Waiting to be sent")
    smtp_server.fail_next(1, code=550, text="5.7.1 Relaying denied", stage="rcpt")
    the_worker_sends(world["mailbox"])
    expect(page.locator("#send-status")).to_have_text("Not sent", timeout=10_000)
    expect(page.locator("#send-error")).to_contain_text("Relaying denied")
    page.click("#retry button")
    expect(page.locator("#send-status")).to_have_text("Waiting to be sent")
    the_worker_sends(world["mailbox"])
    expect(page.locator("#send-status")).to_have_text("Sent", timeout=10_000)
    assert smtp_server.wait_for(1)[0].message["Subject"].startswith("Order form CRM:")


def test_a_user_without_a_working_mailbox_is_told_why_before_composing(
        browser, live, world, make_user):
    world["mailbox"].enabled = False
    world["mailbox"].disabled_reason = "the password was refused"
    db.session.commit()
    page = sign_in(browser, live, world["sam"])
    page.goto(f"{live}/r/contact/{world['yvonne'].id}")
    page.click("#compose-email")
    expect(page.locator("#cannot-send")).to_contain_text(
        "The mailbox sam@contoso.test is not enabled (the password was refused)")
    expect(page.locator("#send")).to_be_disabled()
    nobody = make_user("nobody@contoso.test", name="No Mailbox")
    passwords.set_password(nobody, PASSWORD)
    db.session.commit()
    other = sign_in(browser, live, nobody)
    other.goto(f"{live}/compose")
    expect(other.locator("#cannot-send")).to_contain_text("You have no mailbox in the CRM")
    expect(other.locator("#send")).to_be_disabled()
