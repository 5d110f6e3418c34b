"""Extra headers on outgoing email (``Email.internet_headers``): which are allowed and why
others are refused (pure), then a real send through aiosmtpd with the Sent copy on Dovecot,
both carrying them, and an email with a refused header failing with the reason and nothing
sent. (Graph and EWS: tests/sync/graph/test_engine_graph.py, tests/sync/ews/test_ews_engine.py.)"""
from __future__ import annotations

import email
import email.policy

import pytest

from server.crm.activities import Email
from server.db import db
from server.sync.engine.outgoing import build_mime, send_pending
from server.sync.mail.outgoing_headers import ACKNOWLEDGEMENT_HEADERS, checked_headers
from tests.sync.test_outgoing import NOW, mailbox, outgoing_email, sam, sample  # noqa: F401

HEADERS = [["Auto-Submitted", "auto-replied"], ["X-Auto-Response-Suppress", "All"],
           ["X-Regarding-Case", "CAS-01234-ABC123"]]


def test_allowed_headers_are_kept_with_their_usual_spelling():
    assert checked_headers([["auto-submitted", "auto-replied"], ["x-foo", " bar "]]) == \
        (("Auto-Submitted", "auto-replied"), ("x-foo", "bar"))
    assert checked_headers(None) == ()
    assert checked_headers([list(h) for h in ACKNOWLEDGEMENT_HEADERS]) == ACKNOWLEDGEMENT_HEADERS


@pytest.mark.parametrize("pairs, said", [
    ([["Subject", "x"]], "The header Subject cannot be added"),
    ([["Bcc", "spy@evil.example"]], "The header Bcc cannot be added"),
    ([["X-MS-Exchange-Organization-SCL", "-1"]], "cannot be added"),
    ([["X-Note", "one\r\nBcc: spy@evil.example"]], "printable ASCII on one line"),
    ([["X-Note", "é"]], "printable ASCII on one line"),
    ([["X-Note", "x" * 901]], "at most 900"),
    ([["X Note", "x"]], "is not a header name"),
    ([["X-Note", "a"], ["x-note", "b"]], "is given twice"),
    ([["X-Note"]], "must be a name and a value"),
    ([[f"X-N{n}", "v"] for n in range(11)], "at most 10 extra headers"),
])
def test_bad_headers_are_refused_with_the_reason(pairs, said):
    with pytest.raises(ValueError, match=said):
        checked_headers(pairs)
    with pytest.raises(ValueError, match=said):
        build_mime(sample(headers=tuple(tuple(p) for p in pairs)))


def test_the_headers_arrive_at_aiosmtpd_and_in_the_sent_copy_on_dovecot(
        app, sam, mailbox, smtp_server, dovecot, mail_user):  # noqa: F811
    mail = outgoing_email(sam, internet_headers=HEADERS)
    assert send_pending(mailbox.id, NOW).sent == 1
    received = smtp_server.wait_for(1)[0].message
    assert received["Auto-Submitted"] == "auto-replied"
    assert received["X-Auto-Response-Suppress"] == "All"
    assert received["X-Regarding-Case"] == "CAS-01234-ABC123"
    with dovecot.imap_client(mail_user) as imap:
        imap.select_folder("Sent")
        [uid] = imap.search("ALL")
        header = imap.fetch([uid], ["BODY.PEEK[HEADER]"])[uid][b"BODY[HEADER]"]
    copy = email.message_from_bytes(header, policy=email.policy.default)
    assert copy["Auto-Submitted"] == "auto-replied" and copy["X-Auto-Response-Suppress"] == "All"
    assert copy["Message-ID"] == f"<{db.session.get(Email, mail.id).message_id}>"


def test_an_email_with_a_refused_header_fails_with_the_reason_and_nothing_is_sent(
        app, sam, mailbox, smtp_server):  # noqa: F811
    mail = outgoing_email(sam, internet_headers=[["Bcc", "spy@evil.example"]])
    assert send_pending(mailbox.id, NOW).as_dict() == {"sent": 0, "retrying": 0, "failed": 1}
    db.session.expire_all()
    mail = db.session.get(Email, mail.id)
    assert mail.status == "failed" and "The header Bcc cannot be added" in mail.error
    assert smtp_server.messages == []
