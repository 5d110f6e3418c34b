"""The identity of mail without a Message-ID through the pipeline: recipients and
attachments tell two messages apart, and mail tracked under the earlier hash (sender, date,
subject and body only) is recognized when it is synced again, not tracked twice."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from server.crm.activities import Email
from server.db import db
from server.sync.mail.message import parse
from server.sync.models import MessageDecision
from tests.sync import world as w

pytestmark = pytest.mark.both_databases


@pytest.fixture
def crm(app, make_user):
    crm = w.build_crm(make_user)
    crm.box = w.mailbox(crm.bob, tracking_option="all")
    crm.carol_box = w.mailbox(crm.carol, tracking_option="all")
    db.session.commit()
    return crm


def _without_message_id(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Message-ID"))


def _with_attachment(name: str, content: bytes) -> bytes:
    import base64
    body = (b"--b\r\nContent-Type: text/plain\r\n\r\nSame text.\r\n--b\r\n"
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=" + name.encode()
            + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(content) + b"\r\n--b--\r\n")
    return _without_message_id(w.raw(subject="Same", body=body.decode(), extra=[
        ("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=b")]))


def test_same_text_to_other_recipients_is_another_email(crm):
    one = w.put(crm.box, _without_message_id(w.raw(to="bob@org.example", subject="Same")))
    two = w.put(crm.box, _without_message_id(w.raw(to="bob@org.example, dan@x.example",
                                                   subject="Same")))
    assert one.created and two.created and one.identity != two.identity
    assert one.activity_id != two.activity_id


def test_same_text_with_other_attachments_is_another_email(crm):
    one = w.put(crm.box, _with_attachment("a.pdf", b"%PDF-1 first"))
    two = w.put(crm.box, _with_attachment("a.pdf", b"%PDF-1 second"))
    again = w.put(crm.box, _with_attachment("a.pdf", b"%PDF-1 first"))
    assert one.created and two.created and one.activity_id != two.activity_id
    assert not again.created and again.activity_id == one.activity_id


def test_mail_tracked_under_the_earlier_hash_is_not_tracked_twice(crm):
    data = _with_attachment("quote.pdf", b"%PDF-1 quote")
    msg = parse(data)
    assert msg.content_hash != msg.legacy_content_hash
    first = w.put(crm.box, data)
    assert first.created and first.identity == f"sha256:{msg.content_hash}"
    # As an earlier version stored it: the email and its decision under the earlier hash.
    legacy = f"sha256:{msg.legacy_content_hash}"
    db.session.execute(update(Email).where(Email.id == first.activity_id).values(
        message_id=legacy, dedupe_key=legacy))
    db.session.execute(update(MessageDecision).where(MessageDecision.identity == first.identity)
                       .values(identity=legacy))
    db.session.commit()
    again, elsewhere = w.put(crm.box, data), w.put(crm.carol_box, data)
    for outcome in (again, elsewhere):
        assert outcome.identity == legacy and not outcome.created
        assert outcome.activity_id == first.activity_id
    assert len(db.session.scalars(select(Email).where(Email.subject == "Same")).all()) == 1
    assert w.decision(crm.box, legacy) is not None and w.decision(crm.box, first.identity) is None


def test_a_decision_under_the_earlier_hash_stays_the_one_answer(crm):
    crm.box.tracking_option = "none"
    data = _with_attachment("memo.pdf", b"%PDF-1 memo")
    msg = parse(data)
    first = w.put(crm.box, data)
    assert not first.tracked
    legacy = f"sha256:{msg.legacy_content_hash}"
    db.session.execute(update(MessageDecision).where(MessageDecision.identity == first.identity)
                       .values(identity=legacy))
    db.session.commit()
    again = w.put(crm.box, data)
    assert again.identity == legacy and not again.tracked
    assert db.session.scalars(select(MessageDecision.identity)).all() == [legacy]
