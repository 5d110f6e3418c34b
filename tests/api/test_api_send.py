"""Sending email through the REST API (``POST /api/v1/activities/{id}/send``): the engine's
transitions only (draft and failed to pending send, everything else 409), the sender's
mailbox said in words when it cannot send, send-as with and without the privilege, CR/LF
header injection refused in every single-line field (generated), hostile HTML stored
sanitized, the mailbox woken at once, and the email really sent through aiosmtpd."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.crm.activities import Email
from server.crm.models import Organization, Queue
from server.db import db, utcnow
from server.security.bootstrap import root_unit
from server.security.models import SecuredField
from server.sync.engine.outgoing import send_pending
from server.sync.models import Mailbox
from server.sync.workers import scheduler
from tests.sync.mailboxes import make_mailbox, make_profile

from .conftest import error_of

pytestmark = pytest.mark.both_databases


def sending_profile(**fields):
    """A profile that sends (nothing here connects to it)."""
    values = dict(outgoing_protocol="smtp", outgoing_host="127.0.0.1", outgoing_port=2525)
    values.update(fields)
    return make_profile(**values)


@pytest.fixture
def api(api_client, seller):
    return api_client(seller)


@pytest.fixture
def seller_mailbox(app, seller):
    return make_mailbox(sending_profile(), user=seller, enabled=True,
                        next_sync_on=utcnow() + timedelta(hours=1))


def draft(api, **changes):
    body = {"type": "email", "subject": "Quote", "html_body": "<p>Hello</p>",
            "parties": [{"role": "to", "address": "ann@customer.example", "name": "Ann"}]}
    body.update(changes)
    r = api.post("/api/v1/activities", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_a_draft_is_sent_and_its_mailbox_woken_at_once(api, seller_mailbox):
    mail = draft(api)
    assert mail["status"] == "draft"
    assert not scheduler.claim("probe", 10)  # not due for an hour
    r = api.post(f"/api/v1/activities/{mail['id']}/send")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "pending_send"
    assert [lease.mailbox_id for lease in scheduler.claim("probe", 10)] == [seller_mailbox.id]
    # Sending again: the engine owns it now.
    r = api.post(f"/api/v1/activities/{mail['id']}/send", json={})
    assert r.status_code == 409 and "waiting to be sent" in error_of(r)["message"]
    r = api.patch(f"/api/v1/activities/{mail['id']}", json={"status": "draft"})
    assert r.status_code == 400 and "status" in error_of(r)["fields"]


def test_only_drafts_and_failed_emails_can_be_sent(api, seller_mailbox):
    mail = draft(api)
    for status in ("sending", "sent", "received", "pending_send"):
        row = db.session.get(Email, mail["id"])
        row.status = status
        db.session.commit()
        r = api.post(f"/api/v1/activities/{mail['id']}/send")
        assert r.status_code == 409, status
        assert error_of(r)["fields"] == {"status": status}
    row = db.session.get(Email, mail["id"])
    row.status, row.error, row.delivery_attempts = "failed", "550 no such user", 5
    db.session.commit()
    r = api.post(f"/api/v1/activities/{mail['id']}/send")  # Retry
    assert r.status_code == 200
    db.session.expire_all()
    row = db.session.get(Email, mail["id"])
    assert (row.status, row.error, row.delivery_attempts) == ("pending_send", None, 0)
    tracked = api.post("/api/v1/activities", json={
        "type": "email", "direction": "incoming", "subject": "Hi",
        "received_on": "2026-01-01T10:00:00Z", "message_id": "<in@customer.example>",
        "parties": [{"role": "from", "address": "ann@customer.example"}]}).get_json()
    assert api.post(f"/api/v1/activities/{tracked['id']}/send").status_code == 409
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "x"}).get_json()
    assert api.post(f"/api/v1/activities/{task['id']}/send").status_code == 409
    r = api.post(f"/api/v1/activities/{mail['id']}/send", json={"now": True})
    assert r.status_code == 400 and error_of(r)["fields"] == {"now": "Unknown field."}


def test_an_email_without_recipients_is_422(api, seller_mailbox):
    mail = draft(api, parties=[])
    r = api.post(f"/api/v1/activities/{mail['id']}/send")
    assert r.status_code == 422 and "parties" in error_of(r)["fields"]


@pytest.mark.parametrize("state, code, words", [
    ("none", "no_mailbox", "no mailbox"),
    ("outgoing_off", "outgoing_not_enabled", "Outgoing email is not enabled"),
    ("no_outgoing_server", "outgoing_not_enabled", "Outgoing email is not enabled"),
    ("not_approved", "not_approved", "not approved"),
    ("disabled", "not_enabled", "not enabled"),
])
def test_a_mailbox_that_cannot_send_says_why(api, seller, state, code, words):
    if state != "none":
        fields = {"outgoing_off": {"outgoing_method": "none"},
                  "not_approved": {"email_approved": False},
                  "disabled": {"enabled": False, "disabled_reason": "the password was refused"},
                  }.get(state, {})
        profile = make_profile() if state == "no_outgoing_server" else sending_profile()
        make_mailbox(profile, user=seller, **{"enabled": True, **fields})
    mail = draft(api)
    r = api.post(f"/api/v1/activities/{mail['id']}/send")
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "mailbox_cannot_send" and err["fields"] == {"mailbox": code}
    assert words in err["message"]
    if state == "disabled":
        assert "the password was refused" in err["message"]
    assert db.session.get(Email, mail["id"]).status == "draft"


def test_approval_is_not_needed_where_the_organization_does_not_ask(api, seller):
    make_mailbox(sending_profile(), user=seller, enabled=True, email_approved=False)
    db.session.get(Organization, 1).require_email_approval = False
    db.session.commit()
    assert api.post(f"/api/v1/activities/{draft(api)['id']}/send").status_code == 200


def test_unresolved_recipients_only_where_the_organization_allows(api, seller_mailbox):
    contact = api.post("/api/v1/contacts", json={"last_name": "Customer",
                                                 "email1": "ann@customer.example"}).get_json()
    db.session.get(Organization, 1).allow_unresolved_recipients = False
    db.session.commit()
    mail = draft(api, parties=[{"role": "to", "address": "ann@customer.example"},
                               {"role": "cc", "address": "stranger@else.example"}])
    r = api.post(f"/api/v1/activities/{mail['id']}/send")
    assert r.status_code == 422 and "stranger@else.example" in error_of(r)["message"]
    assert "ann@customer.example" not in error_of(r)["message"]
    known = draft(api, parties=[{"role": "to", "record": {"type": "contact",
                                                          "id": contact["id"]}}])
    assert api.post(f"/api/v1/activities/{known['id']}/send").status_code == 200


def test_sending_as_another_user_or_a_queue_needs_the_privilege(api_client, seller, seller2,
                                                                 admin, seller_mailbox):
    make_mailbox(sending_profile(), user=seller2, enabled=True)
    queue = Queue(name="Support", email="support@contoso.test", owner_user_id=admin.id,
                  owning_business_unit_id=root_unit().id)
    db.session.add(queue)
    db.session.flush()
    make_mailbox(sending_profile(), queue=queue, enabled=True)
    for user, allowed in ((seller, False), (admin, True)):
        client = api_client(user)
        for sender in ({"type": "user", "id": seller2.id}, {"type": "queue", "id": queue.id}):
            parties = [{"role": "from", "record": sender},
                       {"role": "to", "address": "ann@customer.example"}]
            mail = client.post("/api/v1/activities", json={
                "type": "email", "subject": "As other", "parties": parties}).get_json()
            r = client.post(f"/api/v1/activities/{mail['id']}/send")
            if allowed:
                assert r.status_code == 200, r.get_json()
            else:
                assert r.status_code == 403 and "parties" in error_of(r)["fields"]
                assert db.session.get(Email, mail["id"]).status == "draft"
    api = api_client(seller)
    # Another user's draft the caller may not write: 404 (not readable) or 403.
    mine = draft(api)
    assert api_client(seller2).post(f"/api/v1/activities/{mine['id']}/send").status_code in (403, 404)


def test_hostile_html_in_a_composed_body_is_stored_sanitized(api, seller_mailbox):
    mail = draft(api, html_body='<p onclick="steal()">Hi<script>alert(1)</script>'
                                '<img src="https://tracker.example/x.gif">'
                                '<a href="javascript:alert(2)">x</a></p>')
    body = api.get(f"/api/v1/activities/{mail['id']}").get_json()["html_body"]
    assert "script" not in body and "onclick" not in body and "javascript:" not in body
    assert "Hi" in body
    assert api.post(f"/api/v1/activities/{mail['id']}/send").status_code == 200


def test_a_secured_address_is_never_written_into_the_email_but_still_reached(
        app, api, seller, smtp_server):
    contact = api.post("/api/v1/contacts", json={"last_name": "Customer", "first_name": "Ann",
                                                 "email1": "ann@customer.example"}).get_json()
    db.session.add(SecuredField(table_name="contact", field="email1"))
    db.session.commit()
    mailbox = make_mailbox(make_profile(smtp=smtp_server), user=seller, enabled=True)
    mail = draft(api, parties=[{"role": "to", "record": {"type": "contact", "id": contact["id"]}}])
    party = next(x for x in mail["parties"] if x["role"] == "to")
    assert party["address"] is None and party["record"]["id"] == contact["id"]
    assert "ann@customer.example" not in str(mail)
    r = api.post(f"/api/v1/activities/{mail['id']}/send")
    assert r.status_code == 200 and "ann@customer.example" not in str(r.get_json())
    assert send_pending(mailbox.id).sent == 1
    assert list(smtp_server.wait_for(1)[0].rcpt_tos) == ["ann@customer.example"]


def test_a_secured_subject_cannot_be_set_on_a_draft(api, seller_mailbox):
    db.session.add(SecuredField(table_name="activity", field="subject"))
    db.session.commit()
    r = api.post("/api/v1/activities", json={
        "type": "email", "subject": "Quote",
        "parties": [{"role": "to", "address": "ann@customer.example"}]})
    assert r.status_code == 400 and "subject" in error_of(r)["fields"]


# -- header injection: CR/LF (and the other line breaks) in any single-line value -------------

BREAKS = st.sampled_from(["\r\n", "\n", "\r", "\u2028", "\x85"])
WORD = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(head=WORD, brk=BREAKS, tail=WORD, where=st.sampled_from(["subject", "name", "address"]))
def test_line_breaks_in_subject_names_and_addresses_are_refused(api, seller_mailbox, head,
                                                                brk, tail, where):
    value = f"{head}{brk}Bcc: {tail}"
    if where == "subject":
        body = {"type": "email", "subject": value,
                "parties": [{"role": "to", "address": "ann@customer.example"}]}
        field = "subject"
    else:
        party = {"role": "to", "address": "ann@customer.example", "name": "Ann"}
        party[where] = value if where == "name" else f"ann@customer.example{brk}Bcc: {tail}"
        body = {"type": "email", "subject": "Quote", "parties": [party]}
        field = f"parties[0].{where}"
    before = db.session.query(Email).count()
    r = api.post("/api/v1/activities", json=body)
    assert r.status_code == 400, (value, r.get_json())
    assert field in error_of(r)["fields"]
    mail = draft(api)
    r = api.patch(f"/api/v1/activities/{mail['id']}",
                  json={"subject": value} if where == "subject" else {"parties": body["parties"]})
    assert r.status_code == 400
    assert db.session.query(Email).count() == before + 1


def test_the_email_sent_through_the_api_arrives(app, api, seller, smtp_server, dovecot,
                                                 mail_user):
    profile = make_profile(dovecot=dovecot, smtp=smtp_server)
    mailbox = make_mailbox(profile, user=seller, enabled=True, username=mail_user.username,
                           password=mail_user.password)
    mail = draft(api, subject="Quote for Fabrikam",
                 parties=[{"role": "to", "address": "ann@customer.example", "name": "Ann"},
                          {"role": "bcc", "address": "boss@contoso.example"}])
    assert api.post(f"/api/v1/activities/{mail['id']}/send").status_code == 200
    assert send_pending(mailbox.id).sent == 1
    received = smtp_server.wait_for(1)[0]
    assert set(received.rcpt_tos) == {"ann@customer.example", "boss@contoso.example"}
    sent = api.get(f"/api/v1/activities/{mail['id']}").get_json()
    assert sent["status"] == "sent" and sent["sent_on"]
    assert received.message["Subject"] == f"Quote for Fabrikam {sent['tracking_token']}"
    assert received.message["Bcc"] is None
    assert db.session.get(Mailbox, mailbox.id).sync_requested is True


# -- reply, reply all, forward ------------------------------------------------------------------

def test_reply_reply_all_and_forward_through_the_api(app, api, seller, smtp_server):
    from server.crm.activities import Attachment
    from server.crm.templates import Signature
    mailbox = make_mailbox(make_profile(smtp=smtp_server), user=seller, enabled=True)
    contact = api.post("/api/v1/contacts", json={"last_name": "Customer", "first_name": "Ann",
                                                 "email1": "ann@customer.example"}).get_json()
    received = api.post("/api/v1/activities", json={
        "type": "email", "direction": "incoming", "subject": "RE: Re: Quote CRM:0000042",
        "received_on": "2026-01-01T10:00:00Z", "message_id": "<q2@customer.example>",
        "html_body": "<p>Send <b>it</b></p>",
        "regarding": {"type": "contact", "id": contact["id"]},
        "parties": [{"role": "from", "address": "ann@customer.example", "name": "Ann"},
                    {"role": "to", "address": seller.email},
                    {"role": "to", "address": "bo@customer.example"},
                    {"role": "cc", "address": "cy@customer.example"}]}).get_json()
    row = db.session.get(Email, received["id"])
    row.tracking_token = "CRM:0000042"
    row.references = "q1@customer.example"
    db.session.add(Attachment(activity_id=row.id, filename="spec.pdf", size=4, content=b"%PDF"))
    db.session.add(Signature(user_id=seller.id, body_html="<p>-- Sam, Contoso</p>"))
    db.session.commit()
    url = f"/api/v1/activities/{received['id']}/reply"

    r = api.post(url, json={"mode": "reply"})
    assert r.status_code == 201, r.get_json()
    reply = r.get_json()
    assert reply["status"] == "draft" and reply["subject"] == "RE: Quote CRM:0000042"
    assert [(x["role"], x["address"]) for x in reply["parties"] if x["role"] != "from"] == [
        ("to", "ann@customer.example")]
    assert reply["regarding"]["id"] == contact["id"]
    assert reply["parent_activity_id"] == received["id"]
    assert reply["tracking_token"] == "CRM:0000042"
    body = api.get(f"/api/v1/activities/{reply['id']}").get_json()["html_body"]
    assert body.index("-- Sam, Contoso") < body.index("Send <b>it</b>")
    assert "<blockquote>" in body

    everyone = api.post(url, json={"mode": "reply_all"}).get_json()
    assert sorted((x["role"], x["address"]) for x in everyone["parties"] if x["role"] != "from") \
        == [("cc", "cy@customer.example"), ("to", "ann@customer.example"),
            ("to", "bo@customer.example")]

    forward = api.post(url, json={"mode": "forward"}).get_json()
    assert forward["subject"] == "FW: Quote" and forward["tracking_token"] is None
    assert forward["parent_activity_id"] is None
    assert [a["filename"] for a in forward["attachments"]] == ["spec.pdf"]
    assert [x["role"] for x in forward["parties"]] == ["from"]

    assert api.post(url, json={"mode": "bounce"}).status_code == 400
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "x"}).get_json()
    assert api.post(f"/api/v1/activities/{task['id']}/reply",
                    json={"mode": "reply"}).status_code == 409

    assert api.post(f"/api/v1/activities/{reply['id']}/send").status_code == 200
    assert send_pending(mailbox.id).sent == 1
    msg = smtp_server.wait_for(1)[0].message
    assert msg["Subject"] == "RE: Quote CRM:0000042"
    assert msg["In-Reply-To"] == "<q2@customer.example>"
    assert msg["References"] == "<q1@customer.example> <q2@customer.example>"


def test_a_long_queue_is_sent_run_after_run_without_waiting_for_the_interval(
        app, api, seller, smtp_server):
    mailbox = make_mailbox(make_profile(smtp=smtp_server), user=seller, enabled=True)
    for n in range(3):
        assert api.post(f"/api/v1/activities/{draft(api, subject=f'Q{n}')['id']}/send") \
            .status_code == 200
    mailbox = db.session.get(Mailbox, mailbox.id)
    mailbox.sync_requested = False
    db.session.commit()
    assert send_pending(mailbox.id, limit=2).sent == 2
    assert db.session.get(Mailbox, mailbox.id).sync_requested is True  # due again at once
    db.session.get(Mailbox, mailbox.id).sync_requested = False
    db.session.commit()
    assert send_pending(mailbox.id, limit=2).sent == 1
    assert db.session.get(Mailbox, mailbox.id).sync_requested is False
    assert len(smtp_server.wait_for(3)) == 3
