"""Push that does not silently fall back to the poll (issue 17 goal 4): a watcher whose
connection drops after working starts over at once instead of waiting longer each time, and
one that cannot watch says so with a warning alert on the mailbox, cleared when it watches
again. Against a private Dovecot that the test stops and starts."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from server.db import db
from server.sync.models import Alert
from server.sync.workers.push import PUSH_ALERT, Watcher
from tests.sync import world as w
from tests.sync.test_push import park

DEADLINE = 60


def until(condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def open_push_alert(box) -> Alert | None:
    db.session.rollback()
    return db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id,
                                                 Alert.code == PUSH_ALERT,
                                                 Alert.acknowledged_on.is_(None)))


class Watching:
    """One mailbox's push watcher in a thread; ``changes`` counts its wake-ups."""

    def __init__(self, app, box):
        self.changes = 0
        self.stopping = threading.Event()
        db.session.commit()
        self.watcher = Watcher(app, box.id, self._changed, self.stopping)
        self.watcher.start()

    def _changed(self, _mailbox_id: int) -> None:
        self.changes += 1

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
