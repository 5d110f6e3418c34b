"""Push: a worker with push on tracks an email moved into a tracked folder within seconds,
long before the mailbox's next scheduled run (an hour away here): IMAP MOVE by a second
client on the real Dovecot (NOTIFY/IDLE), and a mail client's move in a Maildir (inotify).
Mail that arrived while no watcher ran is noticed when the watcher starts."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.db import db, utcnow
from server.sync.engine.run import sync_mailbox
from server.sync.models import Mailbox, SyncRun
from server.sync.workers.worker import run_worker
from tests.sync import world as w
from tests.waiting import until


@pytest.fixture(params=["imap", "maildir"])
def store(request, tmp_path):
    return w.bob_store(request.param, request, tmp_path)


def tracked_folder_mailbox(crm, store):
    """Bob's mailbox tracking nothing but what he files into "INBOX/Contoso deal"; synced
    once, and not due again for an hour."""
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Contoso deal"], "INBOX/Contoso deal",
                  ("opportunity", crm.opp.id))
    db.session.commit()
    return box


def push_runs(box: Mailbox) -> int:
    """How many runs the push worker made of the mailbox."""
    return db.session.scalar(select(func.count(SyncRun.id)).where(
        SyncRun.mailbox_id == box.id, SyncRun.worker == "push-worker"))


def park(box: Mailbox) -> None:
    """Synced and not due for an hour: only push can bring the next run."""
    assert sync_mailbox(box.id).status == "success"
    box = db.session.get(Mailbox, box.id)
    box.next_sync_on = utcnow() + timedelta(hours=1)
    box.sync_requested = False
    db.session.commit()


class PushWorker:
    """A worker with push on (its watchers: IMAP, Maildir, EWS), in a thread of this
    process; ``push=False`` for Graph, whose push is its notifications to the web app."""

    def __init__(self, app, push: bool = True):
        self.stop = threading.Event()
        db.session.commit()  # hold no transaction while the worker writes
        self.thread = threading.Thread(target=run_worker, args=(app,), kwargs=dict(
            worker_id="push-worker", concurrency=2, stop_event=self.stop, push=push))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for_tracking(message_id: str):
    return until(lambda: w.emails(message_id=message_id), f"{message_id} tracked",
                 session=db.session)[0]


def brought_by_push_alone(box: Mailbox) -> None:
    """The mailbox's items synced, and its scheduled run is still far off: push did it."""
    box = db.session.get(Mailbox, box.id)
    assert box.acts_status == "success" and box.next_sync_on > utcnow() + timedelta(minutes=30)


def wait_at_rest(box: Mailbox) -> None:
    """Wait until no run holds the mailbox and none is requested."""
    def at_rest() -> bool:
        now = db.session.get(Mailbox, box.id)
        return now.lease_owner is None and not now.sync_requested
    until(at_rest, f"mailbox {box.id} at rest", session=db.session)


def watching(box: Mailbox, timeout: float = 30) -> None:
    """Wait until the worker's watcher for this mailbox runs."""
    until(lambda: any(t.name == f"push-{box.id}" for t in threading.enumerate()),
          "a push watcher started", timeout=timeout, every=0.05)
    time.sleep(0.5)  # and has read its folders


@pytest.mark.both_databases  # PostgreSQL: one watcher per mailbox by advisory lock
def test_mail_moved_into_a_tracked_folder_is_tracked_by_push(app, crm, store):
    box = tracked_folder_mailbox(crm, store)
    ref = store.deliver(w.raw(sender="someone@else.example", subject="Deal terms",
                              mid="deal@x.example"))
    park(box)
    assert not w.emails(message_id="deal@x.example")  # the Inbox tracks nothing
    worker = PushWorker(app)
    try:
        watching(box)
        store.move(ref, "INBOX", "INBOX/Contoso deal")
        email = wait_for_tracking("deal@x.example")
        # Writing the "tracked" keyword changes the folder again (a Maildir file is renamed),
        # which may bring one more, empty run: wait until the mailbox is at rest.
        wait_at_rest(box)
    finally:
        worker.close()
    assert email.regarding_ref == ("opportunity", crm.opp.id)
    row = w.decision(box, "deal@x.example")
    assert row.tracked and row.folder_name == "INBOX/Contoso deal"
    runs = db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id,
                                                    SyncRun.worker == "push-worker")).all()
    assert runs and all(run.finished_on for run in runs)
    # The lease is given back. (Whether the mailbox is asked for again is left open: the
    # keyword's rename may reach the watcher after the wait above saw the mailbox at rest,
    # and the worker stops before that request's run.)
    assert db.session.get(Mailbox, box.id).lease_owner is None


def test_a_copy_and_a_move_into_the_renamed_folder_are_tracked_by_push(app, crm, store):
    """As a mail client files mail over a day (the latency benchmark's steady mode): a copy
    into the tracked folder (the original stays in the Inbox), then the folder renamed and
    a message moved into it under its new name; push alone brings both."""
    box = tracked_folder_mailbox(crm, store)
    first = store.deliver(w.raw(sender="someone@else.example", mid="copied@x.example"))
    second = store.deliver(w.raw(sender="someone@else.example", mid="filed@x.example"))
    park(box)
    worker = PushWorker(app)
    try:
        watching(box)
        store.copy(first, "INBOX", "INBOX/Contoso deal")
        copied = wait_for_tracking("copied@x.example")
        store.rename_folder("INBOX/Contoso deal", "INBOX/Contoso won")
        store.move(second, "INBOX", "INBOX/Contoso won")
        filed = wait_for_tracking("filed@x.example")
        wait_at_rest(box)
    finally:
        worker.close()
    assert copied.regarding_ref == filed.regarding_ref == ("opportunity", crm.opp.id)


def test_mail_filed_while_no_watcher_ran_is_noticed_when_one_starts(app, crm, dovecot,
                                                                    mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = tracked_folder_mailbox(crm, store)
    ref = store.deliver(w.raw(sender="someone@else.example", subject="Filed earlier",
                              mid="early@x.example"))
    park(box)
    store.move(ref, "INBOX", "INBOX/Contoso deal")  # no worker is running
    worker = PushWorker(app)
    try:
        email = wait_for_tracking("early@x.example")
    finally:
        worker.close()
    assert email.regarding_ref == ("opportunity", crm.opp.id)
