"""Tracking an email: idempotent by Message-ID, parties resolved, sanitized body, attachments
over the limit kept as metadata, pending requests completed by token, untrack."""
import pytest
from server.crm.services import tracked, tracking
from server.crm.services.tracking import EmailContent, AttachmentContent
from server.crm.registry import RECORD_TYPES
from server.crm.services import records
from server.security import authz
from server.db import db

def test_track(app, make_user):
    u = make_user(roles=["Salesperson"])
    p = authz.principal(u)
    acc = records.create(p, RECORD_TYPES["account"], {"name": "Fabrikam", "email1": "info@fabrikam.example"})
    c = EmailContent(message_id="<A1@Fabrikam.Example>", subject="Hello", from_=("Info", "info@fabrikam.example"),
                     to=[(u.full_name, u.email)], html_body="<p>Hi<script>x</script></p>",
                     attachments=[AttachmentContent("a.txt", "text/plain", b"abc", 3), AttachmentContent("big.bin", "application/octet-stream", b"x"*10, 6_000_000)])
    e, created = tracking.track_email(p, c, regarding=("account", acc.id))
    db.session.commit()
    assert created and e.message_id == "A1@fabrikam.example" and "script" not in e.html_body
    assert [pp.party_ref for pp in e.parties] == [("account", acc.id), ("user", u.id)]
    assert e.attachments[1].content_omitted and not e.attachments[0].content_omitted
    e2, created2 = tracking.track_email(p, c)
    assert e2.id == e.id and not created2
    st = tracked.tracking_status(p, "<A1@FABRIKAM.example>")
    assert st.status == "tracked" and st.regarding == ("account", acc.id)
    req = tracking.request_tracking(p, "<draft1@x.example>", subject="Quote", regarding=("account", acc.id))
    assert req.tracking_token.startswith("CRM:")
    assert tracked.tracking_status(p, "draft1@x.example").status == "pending"
    e3, _ = tracking.track_email(p, EmailContent(message_id="draft1@x.example", subject="Quote "+req.tracking_token, from_=(u.full_name,u.email), to=[("", "info@fabrikam.example")], text_body="q"))
    assert e3.regarding_ref == ("account", acc.id) and e3.direction == "outgoing"
    assert tracking.untrack(p, "A1@fabrikam.example", delete_copy=False) is False
    assert tracked.tracking_status(p, "A1@fabrikam.example").status == "not_tracked"


@pytest.mark.both_databases
def test_track_emails_answers_requests_from_one_read_or_from_the_callers(app, make_user):
    """``track_emails`` reads the open track requests naming its emails once (the user's
    Untrack marks and everyone's pending requests, ``tracked.open_requests``); a caller
    that read them already (the sync engine's wave) hands them on and nothing is read again,
    unless they do not name every email (then they are read, and the answer is the same)."""
    from sqlalchemy import event
    u = make_user(roles=["Salesperson"])
    p = authz.principal(u)
    acc = records.create(p, RECORD_TYPES["account"], {"name": "Fabrikam"})

    def reads(call) -> int:
        said = []

        def listen(conn, cursor, statement, parameters, context, executemany):
            if "FROM track_request" in statement and statement.lstrip().upper().startswith("SELECT"):
                said.append(statement)
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            call()
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        return len(said)

    def item(mid: str, subject: str = "Quote") -> tracking.EmailTrack:
        return tracking.EmailTrack(EmailContent(message_id=mid, subject=subject,
                                                from_=("Info", "info@fabrikam.example"),
                                                text_body="q"), owner=u)
    asked = [tracking.request_tracking(p, f"<asked{n}@x.example>", regarding=("account", acc.id))
             for n in range(3)]
    db.session.commit()
    assert reads(lambda: tracking.track_emails(p, [item("asked0@x.example")])) == 1
    given = tracked.open_requests(["asked1@x.example"], [])
    assert reads(lambda: tracking.track_emails(p, [item("asked1@x.example")],
                                               requests=given)) == 0
    elsewhere = tracked.open_requests(["other@x.example"], [])  # names another email
    assert reads(lambda: tracking.track_emails(p, [item("asked2@x.example")],
                                               requests=elsewhere)) == 1
    db.session.commit()
    for req in asked:
        db.session.refresh(req)
        assert req.status == "done" and req.activity_id is not None
        assert req.activity.regarding_ref == ("account", acc.id)
