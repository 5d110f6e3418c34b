"""Idle EWS mailboxes visited in batches (``engine.idle`` with ``EwsConnector.unchanged``):
the folder listing and a SyncFolderItems for one change per read folder, no message read
(a new SyncState Exchange gives becomes the folder's cursor). A delivery, a move into a tracked
folder, a category set in Outlook, a message deleted or an invalid SyncState each get the
full run; the run that tracks mail leaves the folder idle after its own category writes,
unless something else changed it meanwhile."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.db import db
from server.sync.connectors.ews import EwsConnector
from tests.sync import world as w
from tests.sync.ews.conftest import BOB
from tests.sync.ews.test_ews_engine import EwsStore
from tests.sync.test_idle_imap import (_idle, _synced, cursors, each_gets_a_run,
                                      next_delivery_is_read, synced_while, visited_by_a_worker)

pytestmark = pytest.mark.both_databases


@pytest.fixture
def store(exchange):
    return EwsStore(exchange)


def _mailbox(store, crm):
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.create_folder("Inbox/Projects")
    w.folder_rule(box, w.folder_keys(box)["Inbox/Projects"], "Inbox/Projects")
    db.session.commit()
    return box


def test_an_idle_ews_mailbox_reads_no_message(app, crm, exchange,
                                                                             store):
    box = _mailbox(store, crm)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)  # tracked, its category written: the folder is idle after it all the same
    before = cursors(box)
    assert set(before) == {"Inbox", "Inbox/Projects", "Sent Items"}

    exchange.operations.clear()
    assert _idle(box)
    assert sorted(set(exchange.operations)) == ["FindFolder", "GetFolder", "SyncFolderItems"]
    assert exchange.operations.count("SyncFolderItems") == 3

    run = visited_by_a_worker(app, box)
    assert run.fetched == 0
    assert cursors(box) == before  # the same states: Exchange gave them again
    next_delivery_is_read(store, box)


def test_each_change_to_a_read_folder_gets_a_run(crm, exchange, store):
    box = _mailbox(store, crm)
    first = store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    second = store.deliver(w.raw(sender="Dan <dan@elsewhere.example>", subject="Filed",
                                 mid="filed@elsewhere.example"))
    _synced(box)
    assert _idle(box)

    each_gets_a_run(box, {
        "a delivery": lambda: store.deliver(w.raw(subject="New", mid="new@customer.example")),
        "a move into the tracked folder": lambda: store.move(second, "Inbox", "Inbox/Projects"),
        "a category set in Outlook": lambda: exchange.set_categories(
            BOB, first, ["Tracked to Regarding", "Red category"]),
        "a message deleted": lambda: exchange.move(BOB, first, "Deleted Items"),
    })
    exchange.state_generation += 1  # every SyncState Exchange gave is refused now
    assert not _idle(box)
    _synced(box)
    assert _idle(box)


def test_the_run_after_tracking_reads_nothing_whole(crm, exchange, store):
    """Our category is a change Exchange reports, and one a person could have made: without
    the run moving its cursor past its own writes, the next run fetched each tracked
    message's MIME again."""
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records")
    for n in range(5):
        store.deliver(w.raw(subject=f"Hello {n}", mid=f"hello{n}@customer.example"))
    _synced(box)
    assert [i.categories for i in exchange.items_in(BOB, "inbox")] == \
        [["Tracked to Regarding"]] * 5
    exchange.operations.clear()
    _synced(box)
    assert "GetItem" not in exchange.operations and "UpdateItem" not in exchange.operations


def test_a_change_beside_the_runs_own_writes_keeps_the_cursor(crm, exchange, store,
                                                              monkeypatch):
    """A message delivered while the run wrote its categories: the folder is not idle, and
    the next run reads that message."""
    box = _mailbox(store, crm)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    synced_while(box, monkeypatch, EwsConnector, "past_own_writes", lambda folder: (
        folder.name == "Inbox" and store.deliver(
            w.raw(subject="Meanwhile", mid="meanwhile@customer.example"))))
    assert not _idle(box)
    _synced(box)
    assert db.session.scalar(select(Email).where(
        Email.message_id == "meanwhile@customer.example")) is not None
    assert _idle(box)


def test_a_connection_dropped_while_looking_past_the_writes_loses_nothing(crm, exchange, store,
                                                                          monkeypatch):
    box = _mailbox(store, crm)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    synced_while(box, monkeypatch, EwsConnector, "past_own_writes", lambda folder: setattr(
        exchange, "drop_requests", 1 if folder.name == "Inbox" else exchange.drop_requests))
    assert exchange.drop_requests == 0  # the look in the Inbox, where it wrote, was dropped
    assert not _idle(box)
    _synced(box)
    assert _idle(box)
