"""Push for the sync worker: a watcher thread per mailbox whose protocol can tell us about new
mail (IMAP NOTIFY/IDLE, Maildir inotify, EWS streaming notifications) waits on its Inbox and
tracked folders with ``connector.wait_for_changes`` and, when something changes, flags the mailbox
``sync_requested`` and wakes the worker, so mail filed into a tracked folder is tracked
within seconds instead of at the next scheduled run.

* **Nothing missed between waits.** Before waiting, the watcher reads each watched folder
  from the mailbox's stored cursor (one message at most): the connector then knows the
  folder's state, and a wait that starts after mail arrived returns at once.
* **Nothing lost to a run in progress.** A run that started before the change may finish
  after it and clear the flag; the watcher keeps flagging until a run that *started* after
  the change is recorded (``SyncRun.started_on``).
* **One watcher per mailbox across workers.** On PostgreSQL a worker watches a mailbox only
  while it holds a session advisory lock on it (on its own connection): a second worker
  leaves it alone, and a dead worker's mailboxes are picked up at the next refresh. SQLite
  has a single worker anyway.
* At most ``REGARDING_SYNC_PUSH_MAX`` mailboxes per worker (default 500); the rest are
  served by the schedule. The watched set is refreshed every 30 s (new mailboxes, changed
  folder rules, profiles and credentials).

* **Appointments, contacts and tasks.** A mailbox that syncs them (its method is server-side
  sync, on the mail profile's own server) and whose connector can wait on them in the same
  wait (``WatchesItems``: EWS, Maildir with its folder of .ics files) has the collections
  the item sync reads watched too, for the kinds its user may sync: a changed event,
  contact or task flags the mailbox like new mail, and its run syncs the items after the
  mail. The watched set's signature holds the method and those kinds, so turning item sync
  on or off, or a privilege granted or taken away, starts the watch over.
* **EWS.** The connector keeps one streaming subscription on the watched folders (and
  collections) for the watcher's session; a stream that breaks ends the session and the watcher opens a new one
  after its back-off (``RETRY_SECONDS``); a server that takes no streaming subscription is
  polled with SyncFolderItems every ``poll_seconds`` (the profile setting) instead. Microsoft
  Graph is not watched here: its change notifications come to the web app
  (``server.sync.workers.graph_push``).

A watcher's connection is not counted against the profile's ``max_connections`` (which
bounds the syncs): leave room for it there when push is on.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

from server.db import db, utcnow, writer_thread
from server.i18n import N_
from server.sync.engine.accounts import Refused
from server.sync.engine.service_accounts import HELD
from server.sync.workers import scheduler
from server.sync.connectors.base import (FOLDERS_CHANGED, Collection, ConnectorError, Folder,
                                         WatchesItems)
from server.sync.models import FolderRule, FolderState, ItemCursor, Mailbox, SyncRun

log = logging.getLogger(__name__)

PUSH_PROTOCOLS = ("imap", "maildir", "ews")
WAIT_SECONDS = 15.0  # one wait; bounds how long a stopping watcher takes to notice
RECHECK_SECONDS = 1.0  # while a change waits for a run that started after it
REFRESH_SECONDS = 30.0
RETRY_SECONDS = (1, 5, 15, 60, 300)  # failures in a row; a healthy wait starts over
ALERT_AFTER_FAILURES = 2  # in a row: push is off for this mailbox until one works
PUSH_ALERT = "push_unavailable"
ADVISORY_CLASS = 0x5245  # "RE": the advisory lock namespace of push watchers


def _detail(exc: BaseException) -> str:
    from server.sync.engine.quarantine import safe_detail
    if isinstance(exc, ConnectorError):
        return f"{exc.code}: {exc.message}"
    return safe_detail(exc)


def watch_targets(limit: int) -> dict[int, tuple]:
    """Mailboxes push can serve: enabled, read by server-side sync over a push protocol.
    Maps each id to a signature that changes when its watch must start over."""
    from server.crm.models import Organization
    from server.sync.engine.run import why_not_synced
    org = db.session.get(Organization, 1)
    boxes = db.session.scalars(
        select(Mailbox).where(Mailbox.enabled.is_(True)).options(
            selectinload(Mailbox.server_profile), selectinload(Mailbox.user))
        .order_by(Mailbox.id)).all()
    boxes = [b for b in boxes if b.server_profile is not None
             and b.server_profile.incoming_protocol in PUSH_PROTOCOLS
             and why_not_synced(b) is None][:limit]
    ids = [b.id for b in boxes]
    rules: dict[int, list[str]] = {}
    if ids:
        for mailbox_id, key in db.session.execute(
                select(FolderRule.mailbox_id, FolderRule.folder_key)
                .where(FolderRule.mailbox_id.in_(ids), FolderRule.enabled.is_(True))
                .order_by(FolderRule.mailbox_id, FolderRule.folder_key)):
            rules.setdefault(mailbox_id, []).append(key)
    return {b.id: (b.server_profile_id, b.server_profile.modified_on, b.username,
                   hash(b.password), tuple(rules.get(b.id, ())), org.track_sent_items,
                   b.acts_method, b.acts_profile_id, watched_kinds(b))
            for b in boxes}


def watched_kinds(mailbox: Mailbox) -> tuple[str, ...]:
    """The kinds of items whose collections the watcher waits on beside the mail: those the
    mailbox's item sync syncs, when it syncs them with the mail's own server (a CalDAV
    profile of its own is not watched)."""
    from server.sync.acts.records import kinds_synced
    if not mailbox.syncs_items or mailbox.acts_profile_id not in (
            None, mailbox.server_profile_id):
        return ()
    return tuple(kinds_synced(mailbox)[0])


class Backoff:
    """Delays between a watcher's attempts: longer with each failure in a row, back to the
    shortest once a watch works (``reset``)."""

    def __init__(self, delays: tuple[int, ...] = RETRY_SECONDS):
        self.delays, self.failures = delays, 0

    def failed(self) -> int:
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Watcher(threading.Thread):
    """Waits for changes in one mailbox until told to stop."""

    def __init__(self, app, mailbox_id: int, on_change, stopping: threading.Event):
        super().__init__(name=f"push-{mailbox_id}", daemon=True)
        self.app, self.mailbox_id, self.on_change = app, mailbox_id, on_change
        self.stopping = stopping  # the worker's
        self.done = threading.Event()  # this watcher's
        self.pending_since: datetime | None = None
        self.backoff = Backoff()
        self.healthy = False  # a wait of the current watch returned normally
        self.alerted = False  # the push_unavailable alert is open
        self.items = None  # the item store on the connector's session, when items are watched
        self.account = None  # the account the watch signs in with (``_open``)
        self.waiting_for_a_run = False  # its sign-in refused or held: until a run signs in

    @property
    def stopped(self) -> bool:
        return self.done.is_set() or self.stopping.is_set()

    def stop(self) -> None:
        self.done.set()

    def run(self) -> None:
        writer_thread()
        while not self.stopped:
            try:
                self._watch()
                self.backoff.reset()
            except ConnectorError as exc:
                if exc.severity == HELD:  # the profile's service account was refused: not
                    # tried here either; watching starts again after a run that signs in
                    log.info("push: mailbox %s: waits for its profile's service account",
                             self.mailbox_id)
                    self._wait_for_a_run(utcnow())
                    continue
                if exc.severity != "auth" or self.account is None:
                    self._failed(exc)
                    continue
                # The server refused the sign-in: the mailbox's run takes the refusal as its
                # own (it turns the mailbox off and says why) and this watcher does not sign
                # in again until a run has (the password was put right on the server, or
                # another worker's run found it working). The refresh stops it when the
                # mailbox is off, or starts a new one when its credentials change.
                log.info("push: mailbox %s: sign-in refused (%s); watching waits for a run "
                         "that signs in", self.mailbox_id, _detail(exc))
                refused_on = utcnow()
                try:
                    self._flag(Refused(exc, self.account))
                except Exception as later:  # the database: back off as for any failure
                    self._failed(later)
                    continue
                self._wait_for_a_run(refused_on)
            except Exception as exc:  # a watcher never takes the worker down
                self._failed(exc)

    def _wait_for_a_run(self, since: datetime) -> None:
        """Until a run of the mailbox signs in after ``since`` (or the watcher stops)."""
        self.waiting_for_a_run = True
        try:
            while not self.stopped and not self._signed_in_since(since):
                self.done.wait(WAIT_SECONDS)
        except Exception as exc:  # the database: back off as for any failure
            self._failed(exc)
        finally:
            self.waiting_for_a_run = False

    def _failed(self, exc: Exception) -> None:
        # A watch that had been waiting fine (a dropped connection after hours) starts over
        # from the shortest delay: only failures in a row back off.
        if self.healthy:
            self.backoff.reset()
        delay = self.backoff.failed()
        log.info("push: mailbox %s: watching stopped (%s); again in %d s",
                 self.mailbox_id, _detail(exc), delay)
        if self.backoff.failures >= ALERT_AFTER_FAILURES:
            self._alert(exc)
        self.done.wait(delay)

    def _open(self):
        """The connector, the folders (and item collections) to watch, and their stored
        cursors."""
        from server.sync.engine.accounts import account_for
        from server.sync.connectors import incoming
        from server.sync.engine.folders import find_inbox
        self.items = self.account = None
        with self.app.app_context():
            mailbox = db.session.get(Mailbox, self.mailbox_id)
            if mailbox is None or not mailbox.enabled:
                self.stop()
                return None
            account = self.account = account_for(mailbox, "incoming")
            factory = incoming(mailbox.server_profile.incoming_protocol)
            keys = set(db.session.scalars(select(FolderRule.folder_key).where(
                FolderRule.mailbox_id == mailbox.id, FolderRule.enabled.is_(True))))
            kinds = watched_kinds(mailbox)
            db.session.remove()
        cursors = self._cursors()
        connector = factory(account)
        connector.__enter__()
        try:
            folders = connector.list_folders()
            inbox = find_inbox(folders)
            watched = [f for f in folders if (inbox is not None and f.key == inbox.key)
                       or f.key in keys]
            self.items = connector.item_store() if kinds and isinstance(
                connector, WatchesItems) else None
            watched += self._collections(kinds)
        except BaseException:
            connector.__exit__(None, None, None)
            raise
        return connector, watched, cursors

    def _collections(self, kinds: tuple[str, ...]) -> list[Collection]:
        """The collections the item sync reads, of the kinds watched. A kind whose folders
        the account may not open is left out (the item sync says why); mail is still
        watched."""
        found: list[Collection] = []
        if self.items is None:
            return found
        for kind in kinds:
            try:
                found += self.items.collections(kind)
            except ConnectorError as exc:
                if exc.severity not in ("auth", "folder", HELD):
                    raise
                log.info("push: mailbox %s: %ss not watched (%s)", self.mailbox_id, kind,
                         _detail(exc))
        return found

    def _watch(self) -> None:
        self.healthy = False
        opened = self._open()
        if opened is None:
            return
        connector, watched, cursors = opened
        try:
            if not watched:
                self.done.wait(REFRESH_SECONDS)
                return
            if self._mark(connector, watched, cursors):
                self._flag()  # mail came while nobody watched (the worker was down)
                self.pending_since = utcnow()
            log.debug("push: mailbox %s: watching %d folder(s) and collection(s)",
                      self.mailbox_id, len(watched))
            while not self.stopped:
                wait = RECHECK_SECONDS if self.pending_since else WAIT_SECONDS
                changed = connector.wait_for_changes(watched, wait)
                if self.stopped:
                    return
                if not self.healthy:
                    self.healthy = True
                    self.backoff.reset()
                    if self.alerted:
                        self._clear_alert()
                if changed:
                    self._flag()
                    if FOLDERS_CHANGED in changed:  # renamed, moved or deleted: list again
                        self.pending_since = utcnow()
                        return
                    self._mark(connector, [f for f in watched if f.key in changed],
                               self._cursors())
                    self.pending_since = utcnow()  # after marking: later mail wakes the wait
                elif self.pending_since is not None:
                    self._follow_up()
        finally:
            try:
                connector.__exit__(None, None, None)
            except Exception:  # closing a broken session
                log.debug("push: closing a connection failed", exc_info=True)

    def _mark(self, connector, targets: list[Folder | Collection],
              cursors: dict[str, str | None]) -> bool:
        """Read each folder (collection) from the stored cursor (one message or item at
        most), so the connector knows its current state: a wait that starts after a change
        returns at once. True when one has changes the last run did not cover."""
        behind = False
        for target in targets:
            try:
                if isinstance(target, Collection):
                    items = self.items.changes(target, cursors.get(target.key), limit=1)
                    behind |= bool(items.items or items.removed)
                else:
                    changes = connector.fetch_changes(target, cursors.get(target.key), limit=1)
                    behind |= bool(changes.messages or changes.removed)
            except ConnectorError as exc:
                if exc.severity not in ("folder", "message"):
                    raise
        return behind

    def _alert(self, exc: BaseException) -> None:
        """Push has failed several times in a row: say so (a warning on the mailbox), since
        its mail now waits for the scheduled runs."""
        from server.sync.engine import alerts
        with self.app.app_context():
            try:
                mailbox = db.session.get(Mailbox, self.mailbox_id)
                if mailbox is None:
                    return
                alerts.raise_alert(
                    "warning", PUSH_ALERT,
                    N_("New mail in %(address)s cannot be watched for (%(problem)s); until it "
                       "can, it is found at the scheduled runs, minutes later.") % {
                           "address": mailbox.email_address, "problem": _detail(exc)}, mailbox)
                db.session.commit()
                self.alerted = True
            except Exception as failure:
                db.session.rollback()
                log.warning("push: mailbox %s: raising an alert failed (%s)", self.mailbox_id,
                            _detail(failure))
            finally:
                db.session.remove()

    def _clear_alert(self) -> None:
        from server.sync.engine import alerts
        with self.app.app_context():
            try:
                alerts.clear(PUSH_ALERT, self.mailbox_id)
                db.session.commit()
                self.alerted = False
            except Exception as failure:
                db.session.rollback()
                log.warning("push: mailbox %s: clearing an alert failed (%s)", self.mailbox_id,
                            _detail(failure))
            finally:
                db.session.remove()

    def _cursors(self) -> dict[str, str | None]:
        """The stored cursors of the mailbox's folders and item collections, by key (a
        session's folder and collection keys are the server's folder ids or directories:
        never the same)."""
        with self.app.app_context():
            try:
                return {**dict(db.session.execute(
                    select(ItemCursor.collection_key, ItemCursor.cursor)
                    .where(ItemCursor.mailbox_id == self.mailbox_id)).all()),
                    **dict(db.session.execute(
                        select(FolderState.folder_key, FolderState.cursor)
                        .where(FolderState.mailbox_id == self.mailbox_id)).all())}
            finally:
                db.session.remove()

    def _signed_in_since(self, when: datetime) -> bool:
        """Whether a run of the mailbox succeeded after ``when``."""
        with self.app.app_context():
            try:
                last = db.session.scalar(select(Mailbox.last_success_on).where(
                    Mailbox.id == self.mailbox_id))
            finally:
                db.session.remove()
        return last is not None and last > when

    def _flag(self, refused: Refused | None = None) -> None:
        with self.app.app_context():
            try:
                scheduler.flag_changed(self.mailbox_id)
            finally:
                db.session.remove()
        self.on_change(self.mailbox_id, refused)

    def _follow_up(self) -> None:
        """Keep the mailbox flagged until a run that started after the change exists."""
        with self.app.app_context():
            try:
                started = db.session.scalar(select(SyncRun.id).where(
                    SyncRun.mailbox_id == self.mailbox_id,
                    SyncRun.started_on >= self.pending_since).limit(1))
                if started is not None:
                    self.pending_since = None
                    return
                if scheduler.flag_changed(self.mailbox_id):
                    self.on_change(self.mailbox_id, None)
            finally:
                db.session.remove()


class PushWatchers:
    """The worker's watchers: started, refreshed and stopped together."""

    def __init__(self, app, stopping: threading.Event, on_change):
        self.app, self.stopping, self.on_change = app, stopping, on_change
        self.watchers: dict[int, tuple[Watcher, tuple]] = {}
        self.thread = threading.Thread(target=self._manage, name="push-manager", daemon=True)
        self._conn = None
        with app.app_context():
            self.limit = max(0, int(app.config.get("REGARDING_SYNC_PUSH_MAX", 500)))
            self.postgres = db.engine.dialect.name == "postgresql"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        for watcher, _ in self.watchers.values():
            watcher.stop()
        self.thread.join(timeout=5)
        deadline = time.monotonic() + 3  # daemons: one still in a wait ends with the process
        for watcher, _ in list(self.watchers.values()):
            watcher.join(timeout=max(0.0, deadline - time.monotonic()))

    @property
    def watching(self) -> list[int]:
        return sorted(i for i, (w, _) in self.watchers.items() if w.is_alive())

    def _manage(self) -> None:
        writer_thread()
        while not self.stopping.is_set():
            try:
                self._refresh()
            except Exception as exc:
                log.warning("push: refreshing the watched mailboxes failed (%s)", _detail(exc))
                self._drop_locks()
            self.stopping.wait(REFRESH_SECONDS)
        for watcher, _ in self.watchers.values():
            watcher.stop()
        self._drop_locks()

    def _refresh(self) -> None:
        with self.app.app_context():
            try:
                targets = watch_targets(self.limit)
            finally:
                db.session.remove()
        for mailbox_id in list(self.watchers):
            watcher, signature = self.watchers[mailbox_id]
            if targets.get(mailbox_id) != signature or not watcher.is_alive():
                watcher.stop()
                del self.watchers[mailbox_id]
                self._unlock(mailbox_id)
        for mailbox_id, signature in targets.items():
            if mailbox_id in self.watchers or not self._lock(mailbox_id):
                continue
            watcher = Watcher(self.app, mailbox_id, self.on_change, self.stopping)
            self.watchers[mailbox_id] = (watcher, signature)
            watcher.start()

    # -- one watcher per mailbox across workers (PostgreSQL advisory locks) ------------------

    def _connection(self):
        if self._conn is None:
            with self.app.app_context():
                self._conn = db.engine.connect()
        return self._conn

    def _lock(self, mailbox_id: int) -> bool:
        if not self.postgres:
            return True
        conn = self._connection()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :o)"),
                           {"c": ADVISORY_CLASS, "o": mailbox_id}).scalar()
        conn.commit()
        return bool(got)

    def _unlock(self, mailbox_id: int) -> None:
        if not self.postgres or self._conn is None:
            return
        self._conn.execute(text("SELECT pg_advisory_unlock(:c, :o)"),
                           {"c": ADVISORY_CLASS, "o": mailbox_id})
        self._conn.commit()

    def _drop_locks(self) -> None:
        """Closing the connection gives every advisory lock back; watchers restart on the
        next refresh under fresh locks."""
        if self._conn is None:
            return
        for watcher, _ in self.watchers.values():
            watcher.stop()
        self.watchers.clear()
        try:
            self._conn.close()
        except Exception:
            log.debug("push: closing the lock connection failed", exc_info=True)
        self._conn = None
