"""Graph push: the notification endpoint's validation handshake, subscriptions made and kept
after syncs (renewed before they expire, renewed on reauthorizationRequired, made again on
subscriptionRemoved), notifications checked by clientState that make the mailbox due, and
delta staying the source of truth when notifications are lost. The fake Graph service
posts to the application served on a loopback port."""
from __future__ import annotations

import hashlib
from datetime import timedelta


import pytest
from sqlalchemy import select

from server.db import db, utcnow
from server.sync.engine.run import sync_mailbox
from server.sync.workers.graph_models import GraphSubscription
from server.sync.workers.graph_push import handle_notifications
from server.sync.models import Mailbox
from tests.sync import world as w
from tests.sync.graph.conftest import BOB, graph_mailbox
from tests.sync.test_push import PushWorker, wait_for_tracking

DEAL = "Inbox/Contoso deal"


@pytest.fixture
def box(crm, store, served):
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder(DEAL)
    w.folder_rule(box, store.fake.folder_id(BOB, DEAL), DEAL, ("opportunity", crm.opp.id))
    db.session.commit()
    return box


def subscriptions(box) -> dict[str, GraphSubscription]:
    db.session.expire_all()
    return {s.folder_key: s for s in db.session.scalars(
        select(GraphSubscription).where(GraphSubscription.mailbox_id == box.id))}


def settle(graph, box) -> Mailbox:
    """Wait until the fake posted what it had to post, then read the mailbox afresh."""
    db.session.commit()
    graph.wait_for_deliveries()
    db.session.expire_all()
    return db.session.get(Mailbox, box.id)


def quiet(graph, box) -> None:
    """Let notifications caused by the last sync (its category writes) land, then clear the
    mailbox's flag, so the next step starts from a known state."""
    settle(graph, box).sync_requested = False
    db.session.commit()


def park(graph, box) -> None:
    """Synced, what the sync's own writes made Graph post landed, and not due for an hour:
    only a notification can bring the next run."""
    mailbox = settle(graph, box)
    mailbox.sync_requested = False
    mailbox.next_sync_on = utcnow() + timedelta(hours=1)
    db.session.commit()


def test_validation_handshake_echoes_the_token_as_text(client):
    token = "Validation: Testing client application reachability <b>&</b>"
    answer = client.post("/graph/notifications", query_string={"validationToken": token})
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == token
    assert client.post("/graph/notifications", data="nonsense").status_code == 400


def test_a_sync_subscribes_to_the_folders_it_reads(graph, store, box):
    assert sync_mailbox(box.id).status == "success"
    subs = subscriptions(box)
    read = {graph.folder_id(BOB, name) for name in ("Inbox", DEAL)}
    if w.org().track_sent_items:
        read.add(graph.folder_id(BOB, "Sent Items"))
    assert set(subs) == read
    assert {s.folder_id for s in graph.subscriptions.values()} == read
    for row in subs.values():
        held = graph.subscriptions[row.subscription_id]
        assert held.client_state and row.client_state_hash != held.client_state  # hashed
        assert held.lifecycle_url and held.change_types == {"created", "updated", "deleted"}
    assert ("validation", 200) in graph.deliveries
    sync_mailbox(box.id)  # fresh subscriptions are kept as they are
    assert set(graph.subscriptions) == {s.subscription_id for s in subs.values()}


def test_a_notification_makes_the_mailbox_due_and_the_delta_sync_tracks_the_mail(
        crm, graph, store, box):
    sync_mailbox(box.id)
    quiet(graph, box)
    store.deliver(w.raw(mid="pushed@x.example"), DEAL)
    mailbox = settle(graph, box)
    assert mailbox.sync_requested
    assert ("notification", 202) in graph.deliveries
    assert sync_mailbox(box.id).tracked == 1
    assert w.emails(message_id="pushed@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    row = subscriptions(box)[graph.folder_id(BOB, DEAL)]
    assert row.last_notification_on is not None


@pytest.mark.both_databases  # the webhook writes while the worker runs
def test_mail_a_client_files_through_the_api_reaches_a_running_worker_by_notification(
        app, crm, graph, store, box):
    """The latency benchmark's Graph side: a worker runs (no watcher: Graph's push is its
    notifications to the web app) and the mailbox is not due for an hour; a copy and a move
    made through the API, as a mail client makes them, are tracked all the same."""
    first = store.deliver(w.raw(mid="copied@x.example"))
    second = store.deliver(w.raw(mid="moved@x.example"))
    assert sync_mailbox(box.id).status == "success"
    park(graph, box)
    assert not w.emails()  # the Inbox tracks nothing
    worker = PushWorker(app, push=False)
    try:
        store.copy(first, "Inbox", DEAL)
        copied = wait_for_tracking("copied@x.example")
        store.move(second, "Inbox", DEAL)
        moved = wait_for_tracking("moved@x.example")
    finally:
        worker.close()
    assert copied.regarding_ref == moved.regarding_ref == ("opportunity", crm.opp.id)
    assert len(graph.messages_in(BOB, "Inbox")) == 1  # the copied message stayed


def test_a_forged_client_state_is_refused(graph, store, box, client):
    sync_mailbox(box.id)
    quiet(graph, box)
    row = next(iter(subscriptions(box).values()))
    forged = {"value": [{"subscriptionId": row.subscription_id, "clientState": "guess",
                         "changeType": "created", "resource": "Users/x/Messages/y"},
                        {"subscriptionId": "unknown", "clientState": "x", "changeType": "created"}]}
    assert client.post("/graph/notifications", json=forged).status_code == 202
    assert not settle(graph, box).sync_requested


def lifecycle_works(graph, box, key: str, sync) -> None:
    """On the subscription of ``key``: reauthorizationRequired flags the mailbox and has the
    next ``sync()`` renew it, subscriptionRemoved has it made again, missed flags the
    mailbox."""
    quiet(graph, box)
    first = subscriptions(box)[key].subscription_id
    graph.lifecycle(first, "reauthorizationRequired")
    mailbox = settle(graph, box)
    assert mailbox.sync_requested and subscriptions(box)[key].status == "renew"
    renewed = graph.stats["renew"]
    sync()
    row = subscriptions(box)[key]
    assert row.status == "active" and row.subscription_id == first
    assert graph.stats["renew"] == renewed + 1
    quiet(graph, box)
    graph.lifecycle(first, "subscriptionRemoved")
    assert settle(graph, box).sync_requested and subscriptions(box)[key].status == "removed"
    sync()
    row = subscriptions(box)[key]
    assert row.status == "active" and row.subscription_id != first
    assert row.subscription_id in graph.subscriptions and first not in graph.subscriptions
    quiet(graph, box)
    graph.lifecycle(row.subscription_id, "missed")
    assert settle(graph, box).sync_requested


def test_lifecycle_notifications(graph, store, box):
    sync_mailbox(box.id)
    lifecycle_works(graph, box, graph.folder_id(BOB, "Inbox"), lambda: sync_mailbox(box.id))


def test_subscriptions_are_renewed_before_they_expire(graph, store, box):
    sync_mailbox(box.id)
    row = next(iter(subscriptions(box).values()))
    row.expires_on = utcnow() + timedelta(hours=2)
    db.session.commit()
    sync_mailbox(box.id)
    row = subscriptions(box)[row.folder_key]
    assert row.expires_on > utcnow() + timedelta(days=6) and row.renewed_on is not None
    held = graph.subscriptions[row.subscription_id]
    assert held.expires > utcnow() + timedelta(days=6)


def test_missed_notifications_lose_nothing(crm, graph, store, box):
    sync_mailbox(box.id)
    quiet(graph, box)
    graph.notifications_enabled = False
    store.deliver(w.raw(mid="quiet@x.example"), DEAL)
    assert not settle(graph, box).sync_requested
    assert sync_mailbox(box.id).tracked == 1  # the scheduled run's delta has it


def test_no_notification_url_no_subscriptions(app, crm, graph, store):
    box = graph_mailbox(store, crm.bob)
    app.config.pop("REGARDING_GRAPH_NOTIFICATION_URL", None)
    assert sync_mailbox(box.id).status == "success"
    assert subscriptions(box) == {} and graph.subscriptions == {}


def test_a_notification_during_a_run_leaves_the_mailbox_flagged(graph, store, box):
    """A run clears the flag as it starts; a notification that comes while it reads the
    folders asks for another run, and the end of the run does not undo that."""
    from server.sync.connectors import incoming

    sync_mailbox(box.id)
    quiet(graph, box)
    row = next(iter(subscriptions(box).values()))
    state = "s3cret-state"
    row.client_state_hash = hashlib.sha256(state.encode()).hexdigest()
    box.sync_requested = True  # e.g. "Sync now": this run answers it
    db.session.commit()
    subscription_id = row.subscription_id

    class NotifiedWhileListing(incoming("graph")):
        def list_folders(self):
            handle_notifications({"value": [{"subscriptionId": subscription_id,
                                             "clientState": state, "changeType": "created"}]})
            return super().list_folders()

    assert sync_mailbox(box.id, connector_factory=NotifiedWhileListing).status == "success"
    db.session.expire_all()
    assert db.session.get(Mailbox, box.id).sync_requested
    assert sync_mailbox(box.id).status == "success"  # the next run clears it again
    db.session.expire_all()
    assert not db.session.get(Mailbox, box.id).sync_requested
