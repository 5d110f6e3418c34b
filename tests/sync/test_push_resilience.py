"""Push that does not silently fall back to the poll (issue 17 goal 4): a watcher whose
connection drops after working starts over at once instead of waiting longer each time, and
one that cannot watch says so with a warning alert on the mailbox, cleared when it watches
again (against a private Dovecot that the test stops and starts); a tracked folder renamed
while watched is watched under its new name, with NOTIFY and with IDLE alone."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.engine.accounts import Refused
from server.sync.connectors.imap import ImapConnector
from server.sync.models import Alert, FolderRule
from server.sync.engine.run import sync_mailbox
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


def test_a_watcher_whose_sign_in_is_refused_signs_in_no_more(app, crm, make_dovecot,
                                                             make_mail_user, sign_ins):
    """A password changed on the server while the mailbox is watched: the watcher's next
    sign-in is refused, and it signs in no more (it retried after each back-off before, a
    failed sign-in each: servers lock accounts out); it flags the mailbox, and the run takes
    the refusal as its own, turning the mailbox off, without a sign-in of its own."""
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
        server.restart(kill=True)  # the watch's connection drops; its next sign-in fails
        refused = until(lambda: watching.refused, "the refusal handed on")
        assert isinstance(refused, Refused) and refused.error.code == "auth_failed"
        time.sleep(1.0)  # ten back-offs' worth
        assert sign_ins == [user.username] and watching.watcher.is_alive()
        assert open_push_alert(box) is None  # the run's alert says what is wrong
        db.session.rollback()
        result = sync_mailbox(box.id, connector_factory=refused.connector_factory(box))
        assert result.status == "failure" and result.error_code == "auth_failed"
        assert sign_ins == [user.username]
        db.session.refresh(box)
        assert not box.enabled
    finally:
        watching.close()


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
