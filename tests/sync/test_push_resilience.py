"""Push that does not silently fall back to the poll (issue 17 goal 4): a watcher whose
connection drops after working starts over at once instead of waiting longer each time, and
one that cannot watch says so with a warning alert on the mailbox, cleared when it watches
again (against a private Dovecot that the test stops and starts); a tracked folder renamed
while watched is watched under its new name, with NOTIFY and with IDLE alone."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace as namespace

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.engine.accounts import Refused
from server.sync.connectors.imap import ImapConnector
from server.sync.models import Alert, FolderRule
from server.sync.engine.run import sync_mailbox
from server.sync.workers import push
from server.sync.workers.push import PUSH_ALERT, Backoff, Watcher
from tests.sync import world as w
from tests.sync.test_push import (PushWorker, park, tracked_folder_mailbox, wait_at_rest,
                                  wait_for_tracking, watching)
from tests.waiting import until

def open_push_alert(box) -> Alert | None:
    db.session.rollback()
    return db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id,
                                                 Alert.code == PUSH_ALERT,
                                                 Alert.acknowledged_on.is_(None)))


class Watching:
    """One mailbox's push watcher in a thread; ``changes`` counts its wake-ups."""

    def __init__(self, app, box, backoff: tuple[float, ...] | None = None):
        self.changes, self.refused = 0, None
        self.stopping = threading.Event()
        db.session.commit()
        self.watcher = Watcher(app, box.id, self._changed, self.stopping)
        if backoff is not None:
            self.watcher.backoff = Backoff(backoff)
        self.watcher.start()

    def _changed(self, _mailbox_id: int, refused) -> None:
        self.changes += 1
        self.refused = refused

    def healthy_after(self, store) -> None:
        """New mail ends a wait: the watch works."""
        until(lambda: self.watcher.healthy or self._poke(store), "watcher healthy")

    def _poke(self, store) -> bool:
        store.deliver(w.raw(subject="poke"))
        time.sleep(0.3)
        return self.watcher.healthy

    def close(self) -> None:
        self.stopping.set()
        self.watcher.join(30)
        assert not self.watcher.is_alive()


def test_drops_of_a_working_watch_do_not_add_up_and_a_dead_server_is_told(app, crm, make_dovecot,
                                                                         make_mail_user):
    server = make_dovecot()
    store = w.ImapStore(server, make_mail_user(server=server))
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    park(box)
    watching = Watching(app, box)
    try:
        for _ in range(3):  # a connection lost after the watch worked, three times
            watching.healthy_after(store)
            server.restart(kill=True)
            until(lambda: not watching.watcher.healthy, "watch noticed the drop")
        watching.healthy_after(store)
        # Each drop started over from the shortest delay (before: 5, 15, 60 s...).
        assert watching.watcher.backoff.failures == 0
        assert open_push_alert(box) is None  # drops it recovered from are not alerts
        server.kill()  # and now the server stays away
        alert = until(lambda: open_push_alert(box), "push_unavailable alert")
        assert alert.severity == "warning" and "scheduled runs" in alert.message
        server.start()
        watching.healthy_after(store)
        until(lambda: open_push_alert(box) is None, "alert cleared once push works again")
    finally:
        watching.close()


@pytest.fixture
def refused(app, crm, make_dovecot, make_mail_user, sign_ins, monkeypatch):
    """A watched mailbox whose password was changed on the server: the watch's connection
    dropped and its next sign-in was refused (the one sign-in in ``sign_ins``). Yields the
    server, its user, the store, the mailbox, the ``Watching`` and the refusal. (Waits of a
    fifth of a second: a refused watcher looks for a run that signed in after each.)"""
    monkeypatch.setattr(push, "WAIT_SECONDS", 0.2)
    server = make_dovecot()
    user = make_mail_user(server=server)
    store = w.ImapStore(server, user)
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    park(box)
    watching = Watching(app, box, backoff=(0.1,))
    try:
        watching.healthy_after(store)
        server.add_user(user.username, "Changed-pass-2")
        sign_ins.clear()
        server.restart(kill=True)
        refusal = until(lambda: watching.refused, "the refusal handed on")
        yield namespace(server=server, user=user, store=store, box=box, watching=watching,
                        refusal=refusal)
    finally:
        watching.close()


def test_a_watcher_whose_sign_in_is_refused_signs_in_no_more(refused, sign_ins):
    """A password changed on the server while the mailbox is watched: the watcher's next
    sign-in is refused, and it signs in no more (it retried after each back-off before, a
    failed sign-in each: servers lock accounts out); it flags the mailbox, and the run takes
    the refusal as its own, turning the mailbox off, without a sign-in of its own."""
    refusal, box = refused.refusal, refused.box
    assert isinstance(refusal, Refused) and refusal.error.code == "auth_failed"
    time.sleep(1.0)  # ten back-offs' worth
    assert sign_ins == [refused.user.username] and refused.watching.watcher.is_alive()
    assert open_push_alert(box) is None  # the run's alert says what is wrong
    db.session.rollback()
    result = sync_mailbox(box.id, connector_factory=refusal.connector_factory(box))
    assert result.status == "failure" and result.error_code == "auth_failed"
    assert sign_ins == [refused.user.username]
    db.session.refresh(box)
    assert not box.enabled


def test_a_refused_watcher_watches_again_once_a_run_signs_in(refused, sign_ins):
    """The password is put right on the server before any run took the refusal (or another
    worker's run found it working): once a run of the mailbox succeeds, the watcher signs
    in and watches again; push is not left off for a mailbox that syncs."""
    refused.server.add_user(refused.user.username, refused.user.password)  # put right
    time.sleep(0.5)
    assert sign_ins == [refused.user.username]  # no sign-in of its own meanwhile
    db.session.rollback()
    assert sync_mailbox(refused.box.id).status == "success"
    db.session.commit()
    refused.watching.healthy_after(refused.store)
    assert open_push_alert(refused.box) is None


def test_a_worker_keeps_a_refusal_only_while_a_run_could_take_it(app):
    """Refusals handed to the worker wait for the mailbox's run; one no run took within
    ``REFUSAL_KEPT`` (another worker ran the mailbox, or it was turned off meanwhile) is
    dropped when the next comes, so a long-running worker does not gather them."""
    from server.sync.connectors.base import Account, ConnectorError
    from server.sync.engine.accounts import REFUSAL_KEPT
    from server.sync.workers.worker import Worker
    worker = Worker(app, "worker-a", 1, threading.Event(), push=False, until_idle=True)
    error = ConnectorError("auth_failed", "The server refused the password.", severity="auth")
    old = Refused(error, Account("ann@contoso.test"), at=time.monotonic() - REFUSAL_KEPT - 1)
    new = Refused(error, Account("bob@contoso.test"))
    worker._pushed(101, old)
    worker._pushed(102, new)
    assert worker.refused == {102: new}


@pytest.mark.parametrize("notify", [True, False])
def test_mail_moved_into_a_renamed_tracked_folder_is_tracked_by_push(app, crm, dovecot, mail_user,
                                                                     monkeypatch, notify):
    """After a rename the watcher watches the folder under its new name (NOTIFY with the old
    name watched nothing); without NOTIFY the tracked folder is watched at all."""
    if not notify:
        monkeypatch.setattr(ImapConnector, "capabilities", lambda self: tuple(
            c for c in self.client.capabilities() if c != b"NOTIFY"))
    store = w.ImapStore(dovecot, mail_user)
    box = tracked_folder_mailbox(crm, store)
    first = store.deliver(w.raw(sender="someone@else.example", subject="Terms", mid="t1@x.example"))
    later = store.deliver(w.raw(sender="someone@else.example", subject="More", mid="t2@x.example"))
    park(box)
    worker = PushWorker(app)
    try:
        watching(box)
        store.move(first, "INBOX", "INBOX/Contoso deal")
        wait_for_tracking("t1@x.example")
        wait_at_rest(box)
        store.rename_folder("INBOX/Contoso deal", "INBOX/Contoso won")
        until(lambda: db.session.scalar(select(FolderRule.folder_name)) == "INBOX/Contoso won"
              or db.session.rollback(), "the run after the rename renamed the rule")
        wait_at_rest(box)
        store.move(later, "INBOX", "INBOX/Contoso won")
        email = wait_for_tracking("t2@x.example")
    finally:
        worker.close()
    assert email.regarding_ref == ("opportunity", crm.opp.id)
