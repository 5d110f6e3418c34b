"""EWS push in the sync worker: a worker with push on keeps a streaming subscription on the
Inbox and the tracked folders of an EWS mailbox (the fake Exchange's Subscribe and
GetStreamingEvents), so mail moved into a tracked folder is tracked long before the
mailbox's next scheduled run (an hour away here); a subscription the server ends is made
again after the watcher's back-off (mail filed meanwhile is not lost); a server that takes
no streaming subscription is polled instead."""
from __future__ import annotations

from sqlalchemy import select

from server.db import db
from server.sync.models import Mailbox, SyncRun
from tests.sync import world as w
from tests.sync.ews.test_ews_engine import EwsStore
from tests.sync.test_push import PushWorker, park, wait_for_tracking, watching
from tests.waiting import until


def tracked_folder_mailbox(crm, store, **settings) -> Mailbox:
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    box.server_profile.settings = {**box.server_profile.settings, **settings}
    store.create_folder("Inbox/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["Inbox/Contoso deal"], "Inbox/Contoso deal",
                  ("opportunity", crm.opp.id))
    db.session.commit()
    return box


def track_by_push(app, exchange, box, mid: str):
    """Deliver to the Inbox, park the mailbox, then move the mail into the tracked folder
    while a push worker runs; returns the tracked email and the fake's subscriptions and
    operations as they were then."""
    store = EwsStore(exchange)
    ref = store.deliver(w.raw(sender="someone@else.example", subject="Deal terms", mid=mid))
    park(box)
    assert not w.emails(message_id=mid)  # the Inbox tracks nothing
    worker = PushWorker(app)
    try:
        watching(box)
        store.move(ref, "Inbox", "Inbox/Contoso deal")
        email = wait_for_tracking(mid)
        with exchange.lock:
            return email, [set(s["folders"]) for s in exchange.subscriptions.values()], \
                list(exchange.operations)
    finally:
        worker.close()


def test_mail_moved_into_a_tracked_folder_is_tracked_through_the_stream(app, crm, exchange):
    box = tracked_folder_mailbox(crm, EwsStore(exchange))
    email, subscribed, operations = track_by_push(app, exchange, box, "deal@x.example")
    assert email.regarding_ref == ("opportunity", crm.opp.id)
    assert "GetStreamingEvents" in operations and any(len(f) == 2 for f in subscribed)
    assert w.decision(box, "deal@x.example").folder_name == "Inbox/Contoso deal"
    runs = db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id,
                                                    SyncRun.worker == "push-worker")).all()
    assert runs and all(run.finished_on for run in runs)


def test_a_server_without_streaming_is_polled_by_the_watcher(app, crm, exchange):
    exchange.streaming = False
    box = tracked_folder_mailbox(crm, EwsStore(exchange), poll_seconds=0.5)
    email, subscribed, operations = track_by_push(app, exchange, box, "polled@x.example")
    assert email.regarding_ref == ("opportunity", crm.opp.id)
    assert "GetStreamingEvents" not in operations and not subscribed


def test_a_stream_the_server_ends_is_subscribed_again_and_nothing_is_lost(app, crm, exchange):
    store = EwsStore(exchange)
    box = tracked_folder_mailbox(crm, store)
    ref = store.deliver(w.raw(sender="someone@else.example", mid="restart@x.example"))
    park(box)
    worker = PushWorker(app)
    try:
        watching(box)
        first = set(exchange.subscriptions)
        exchange.expire_subscriptions()  # the stream breaks; the watcher backs off
        store.move(ref, "Inbox", "Inbox/Contoso deal")  # filed while nobody listens
        email = wait_for_tracking("restart@x.example")
        again = until(lambda: set(exchange.subscriptions) - first, "a new subscription")
    finally:
        worker.close()
    assert email.regarding_ref == ("opportunity", crm.opp.id)
    assert again  # a new subscription after the back-off (``until`` fails without one)
