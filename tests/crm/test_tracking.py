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
