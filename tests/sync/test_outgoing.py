"""Outgoing email: the MIME message (pure), then the whole flow against aiosmtpd and Dovecot
(headers, tracking token, threading, Sent copy), retries with backoff, permanent failures,
a server that is down, sending as someone else, queue mailboxes, and the query count."""
from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from server.crm.activities import ActivityParty, Attachment, Email
from server.crm.models import Contact, Queue
from server.db import db, utcnow
from server.security import authz
from server.sync.connectors.base import ConnectorError
from server.sync.engine.outgoing import (OutgoingAttachment, OutgoingMessage, build_mime,
                                         send_pending, subject_with_token)
from tests.sync.mailboxes import make_mailbox, make_profile
from tests.sync.world import draft_email

NOW = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)


# -- the MIME message ----------------------------------------------------------------------

def sample(**overrides) -> OutgoingMessage:
    values = dict(
        from_=("Sam Seller", "sam@contoso.example"), subject="Quote for Fabrikam CRM:0012345",
        message_id="<abc@crm.contoso.example>", date=NOW,
        to=[("Ann Customer", "ann@customer.example")], cc=[("", "bo@customer.example")],
        bcc=[("Boss", "boss@contoso.example"), ("Ann Customer", "ann@customer.example")],
        text="Hello Ann,\nhere is the quote.", html='<p>Hello Ann,</p><img src="cid:logo@x">',
        in_reply_to="<parent@customer.example>",
        references=["<root@customer.example>", "<parent@customer.example>"],
        attachments=[OutgoingAttachment("quote.pdf", "application/pdf", b"%PDF-1.4 quote"),
                     OutgoingAttachment("logo.png", "image/png", b"\x89PNG logo", "logo@x", True)])
    values.update(overrides)
    return OutgoingMessage(**values)


def parsed(mime) -> email.message.EmailMessage:
    return email.message_from_bytes(mime.as_bytes(), policy=email.policy.default)


def test_headers_and_threading():
    msg = parsed(build_mime(sample()))
    assert msg["From"] == "Sam Seller <sam@contoso.example>"
    assert msg["To"] == "Ann Customer <ann@customer.example>"
    assert msg["Cc"] == "bo@customer.example"
    assert msg["Bcc"] is None  # envelope only
    assert msg["Subject"] == "Quote for Fabrikam CRM:0012345"
    assert msg["Message-ID"] == "<abc@crm.contoso.example>"
    assert msg["In-Reply-To"] == "<parent@customer.example>"
    assert msg["References"] == "<root@customer.example> <parent@customer.example>"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == NOW


def test_bodies_inline_images_and_attachments():
    msg = parsed(build_mime(sample()))
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").strip() == \
        "Hello Ann,\nhere is the quote."
    html = msg.get_body(("html",))
    assert "Hello Ann" in html.get_content()
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert related and any(p["Content-ID"] == "<logo@x>" for p in related[0].iter_parts())
    files = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert files == {"quote.pdf": b"%PDF-1.4 quote"}


def test_html_only_gets_a_text_alternative_and_text_only_stays_plain():
    msg = parsed(build_mime(sample(text=None, html="<p>Only <b>HTML</b></p>", attachments=[])))
    assert msg.get_content_type() == "multipart/alternative"
    assert "Only HTML" in msg.get_body(("plain",)).get_content()
    plain = parsed(build_mime(sample(html=None, attachments=[])))
    assert plain.get_content_type() == "text/plain"


def test_unicode_names_and_subject_are_encoded():
    mime = build_mime(sample(subject="Angebot für Müller", from_=("Zoë Ödegaard", "zoe@contoso.example")))
    raw = mime.as_bytes()
    assert b"=?utf-8?" in raw and raw.isascii()
    msg = parsed(mime)
    assert msg["Subject"] == "Angebot für Müller" and msg["From"].addresses[0].display_name == "Zoë Ödegaard"


def test_recipients_and_subject_token():
    assert sample().recipients == ["ann@customer.example", "bo@customer.example",
                                   "boss@contoso.example"]
    assert subject_with_token("Quote", "CRM:0000001") == "Quote CRM:0000001"
    assert subject_with_token("Re: Quote CRM:0000001", "CRM:0000001") == "Re: Quote CRM:0000001"
    assert subject_with_token("Quote", None) == "Quote"


# -- the flow ---------------------------------------------------------------------------------

@pytest.fixture
def sam(make_user):
    return make_user("sam@contoso.example", name="Sam Seller")


@pytest.fixture
def mailbox(app, sam, dovecot, mail_user, smtp_server):
    profile = make_profile(dovecot=dovecot, smtp=smtp_server)
    return make_mailbox(profile, user=sam, username=mail_user.username, password=mail_user.password)


def contact(owner, email_address, name="Ann Customer"):
    record = Contact(first_name=name.split()[0], last_name=name.split()[-1], full_name=name,
                     email1=email_address, owner_user_id=owner.id,
                     owning_business_unit_id=owner.business_unit_id)
    db.session.add(record)
    db.session.flush()
    return record


def outgoing_email(user, *, to="ann@customer.example", cc="", subject="Quote", body="Hello.",
                   **changes) -> Email:
    draft = draft_email(authz.principal(user), None, to=to, cc=cc, subject=subject, body=body)
    draft.status = "pending_send"
    for name, value in changes.items():
        setattr(draft, name, value)
    db.session.commit()
    return draft


@pytest.mark.both_databases  # the claim's compare-and-set on PostgreSQL too
def test_send_end_to_end_with_token_threading_and_sent_copy(app, sam, mailbox, smtp_server,
                                                            dovecot, mail_user):
    ann = contact(sam, "ann@customer.example")
    parent = outgoing_email(sam, subject="First", status="received",
                            message_id="parent@customer.example",
                            references="root@customer.example")
    mail = outgoing_email(sam, cc="bo@customer.example", subject="Quote",
                          body="Here it is.", html_body="<p>Here it is.</p>",
                          parent_activity_id=parent.id)
    # A To party known only by its record (no address stored): the contact's address is used.
    mail.parties.remove(next(p for p in mail.parties if p.role == "to"))
    to_party = ActivityParty(role="to")
    to_party.set_party("contact", ann.id)
    bcc = ActivityParty(role="bcc", address="boss@contoso.example", name="Boss")
    mail.parties.extend([to_party, bcc])
    mail.attachments.append(Attachment(filename="quote.pdf", content_type="application/pdf",
                                       size=8, content=b"%PDF-1.4"))
    db.session.commit()

    counts = send_pending(mailbox.id, NOW)

    assert counts.as_dict() == {"sent": 1, "retrying": 0, "failed": 0}
    received = smtp_server.wait_for(1)[0]
    assert received.mail_from == "sam@contoso.example"
    assert set(received.rcpt_tos) == {"ann@customer.example", "bo@customer.example",
                                      "boss@contoso.example"}
    msg = received.message
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    assert mail.status == "sent" and mail.state == "completed" and mail.sent_on == NOW
    assert mail.delivery_attempts == 1 and mail.error is None
    assert mail.tracking_token and mail.tracking_token.startswith("CRM:")
    assert msg["Subject"] == f"Quote {mail.tracking_token}"
    assert msg["From"] == "Sam Seller <sam@contoso.example>"
    assert msg["To"] == "Ann Customer <ann@customer.example>" and msg["Bcc"] is None
    assert msg["Message-ID"] == f"<{mail.message_id}>" and mail.dedupe_key == mail.message_id
    assert msg["In-Reply-To"] == "<parent@customer.example>"
    assert msg["References"] == "<root@customer.example> <parent@customer.example>"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["quote.pdf"]
    assert "Here it is." in msg.get_body(("plain",)).get_content()
    # The Sent copy, already read, in the user's IMAP Sent folder.
    with dovecot.imap_client(mail_user) as imap:
        imap.select_folder("Sent")
        uids = imap.search("ALL")
        data = imap.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    assert len(uids) == 1
    item = data[uids[0]]
    assert b"\\Seen" in item[b"FLAGS"]
    assert mail.message_id.encode() in item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]
    # Nothing left to send.
    assert send_pending(mailbox.id, NOW + timedelta(hours=1)).as_dict()["sent"] == 0


@pytest.mark.both_databases  # the claim's compare-and-set on PostgreSQL too
def test_451_is_retried_with_the_same_message_then_sent(app, sam, mailbox, smtp_server):
    mail = outgoing_email(sam)
    smtp_server.fail_next(1, code=451)
    assert send_pending(mailbox.id, NOW).as_dict() == {"sent": 0, "retrying": 1, "failed": 0}
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    first_id, token = mail.message_id, mail.tracking_token
    assert mail.status == "pending_send" and mail.delivery_attempts == 1
    assert mail.next_attempt_on == NOW + timedelta(minutes=1) and "451" in mail.error
    assert send_pending(mailbox.id, NOW + timedelta(seconds=30)).sent == 0  # not due yet
    assert send_pending(mailbox.id, NOW + timedelta(minutes=1)).sent == 1
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    assert mail.status == "sent" and mail.delivery_attempts == 2 and mail.error is None
    msg = smtp_server.wait_for(1)[0].message
    assert msg["Message-ID"] == f"<{first_id}>" and msg["Subject"] == f"Quote {token}"


def test_backoff_doubles_then_the_email_fails(app, sam, mailbox, smtp_server):
    mail = outgoing_email(sam)
    smtp_server.fail_next(None, code=451)
    when, waits = NOW, []
    for _ in range(5):
        send_pending(mailbox.id, when)
        db.session.expire_all()
        mail = db.session.get(Email, mail.id)
        if mail.next_attempt_on is None:
            break
        waits.append(mail.next_attempt_on - when)
        when = mail.next_attempt_on
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert mail.status == "failed" and mail.delivery_attempts == 5
    assert mail.error.startswith("Not sent after 5 attempts") and "451" in mail.error
    assert smtp_server.messages == []


def test_550_fails_at_once_with_the_reason(app, sam, mailbox, smtp_server):
    mail = outgoing_email(sam)
    smtp_server.fail_next(1, code=550, text="5.7.1 Relaying denied")
    assert send_pending(mailbox.id, NOW).failed == 1
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    assert mail.status == "failed" and "Relaying denied" in mail.error


def test_smtp_down_keeps_the_email_and_raises_for_the_mailbox(app, sam, mailbox, smtp_server):
    mail = outgoing_email(sam)
    smtp_server.stop()
    with pytest.raises(ConnectorError) as caught:
        send_pending(mailbox.id, NOW)
    assert caught.value.severity == "mailbox" and caught.value.counts.retrying == 1
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    assert mail.status == "pending_send" and mail.delivery_attempts == 1
    assert mail.next_attempt_on == NOW + timedelta(minutes=1)
    smtp_server.start()
    assert send_pending(mailbox.id, NOW + timedelta(minutes=1)).sent == 1


@pytest.mark.both_databases  # the claim's compare-and-set on PostgreSQL too
def test_a_worker_that_died_while_sending_is_taken_over(app, sam, mailbox, smtp_server):
    mail = outgoing_email(sam, status="sending", next_attempt_on=NOW - timedelta(minutes=1))
    fresh = outgoing_email(sam, subject="Still leased", status="sending",
                           next_attempt_on=NOW + timedelta(minutes=5))
    assert send_pending(mailbox.id, NOW).sent == 1
    db.session.expire_all()
    assert db.session.get(Email, mail.id).status == "sent"
    assert db.session.get(Email, fresh.id).status == "sending"


def test_sending_as_another_user_needs_the_privilege(app, sam, mailbox, make_user, smtp_server):
    ann = make_user("ann@contoso.example")  # a Salesperson: no send_as_other_user
    boss = make_user("boss@contoso.example", roles=["System Administrator"])
    denied = outgoing_email(ann, subject="From Ann")
    allowed = outgoing_email(boss, subject="From the boss")
    for mail in (denied, allowed):  # both are to go out from Sam's mailbox
        mail.parties[0].user_id, mail.parties[0].address = sam.id, sam.email
    db.session.commit()
    counts = send_pending(mailbox.id, NOW)
    assert counts.as_dict() == {"sent": 1, "retrying": 0, "failed": 1}
    db.session.expire_all()
    denied = db.session.get(Email, denied.id)
    assert denied.status == "failed" and "may not send email as sam@contoso.example" in denied.error
    assert smtp_server.wait_for(1)[0].message["Subject"].startswith("From the boss")


def test_each_mailbox_sends_only_its_own(app, sam, mailbox, make_user, smtp_server, dovecot,
                                         make_mail_user):
    ann = make_user("ann@contoso.example")
    queue = Queue(name="Support", email="support@contoso.example", owner_user_id=sam.id,
                  owning_business_unit_id=sam.business_unit_id)
    db.session.add(queue)
    db.session.flush()
    queue_box_user = make_mail_user("support")
    queue_box = make_mailbox(mailbox.server_profile, queue=queue, username=queue_box_user.username,
                             password=queue_box_user.password)
    anns = outgoing_email(ann, subject="Ann's")
    from_queue = outgoing_email(sam, subject="From support")
    from_queue.parties[0].set_party("queue", queue.id)
    from_queue.parties[0].address = queue.email
    db.session.commit()
    assert send_pending(mailbox.id, NOW).sent == 0  # neither is Sam's
    assert send_pending(queue_box.id, NOW).sent == 1
    msg = smtp_server.wait_for(1)[0]
    assert msg.mail_from == "support@contoso.example"
    assert msg.message["From"] == "Support <support@contoso.example>"
    db.session.expire_all()
    assert db.session.get(Email, anns.id).status == "pending_send"


def test_no_recipient_fails(app, sam, mailbox):
    mail = outgoing_email(sam)
    for party in [p for p in mail.parties if p.role == "to"]:
        mail.parties.remove(party)
    db.session.commit()
    assert send_pending(mailbox.id, NOW).failed == 1
    db.session.expire_all()
    assert "no recipient" in db.session.get(Email, mail.id).error


def test_queries_do_not_grow_with_parties_and_attachments(app, sam, mailbox, smtp_server):
    def statements_for(count: int) -> list[str]:
        for n in range(count):
            mail = outgoing_email(sam, subject=f"Batch {count}-{n}", cc="bo@customer.example")
            mail.attachments.append(Attachment(filename="a.txt", content_type="text/plain",
                                               size=1, content=b"a"))
        db.session.commit()
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - statement text
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert send_pending(mailbox.id, utcnow() + timedelta(days=1)).sent == count
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return seen

    def loads(statements, table):  # SELECTs reading the table (not an EXISTS in a filter)
        return sum(1 for s in statements if s.lstrip().startswith(f"SELECT {table}."))

    one, five = statements_for(1), statements_for(5)
    for table in ("activity_party", "attachment"):
        assert loads(five, table) == loads(one, table) == 1, table


def test_a_refused_smtp_sign_in_turns_outgoing_off_until_tested_again(
        app, sam, dovecot, mail_user, make_smtp_server):
    """The outgoing server refuses the mailbox's sign-in: outgoing email is turned off with
    an error alert, its email waits with no attempt used up, and mail is still read; no
    later visit signs in to the SMTP server again (each would be one more failed sign-in,
    and servers lock accounts out) until someone corrects it and tests the mailbox again,
    which sends what waited."""
    from server.sync.admin.testing import test_and_enable
    from server.sync.models import Alert, Mailbox
    from tests.sync.test_scheduler import work
    smtp = make_smtp_server(auth=(mail_user.username, "Another-pass-7"))
    box = make_mailbox(make_profile(dovecot=dovecot, smtp=smtp), user=sam,
                       username=mail_user.username, password=mail_user.password)
    assert test_and_enable(box).outgoing.ok is False
    box.outgoing_enabled, box.enabled = True, True  # it worked when it was set up
    mail = outgoing_email(sam)
    smtp.auth_attempts.clear()

    def visit():
        db.session.get(Mailbox, box.id).next_sync_on = utcnow() - timedelta(seconds=1)
        stats = work(app)
        db.session.expire_all()
        return stats, db.session.get(Mailbox, box.id)

    stats, row = visit()
    assert stats.runs == [(box.id, "success")]  # mail is read
    assert not row.outgoing_enabled and row.outgoing_status == "failure"
    assert [ok for _, ok in smtp.auth_attempts] == [False]
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id,
                                                  Alert.code == "send_failed"))
    assert alert.severity == "error" and "turned off" in alert.message
    waiting = db.session.get(Email, mail.id)
    assert waiting.status == "pending_send" and not waiting.delivery_attempts

    stats, row = visit()
    assert stats.runs == [(box.id, "success")] and len(smtp.auth_attempts) == 1

    smtp.auth = (mail_user.username, mail_user.password)  # put right on the server
    assert test_and_enable(row).enabled and row.outgoing_enabled
    db.session.commit()
    visit()
    assert db.session.get(Email, mail.id).status == "sent" and len(smtp.wait_for(1)) == 1
    assert db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id,
                                                 Alert.code == "send_failed",
                                                 Alert.acknowledged_on.is_(None))) is None
