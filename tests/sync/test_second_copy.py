"""A second copy of tracked mail (issue 12, point 9): the same message dropped into the
Inbox again, or seen in another evaluated folder (Sent Items), is not tracked twice, and
its decision row answers "why (not) tracked" with "already tracked as activity N"."""
from __future__ import annotations

import pytest

from server.db import db
from server.sync.engine.run import sync_mailbox
from tests.sync import world as w


@pytest.mark.parametrize("kind", ["maildir", "imap"])
@pytest.mark.parametrize("where", ["INBOX", "Sent"])
def test_a_second_copy_says_it_is_already_tracked(crm, request, tmp_path, kind, where):
    store = w.bob_store(kind, request, tmp_path)
    box = w.store_mailbox(store, crm.bob)
    w.org().track_sent_items = True
    w.track_earlier(crm, mid="quote@org.example")
    data = w.raw(mid="copy@customer.example", subject="RE: Quote",
                 In_Reply_To="<quote@org.example>")
    store.deliver(data)
    first = sync_mailbox(box.id)
    assert first.status == "success" and first.tracked == 1
    (email,) = w.tracked("copy@customer.example")
    row = w.decision(box, "copy@customer.example")
    assert row.tracked and row.activity_id == email.id and row.folder_name == "INBOX"
    tracked_for = row.reason
    store.deliver(data, where)  # the same message again
    second = sync_mailbox(box.id)
    assert second.status == "success" and second.tracked == 0
    db.session.expire_all()
    assert [e.id for e in w.tracked("copy@customer.example")] == [email.id]
    row = w.decision(box, "copy@customer.example")
    assert row.tracked and row.activity_id == email.id
    assert row.reason.startswith(tracked_for)  # why it was tracked stays
    assert (f'Seen again in "{where}" on ' in row.reason and
            f"UTC: already tracked as activity {email.id}, so not tracked again." in row.reason)
    third = sync_mailbox(box.id)  # nothing new: the row keeps one such sentence
    assert third.status == "success" and third.tracked == 0
    db.session.expire_all()
    assert w.decision(box, "copy@customer.example").reason.count("Seen again") <= 1
