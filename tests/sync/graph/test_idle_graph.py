"""Idle Graph mailboxes visited in batches (``engine.idle`` with ``GraphConnector.unchanged``):
one ``$batch`` holds the folder listing and each read folder's delta link, asked for one
change at most; a round that ends at once with nothing in it is an idle folder, whose new
delta link becomes its cursor. A delivery, a move into a tracked folder, a message deleted,
a category set in Outlook, an expired delta link or subscriptions that need upkeep each get
the full run."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.db import db, utcnow
from server.sync.connectors.graph import GraphConnector
from server.sync.workers.graph_models import GraphSubscription
from tests.sync import world as w
from tests.sync.graph.conftest import graph_mailbox
from tests.sync.test_idle_imap import (_idle, _synced, cursors, each_gets_a_run,
                                      next_delivery_is_read, synced_while, visited_by_a_worker)

pytestmark = pytest.mark.both_databases


def _tracked_folder(store, box) -> None:
    store.create_folder("Inbox/Projects")
    w.folder_rule(box, w.folder_keys(box)["Inbox/Projects"], "Inbox/Projects")
    db.session.commit()


def test_an_idle_graph_mailbox_is_one_batch_and_its_delta_links_move_on(app, crm, graph, store):
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    _tracked_folder(store, box)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)
    before = cursors(box)
    assert set(before) == {"Inbox", "Inbox/Projects", "Sent Items"}

    graph.stats.clear()
    assert _idle(box)
    assert graph.stats["http"] == graph.stats["batch"] == 1  # one request for the whole probe
    assert graph.stats["delta"] == 3 and graph.stats["mime"] == 0

    run = visited_by_a_worker(app, box)
    assert run.fetched == 0  # the idle visit's row
    after = cursors(box)
    assert all(after[name] != before[name] for name in before)  # each delta link moved on
    # The moved links are good ones: what comes next is read from them, exactly once.
    next_delivery_is_read(store, box)


def test_each_change_to_a_read_folder_gets_a_run(crm, graph, store):
    box = graph_mailbox(store, crm.bob)
    _tracked_folder(store, box)
    first = store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    second = store.deliver(w.raw(subject="Filed", mid="filed@customer.example"))
    _synced(box)
    assert _idle(box)

    each_gets_a_run(box, {
        "a delivery": lambda: store.deliver(w.raw(subject="New", mid="new@customer.example")),
        "a move into the tracked folder": lambda: store.move(second, "Inbox", "Inbox/Projects"),
        "a category set in Outlook": lambda: store._outlook(
            "PATCH", f"messages/{first}", {"categories": ["Red category"]}),
        "a message deleted": lambda: store._outlook("POST", f"messages/{first}/move", {
            "destinationId": graph.folder_id(store.address, "Deleted Items")}),
    })


def test_an_expired_delta_link_gets_the_run_that_starts_over(crm, graph, store):
    box = graph_mailbox(store, crm.bob)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)
    assert _idle(box)
    graph.expire_delta_tokens()
    assert not _idle(box)
    _synced(box)
    assert _idle(box)


def test_subscriptions_due_for_upkeep_get_the_run_that_keeps_them_up(crm, graph, store,
                                                                      served):
    box = graph_mailbox(store, crm.bob)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)  # subscribes to the folders it read
    rows = list(db.session.scalars(select(GraphSubscription).where(
        GraphSubscription.mailbox_id == box.id)))
    assert {r.folder_key for r in rows} == set(w.folder_keys(box)[n]
                                               for n in ("Inbox", "Sent Items"))
    assert _idle(box)

    rows[0].expires_on = utcnow() + timedelta(hours=2)  # within the day before it ends
    db.session.commit()
    assert not _idle(box)
    _synced(box)  # renewed
    assert _idle(box)

    db.session.delete(rows[1])  # Graph removed it, or it was never made
    db.session.commit()
    assert not _idle(box)
    _synced(box)
    assert _idle(box)

    # One on the calendar, left from when the mailbox synced its appointments: a run ends it.
    db.session.add(GraphSubscription(
        mailbox_id=box.id, folder_key="events", subscription_id="left-over",
        client_state_hash="0" * 64, resource=f"users/{store.address}/events",
        expires_on=utcnow() + timedelta(days=5)))
    db.session.commit()
    assert not _idle(box)


def test_the_run_after_tracking_reads_nothing_whole(crm, graph, store):
    """The categories a run wrote come back in the folder's delta: the run moves its cursor
    past them (one delta request), so the next run does not fetch those messages again."""
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    for n in range(5):
        store.deliver(w.raw(subject=f"Hello {n}", mid=f"hello{n}@customer.example"))
    _synced(box)
    assert [m.categories for m in graph.messages_in(store.address, "Inbox")] == \
        [["Tracked to Regarding"]] * 5
    graph.stats.clear()
    _synced(box)
    assert graph.stats["mime"] == 0 and graph.stats["patch"] == 0


def test_a_change_beside_the_runs_own_writes_keeps_the_cursor(crm, graph, store, monkeypatch):
    """A category set in Outlook on a message the run had just tagged, while the run wrote:
    the folder is not idle, and the next run reads that message."""
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    ref = store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    synced_while(box, monkeypatch, GraphConnector, "past_own_writes", lambda folder: (
        folder.name == "Inbox" and store._outlook(
            "PATCH", f"messages/{ref}", {"categories": ["Tracked to Regarding", "Red category"]})))
    assert not _idle(box)
    graph.stats.clear()
    _synced(box)
    assert graph.stats["mime"] == 1
    assert _idle(box)


def test_a_connection_dropped_while_looking_past_the_writes_loses_nothing(crm, graph, store,
                                                                          monkeypatch):
    """The look after the run's own writes is no part of the run: a dropped connection there
    keeps the cursor (the run succeeds), and the next run reads the folder's changes."""
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    synced_while(box, monkeypatch, GraphConnector, "past_own_writes", lambda folder: setattr(
        graph, "drop_requests", 1 if folder.name == "Inbox" else graph.drop_requests))
    assert graph.drop_requests == 0  # the look in the Inbox, where it wrote, was dropped
    assert not _idle(box)
    _synced(box)
    assert _idle(box)
