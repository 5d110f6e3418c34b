"""The compose pages (Flask test client): compose from a record page with its readable
address prefilled and the user's signature, type-ahead without secured addresses, Send with
the mailbox woken, attachments within the organization's limit, templates applied (unknown
placeholders listed, nothing saved), a mailbox that cannot send said before writing, reply
from an email's page, Retry of a failed email and its state as JSON, CSRF on every form."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.crm.models import Organization
from server.crm.templates import EmailTemplate, Signature
from server.db import db
from server.security.models import SecuredField
from server.sync.models import Mailbox
from tests.sync.mailboxes import make_mailbox, make_profile


@pytest.fixture
def sam(make_user):
    return make_user("sam@contoso.test", name="Sam Seller")


@pytest.fixture
def ready(sam):
    profile = make_profile(outgoing_protocol="smtp", outgoing_host="127.0.0.1", outgoing_port=2525)
    return make_mailbox(profile, user=sam, enabled=True)


@pytest.fixture
def yvonne(sam, make_record):
    return make_record(sam, "contact")  # Yvonne McKay <yvonne@contoso.example>


def test_compose_from_a_contact_page_and_send(sam, ready, yvonne, signin):
    db.session.add(Signature(user_id=sam.id, body_html="<p>-- Sam</p>"))
    db.session.commit()
    c = signin(sam)
    record_page = c.get(f"/r/contact/{yvonne.id}").get_data(as_text=True)
    assert f'/compose?regarding=contact:{yvonne.id}' in record_page.replace("%3A", ":")
    page = c.get(f"/compose?regarding=contact:{yvonne.id}").get_data(as_text=True)
    assert 'value="Yvonne McKay &lt;yvonne@contoso.example&gt;"' in page
    assert "-- Sam" in page and "cannot-send" not in page
    assert 'name="regarding" value="contact:' in page
    r = c.post("/compose", data={
        "regarding": f"contact:{yvonne.id}", "to": "Yvonne McKay <yvonne@contoso.example>",
        "cc": "other@else.example", "subject": "Your quote", "action": "send",
        "html_body": '<p onclick="x()">Hello<script>alert(1)</script></p>',
        "attachments": (io.BytesIO(b"%PDF-1.4 quote"), "quote.pdf")},
        content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)
    email = db.session.scalar(select(Email))
    assert r.headers["Location"].endswith(f"/activities/{email.id}")
    assert email.status == "pending_send" and email.regarding_ref == ("contact", yvonne.id)
    assert "script" not in email.html_body and "onclick" not in email.html_body
    assert [a.filename for a in email.attachments] == ["quote.pdf"]
    assert {(p.role, p.address, p.party_ref) for p in email.parties} == {
        ("from", sam.email, ("user", sam.id)),
        ("to", "yvonne@contoso.example", ("contact", yvonne.id)),
        ("cc", "other@else.example", None)}
    assert db.session.get(Mailbox, ready.id).sync_requested is True
    detail = c.get(f"/activities/{email.id}").get_data(as_text=True)
    assert 'data-status="pending_send"' in detail and "Waiting to be sent" in detail
    assert c.get(f"/activities/{email.id}/send-state").get_json() == {
        "status": "pending_send", "label": "Waiting to be sent", "sent_on": None,
        "error": None, "retry": False, "final": False}


def test_bad_input_is_refused_and_the_draft_kept(sam, ready, signin):
    c = signin(sam)
    r = c.post("/compose", data={"to": "nope", "subject": "x", "action": "send"})
    assert r.status_code == 400 and "Not a valid email address" in r.get_data(as_text=True)
    r = c.post("/compose", data={"to": "a@b.example", "subject": "Hi\r\nBcc: x@evil.example",
                                 "action": "send"})
    assert r.status_code == 400 and "no line breaks" in r.get_data(as_text=True)
    assert db.session.scalar(select(Email)) is None
    db.session.get(Organization, 1).attachment_max_bytes = 10
    db.session.commit()
    r = c.post("/compose", data={"to": "a@b.example", "subject": "Big", "action": "send",
                                 "attachments": (io.BytesIO(b"x" * 11), "big.bin")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "big.bin is larger than" in r.get_data(as_text=True)
    assert db.session.scalar(select(Email)) is None


@pytest.mark.parametrize("state, words", [
    ("none", "no mailbox"), ("off", "Outgoing email is not enabled"),
    ("unapproved", "is not approved"), ("disabled", "is not enabled")])
def test_a_user_whose_mailbox_cannot_send_is_told_before_writing(sam, signin, state, words):
    if state != "none":
        fields = {"off": {"outgoing_method": "none", "enabled": True},
                  "unapproved": {"email_approved": False, "enabled": True},
                  "disabled": {"enabled": False}}[state]
        make_mailbox(make_profile(outgoing_protocol="smtp", outgoing_host="h", outgoing_port=25),
                     user=sam, **fields)
    c = signin(sam)
    page = c.get("/compose").get_data(as_text=True)
    assert 'id="cannot-send"' in page and words in page
    assert 'id="send" disabled' in page
    # Sending anyway keeps the draft and says why.
    r = c.post("/compose", data={"to": "a@b.example", "subject": "Hi", "action": "send"})
    assert r.status_code == 422 and words in r.get_data(as_text=True)
    email = db.session.scalar(select(Email))
    assert email.status == "draft" and email.subject == "Hi"


def test_type_ahead_leaves_secured_addresses_out(sam, yvonne, make_user, make_record, signin):
    make_user("yves@contoso.test", name="Yves User")
    c = signin(sam)
    items = c.get("/compose/suggest?q=yv").get_json()["items"]
    assert {(i["kind"], i["address"]) for i in items} == {
        ("contact", "yvonne@contoso.example"), ("user", "yves@contoso.test")}
    assert c.get("/compose/suggest?q=y").get_json() == {"items": []}
    db.session.add(SecuredField(table_name="contact", field="email1"))
    db.session.commit()
    c = signin(sam)
    assert [i["kind"] for i in c.get("/compose/suggest?q=yv").get_json()["items"]] == ["user"]
    assert c.get("/compose/suggest?q=contoso.example").get_json() == {"items": []}
    page = c.get(f"/compose?regarding=contact:{yvonne.id}").get_data(as_text=True)
    assert "yvonne@contoso.example" not in page


def test_templates_fill_subject_and_body_and_report_unknown_placeholders(
        sam, ready, yvonne, signin):
    good = EmailTemplate(name="Quote", subject="Quote for {{ recipient.name }}",
                         body_html="<p>Dear {{ recipient.first_name }},</p>", user_id=sam.id)
    bad = EmailTemplate(name="Bad", subject="Hi", body_html="{{ recipient.shoe_size }}")
    db.session.add_all([good, bad])
    db.session.commit()
    c = signin(sam)
    form = {"to": "yvonne@contoso.example", "subject": "", "html_body": "",
            "regarding": f"contact:{yvonne.id}", "action": "template"}
    r = c.post("/compose", data={**form, "template": good.id})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and 'value="Quote for Yvonne McKay"' in page, page[page.find("flash"):][:600]
    assert "Dear Yvonne," in page
    r = c.post("/compose", data={**form, "template": bad.id})
    assert r.status_code == 422 and "{{ recipient.shoe_size }}" in r.get_data(as_text=True)
    assert db.session.scalar(select(Email)) is None


def test_template_and_signature_pages(sam, make_user, signin):
    c = signin(sam)
    r = c.post("/email/templates/new", data={"name": "Mine", "subject": "Hi {{ recipient.name }}",
                                             "body_html": "<p>{{ sender.name }}</p>"})
    assert r.status_code == 302
    mine = db.session.scalar(select(EmailTemplate))
    assert mine.user_id == sam.id
    r = c.post("/email/templates/new", data={"name": "Bad", "subject": "x",
                                             "body_html": "{% for x in y %}{% endfor %}"})
    assert r.status_code == 400 and "not for" in r.get_data(as_text=True)
    r = c.post("/email/templates/new?scope=organization", data={"name": "Org", "subject": "x",
                                                                "body_html": ""})
    assert r.status_code == 403
    boss = make_user("boss@contoso.test", roles=["System Administrator"])
    b = signin(boss)
    assert b.post("/email/templates/new", data={"name": "Org", "scope": "organization",
                                                "subject": "x", "body_html": ""}).status_code == 302
    assert b.get(f"/email/templates/{mine.id}").status_code == 404  # someone else's own
    listed = c.get("/email/templates").get_data(as_text=True)
    assert "Mine" in listed and "Org" in listed
    org_template = db.session.scalar(select(EmailTemplate).where(EmailTemplate.user_id.is_(None)))
    assert c.post(f"/email/templates/{org_template.id}/delete").status_code == 403
    assert c.post(f"/email/templates/{mine.id}/delete").status_code == 302
    assert db.session.get(EmailTemplate, org_template.id) is not None
    assert c.post("/email/signature", data={"body_html": "<p>Sam<script>x</script></p>"}) \
        .status_code == 302
    assert db.session.scalar(select(Signature.body_html)) == "<p>Sam</p>"


def test_reply_from_an_email_page_and_retry_a_failed_one(sam, ready, yvonne, make_email, signin):
    received = make_email(sam, regarding=("contact", yvonne.id), subject="Re: Question",
                          html="<p>Can you?</p>", message_id="q@customer.example",
                          parties=[("from", "yvonne@contoso.example", "Yvonne", ("contact", yvonne.id)),
                                   ("to", sam.email, "Sam", None)])
    c = signin(sam)
    page = c.get(f"/activities/{received.id}").get_data(as_text=True)
    assert "Reply all" in page and "Forward" in page
    r = c.post(f"/activities/{received.id}/answer", data={"mode": "reply"})
    assert r.status_code == 302
    reply = db.session.scalar(select(Email).where(Email.status == "draft"))
    assert r.headers["Location"].endswith(f"/compose/{reply.id}")
    page = c.get(f"/compose/{reply.id}").get_data(as_text=True)
    assert 'value="RE: Question"' in page and "Yvonne &lt;yvonne@contoso.example&gt;" in page
    assert reply.parent_activity_id == received.id and reply.regarding_ref == ("contact", yvonne.id)
    r = c.post(f"/compose/{reply.id}", data={"to": "Yvonne <yvonne@contoso.example>",
                                             "subject": "RE: Question", "html_body": "<p>Yes</p>",
                                             "action": "send"})
    assert r.status_code == 302
    db.session.expire_all()
    reply = db.session.get(Email, reply.id)
    assert reply.status == "pending_send"
    assert c.get(f"/compose/{reply.id}").status_code == 404  # no longer a draft
    reply.status, reply.error = "failed", "550 5.1.1 No such user"
    db.session.commit()
    page = c.get(f"/activities/{reply.id}").get_data(as_text=True)
    assert "Not sent" in page and "550 5.1.1 No such user" in page and 'id="retry"' in page
    assert c.post(f"/activities/{reply.id}/send").status_code == 302
    db.session.expire_all()
    assert db.session.get(Email, reply.id).status == "pending_send"
    assert c.post(f"/activities/{reply.id}/send").status_code == 409


def test_forms_need_the_csrf_token(app, sam, ready, signin):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        c = signin  # the sign-in form itself needs a token now: sign in with CSRF off first
        app.config["WTF_CSRF_ENABLED"] = False
        client = c(sam)
        app.config["WTF_CSRF_ENABLED"] = True
        for path in ("/compose", "/email/templates/new", "/email/signature"):
            r = client.post(path, data={"to": "a@b.example", "subject": "x", "name": "x"})
            assert r.status_code == 400, path
            assert "form expired" in r.get_data(as_text=True)
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert db.session.scalar(select(Email)) is None
