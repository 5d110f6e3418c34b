"""Batches through the engine (``server.sync.engine.batch``): written in bulk, one poison message
never loses the others, the category written with one STORE per batch, replies inside a
batch still find their parent, and latency counted from when mail became visible."""
from __future__ import annotations

from datetime import timedelta

import pytest
from imapclient import IMAPClient
from sqlalchemy import event, select

from server.crm.services import tracking
from server.db import db, utcnow
from server.sync.engine.run import sync_mailbox
from server.sync.models import MessageDecision, QuarantinedMessage
from tests.sync import world as w


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def _count_statements(prefix: str) -> tuple[list[int], object]:
    seen = [0]

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(prefix):
            seen[0] += 1
    return seen, count


def test_a_batch_is_written_in_bulk(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(20):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"bulk{n}@x.example",
                            subject=f"Order {n}", Cc="Ann Customer <ann@customer.example>"))
    seen, count = _count_statements("INSERT INTO ACTIVITY_PARTY")
    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = sync_mailbox(box.id, limit=50)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert result.tracked == 20 and w.count_emails() == 20
    # 60 parties (from, to, cc of 20 emails) in a few multi-row INSERTs, not 60 statements.
    assert seen[0] <= 3
    ann = [p for e in w.emails() for p in e.parties if p.address == "ann@customer.example"]
    assert len(ann) == 20 and all(p.party_ref == ("contact", crm.ann.id) for p in ann)


def test_one_poison_message_is_quarantined_and_the_rest_of_its_batch_tracked(crm, tmp_path,
                                                                              monkeypatch):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(5):
        body = "Hello there.\r\n"
        extra = None
        if n == 2:  # an attachment the store refuses (fault injection below)
            extra = [("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=p")]
            body = ("--p\r\nContent-Type: text/plain\r\n\r\nSee file.\r\n--p\r\n"
                    "Content-Type: application/octet-stream; name=poison.bin\r\n\r\nPOISON\r\n--p--\r\n")
        store.deliver(w.raw(mid=f"b{n}@x.example", subject=f"Batch {n}", body=body, extra=extra))
    real = tracking._stored

    def stored(digest, content):
        if content == b"POISON":
            raise RuntimeError("the attachment store refused it")
        return real(digest, content)

    monkeypatch.setattr(tracking, "_stored", stored)
    result = sync_mailbox(box.id, limit=10)
    assert result.status == "success"
    assert (result.fetched, result.tracked, result.quarantined) == (5, 4, 1)
    assert sorted(e.message_id for e in w.emails()) == [f"b{n}@x.example" for n in (0, 1, 3, 4)]
    row = db.session.scalar(select(QuarantinedMessage))
    assert row.error_code == "internal" and "RuntimeError" in row.reason
    assert b"POISON" in row.raw
    assert not w.decision(box, "b2@x.example").tracked
    assert all(w.decision(box, f"b{n}@x.example").tracked for n in (0, 1, 3, 4))


def test_replies_and_copies_inside_one_batch_see_what_came_before(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    w.track_earlier(crm, mid="root@org.example", regarding=("opportunity", crm.opp.id))
    db.session.commit()
    store.deliver(w.raw(mid="a@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    store.deliver(w.raw(mid="b@x.example", subject="RE: RE: Quote", In_Reply_To="<a@x.example>"))
    store.deliver(w.raw(mid="c@x.example", subject="RE: RE: RE: Quote",
                        References="<root@org.example> <a@x.example> <b@x.example>"))
    store.deliver(w.raw(mid="a@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    result = sync_mailbox(box.id, limit=10)
    assert result.fetched == 4 and w.count_emails() == 4  # root + a, b, c: the copy is one
    by_id = {e.message_id: e for e in w.emails()}
    assert by_id["b@x.example"].parent_activity_id == by_id["a@x.example"].id
    assert by_id["c@x.example"].parent_activity_id == by_id["b@x.example"].id
    assert all(by_id[m].regarding_ref == ("opportunity", crm.opp.id)
               for m in ("a@x.example", "b@x.example", "c@x.example"))
    assert w.decision(box, "a@x.example").correlation_method == "in_reply_to"


def test_the_category_is_written_with_one_store_per_batch(crm, dovecot, mail_user, monkeypatch):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(7):
        store.deliver(w.raw(mid=f"k{n}@x.example", subject=f"Keyword {n}"))
    stores = []
    real = IMAPClient.add_flags

    def add_flags(self, messages, flags, silent=False):
        stores.append(sorted(messages))
        return real(self, messages, flags, silent=silent)

    monkeypatch.setattr(IMAPClient, "add_flags", add_flags)
    result = sync_mailbox(box.id, limit=4)
    assert result.tracked == 7
    assert [len(uids) for uids in stores] == [4, 3]  # one UID STORE per batch
    assert all("Tracked to Regarding" in keywords for keywords in store.keywords("INBOX"))
    again = sync_mailbox(box.id, limit=4)  # seen again (our STORE changed them): no STORE
    assert again.tracked == 0 and again.seen == again.fetched and len(stores) == 2


def test_latency_of_mail_filed_into_a_tracked_folder_days_after_it_arrived(crm, dovecot,
                                                                           mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Contoso deal"], "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    days_ago = utcnow() - timedelta(days=3)
    early = w.raw(mid="early@x.example", subject="Filed late")
    uid = dovecot.deliver(mail_user, early, msg_time=days_ago)
    # Mail already in the tracked folder at its first visit is a backlog, not latency.
    dovecot.deliver(mail_user, w.raw(mid="backlog@x.example"), "INBOX/Contoso deal",
                    msg_time=days_ago)
    before_first = utcnow()
    sync_mailbox(box.id)
    assert w.decision(box, "backlog@x.example").latency_ms is None
    store.move(str(uid), "INBOX", "INBOX/Contoso deal")
    assert sync_mailbox(box.id).tracked == 1
    after_second = utcnow()
    row = db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.identity == "early@x.example"))
    assert row.tracked and row.received_on < before_first - timedelta(days=2)
    # Counted from the folder's previous visit, not from its arrival three days ago.
    assert row.latency_ms is not None
    assert row.latency_ms <= (after_second - before_first).total_seconds() * 1000
