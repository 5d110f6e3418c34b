"""Sync alerts by email, end to end: a mailbox whose password is wrong (Dovecot) raises an
error alert, the digest is queued from the "alerts from" mailbox and sent by the outgoing
engine through aiosmtpd; a repeat of the same alert is not emailed again, the preference
"none" suppresses it, a digest waits for the throttle, and the email holds no secret."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.db import db, utcnow
from server.sync.admin import alert_mail
from server.sync.engine import alerts
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert
from server.sync.engine.outgoing import send_pending
from tests.sync import world as w
from tests.sync.mailboxes import make_mailbox, make_profile

WRONG = "not-the-Pa55word"


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


@pytest.fixture
def sender(app, make_user, smtp_server):
    """The "alerts from" mailbox: a user's, sending through aiosmtpd."""
    robot = make_user("crm-alerts@org.example", name="CRM Alerts")
    profile = make_profile(smtp=smtp_server, incoming_protocol="maildir")
    box = make_mailbox(profile, user=robot, enabled=True)
    app.config["REGARDING_ALERTS_FROM"] = "CRM-Alerts@org.example"
    app.config["REGARDING_BASE_URL"] = "https://crm.org.example"
    return box


def failing_mailbox(crm, dovecot, mail_user):
    store = w.ImapStore(dovecot, mail_user)
    return w.store_mailbox(store, crm.bob, password=WRONG)


def deliver_and_send(sender, now=None) -> int:
    queued = alert_mail.deliver(now)
    send_pending(sender.id, now)
    return queued


@pytest.mark.both_databases  # the claim's compare-and-set on PostgreSQL too
def test_an_authentication_failure_emails_the_owner_once(app, crm, sender, smtp_server,
                                                         dovecot, mail_user, make_user, signin):
    admin = make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")
    box = failing_mailbox(crm, dovecot, mail_user)
    assert sync_mailbox(box.id).error_code == "auth_failed"

    assert deliver_and_send(sender) == 2  # the owner and the administrator
    received = smtp_server.wait_for(2)
    assert sorted(m.rcpt_tos for m in received) == [("ada@org.example",), ("bob@org.example",)]
    to_bob = next(m for m in received if m.rcpt_tos == ("bob@org.example",))
    msg = to_bob.message
    assert msg["From"] == "CRM Alerts <crm-alerts@org.example>"
    assert msg["Subject"].startswith("Email synchronization: 1 error")  # + the org's token
    body = msg.get_body(("plain",)).get_content()
    assert mail_user.username in body and "turned off" in body  # the mailbox's address
    assert "https://crm.org.example/admin/sync/my" in body
    assert all(WRONG not in m.data.decode() for m in received)
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))
    assert alert.emailed_on is not None
    assert "· emailed" in signin(admin).get("/admin/sync/").get_data(as_text=True)
    email = db.session.scalar(select(Email).where(Email.to_recipients == "bob@org.example"))
    assert email.status == "sent" and email.owner_user_id == sender.user_id

    # The same alert again (the mailbox re-enabled, still the wrong password), even long
    # after the throttle: not emailed again.
    box.enabled = True
    db.session.commit()
    assert sync_mailbox(box.id).error_code == "auth_failed"
    later = utcnow() + timedelta(hours=3)
    assert deliver_and_send(sender, later) == 0
    assert len(smtp_server.messages) == 2

    # Cleared, then raised again: a new alert, emailed.
    alerts.clear("auth_failed", box)
    box.enabled = True
    db.session.commit()
    sync_mailbox(box.id)
    assert deliver_and_send(sender, utcnow() + timedelta(hours=6)) == 2
    assert len(smtp_server.wait_for(4)) == 4


def test_the_preference_none_suppresses_it(app, crm, sender, smtp_server, dovecot, mail_user):
    crm.bob.alert_emails = "none"
    db.session.commit()
    box = failing_mailbox(crm, dovecot, mail_user)
    sync_mailbox(box.id)
    assert deliver_and_send(sender) == 0
    assert smtp_server.messages == []
    assert db.session.scalar(select(Email.id).where(Email.status == "pending_send")) is None


def test_warnings_only_for_those_who_ask_and_admins_get_every_mailbox(
        app, crm, sender, make_user, smtp_server):
    admin = make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")
    admin.alert_emails = "warnings"
    db.session.commit()
    box = w.mailbox(crm.bob)
    alerts.raise_alert("warning", "sync_failed", "Synchronization of bob@org.example failed: "
                       "the server did not answer.", box)
    db.session.commit()
    assert deliver_and_send(sender) == 1  # Ada (warnings); Bob has errors only
    received = smtp_server.wait_for(1)
    assert received[0].rcpt_tos == ("ada@org.example",)
    assert "https://crm.org.example/admin/sync/" in received[0].message.get_body(
        ("plain",)).get_content()


@pytest.mark.both_databases
def test_a_second_alert_waits_for_the_digest(app, crm, sender, smtp_server):
    app.config["REGARDING_ALERT_EMAIL_MINUTES"] = 30
    box = w.mailbox(crm.bob)
    alerts.raise_alert("error", "auth_failed", "Synchronization of bob@org.example was turned "
                       "off: the sign-in was refused.", box)
    db.session.commit()
    start = utcnow()
    assert deliver_and_send(sender, start) == 1
    alerts.raise_alert("error", "sync_fatal", "Synchronization of bob@org.example was turned "
                       "off: the Inbox is missing.", box)
    alerts.raise_alert("warning", "folder_failed", "Some folders could not be read.", box)
    db.session.commit()
    soon = utcnow() + timedelta(minutes=10)
    assert deliver_and_send(sender, soon) == 0  # within the 30 minutes
    assert deliver_and_send(sender, start + timedelta(minutes=31)) == 1
    digest = smtp_server.wait_for(2)[1].message
    body = digest.get_body(("plain",)).get_content()
    assert digest["Subject"].startswith("Email synchronization: 1 error CRM:")  # no warning
    assert "Inbox is missing" in body and "sign-in was refused" not in body


def test_a_warning_that_becomes_an_error_is_emailed_again(app, crm, sender, smtp_server):
    crm.bob.alert_emails = "warnings"
    db.session.commit()
    box = w.mailbox(crm.bob)
    alerts.raise_alert("warning", "sync_failed", "Attempt 1 of 10 failed.", box)
    db.session.commit()
    assert deliver_and_send(sender) == 1
    alerts.raise_alert("warning", "sync_failed", "Attempt 2 of 10 failed.", box)
    db.session.commit()
    assert deliver_and_send(sender, utcnow() + timedelta(hours=2)) == 0
    alerts.raise_alert("error", "sync_failed", "Failed 10 times and was turned off.", box)
    db.session.commit()
    assert deliver_and_send(sender, utcnow() + timedelta(hours=4)) == 1
    assert "turned off" in smtp_server.wait_for(2)[1].message.get_body(("plain",)).get_content()


def test_nothing_is_queued_without_a_sender_and_sending_failures_stay_in_outgoing(
        app, crm, sender, smtp_server):
    box = w.mailbox(crm.bob)
    alerts.raise_alert("error", "auth_failed", "The sign-in was refused.", box)
    db.session.commit()
    app.config["REGARDING_ALERTS_FROM"] = "nobody@org.example"
    assert alert_mail.deliver() == 0
    app.config["REGARDING_ALERTS_FROM"] = "crm-alerts@org.example"
    smtp_server.fail_next(1, code=451)
    assert alert_mail.deliver() == 1
    counts = send_pending(sender.id)
    assert counts.retrying == 1 and smtp_server.messages == []
    email = db.session.scalar(select(Email).where(Email.to_recipients == "bob@org.example"))
    assert email.status == "pending_send" and "451" in email.error
    assert send_pending(sender.id, utcnow() + timedelta(minutes=2)).sent == 1
    assert smtp_server.wait_for(1)[0].rcpt_tos == ("bob@org.example",)


def test_the_worker_emails_an_authentication_failure_it_meets(app, crm, make_user, tmp_path,
                                                              smtp_server, dovecot, mail_user):
    """The whole path in a worker: the failing run raises the alert, the worker queues the
    digest and makes the sending mailbox due, whose run sends it."""
    from server.sync.workers.worker import run_worker
    robot = make_user("crm-alerts@org.example", name="CRM Alerts")
    store = w.MaildirStore(tmp_path / "store", "crm-alerts@org.example")
    prof = w.profile("maildir", outgoing_protocol="smtp", outgoing_host=smtp_server.host,
                     outgoing_port=smtp_server.port, outgoing_security="none",
                     settings={"timeout": 10}, **store.profile_fields())
    sender = w.mailbox(robot, prof=prof, next_sync_on=utcnow() + timedelta(hours=1))
    box = failing_mailbox(crm, dovecot, mail_user)
    box.next_sync_on = utcnow()
    app.config["REGARDING_ALERTS_FROM"] = sender.email_address
    db.session.commit()
    stats = run_worker(app, worker_id="alerts-test", concurrency=1, push=False,
                       until_idle=True)
    assert stats.sent == 1
    assert smtp_server.wait_for(1)[0].rcpt_tos == ("bob@org.example",)


def test_a_failure_to_queue_alert_email_never_breaks_the_sync(app, crm, sender, smtp_server,
                                                             dovecot, mail_user, caplog):
    from server.sync.workers.worker import run_worker
    app.config["REGARDING_ALERT_EMAIL_MINUTES"] = "soon"  # deliver() raises on it
    sender.next_sync_on = utcnow() + timedelta(hours=1)
    box = failing_mailbox(crm, dovecot, mail_user)
    box.next_sync_on = utcnow()
    db.session.commit()
    stats = run_worker(app, worker_id="alerts-test", concurrency=1, push=False,
                       until_idle=True)
    assert stats.runs == [(box.id, "failure")] and stats.errors == 0
    assert "alert emails not queued" in caplog.text
    db.session.expire_all()
    assert db.session.scalar(select(Alert.code).where(Alert.mailbox_id == box.id)) == "auth_failed"
    assert smtp_server.messages == []


def test_the_preference_page(app, crm, signin):
    c = signin(crm.bob)
    page = c.get("/admin/sync/alert-emails").get_data(as_text=True)
    assert 'value="errors" checked' in page and "does not email them" in page
    assert c.post("/admin/sync/alert-emails", data={"alert_emails": "bogus"}).status_code == 422
    assert c.post("/admin/sync/alert-emails", data={"alert_emails": "none"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(type(crm.bob), crm.bob.id).alert_emails == "none"
