"""The sync worker (``flask --app server sync worker``): a loop that claims due mailboxes and
syncs them on a small thread pool, and push watchers that make a mailbox due the moment
new mail arrives. A slot the mailboxes leave free runs the items of bulk mailbox jobs
(``sync.admin.jobs``: approve, Test & Enable, apply defaults), claimed with leases too.

One pass over a claimed mailbox: ``engine.sync_mailbox`` (incoming mail, in batches, each
committed with its cursor), then ``outgoing.send_pending`` (the CRM's outgoing email),
then the lease is given back. A free slot claims up to ``REGARDING_SYNC_IDLE_BATCH`` due
mailboxes at once and visits them together (``engine.idle``): those whose folders have
nothing new (a local store's directory times say so) get their outcome, run row and
released lease in a few statements for the whole batch (their outgoing mail sent first);
the others wait for a slot and get the full pass. While it runs a heartbeat thread renews
the worker's leases; a lease that could not be renewed and was taken over by another
worker stops that run at its next batch boundary (and leaves an idle batch's visit of
that mailbox unwritten).

Crash-proof: an error in one mailbox is logged (its kind, never a password or a message
body) and the worker goes on; a database that goes away is waited for. A worker killed
outright loses nothing: what a batch covers is committed with its cursor, and its leases
expire so other workers (or the same one restarted) take its mailboxes over.

About once an hour each worker gives a slot to deleting run rows older than
``REGARDING_SYNC_RUN_DAYS`` (``engine.history``); it refuses to start with a retention
shorter than the dashboard's window.

A mailbox asked for (a CRM change, a Graph notification, "Sync now", push) wakes the loop at
once: directly when it was asked in this process, else on PostgreSQL through the worker's
``wake_listener`` (``LISTEN``); without either the loop looks every
``REGARDING_SYNC_POLL_SECONDS``.

SIGTERM/SIGINT (``stop_event``): no new claims; running syncs stop after the batch in hand,
and every lease is given back.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import InterfaceError, OperationalError

from server.db import db, immediate_transactions, utcnow, writer_thread
from server.sync.engine import alerts, history, idle
from server.sync.engine.accounts import Refused
from server.sync.engine.outcome import acts_failed, send_failed
from server.sync.workers import scheduler, wake_listener
from server.sync.connectors.base import ConnectorError
from server.sync.models import Mailbox

log = logging.getLogger(__name__)

__all__ = ["WorkerStats", "default_worker_id", "run_worker"]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


class _Interrupted(BaseException):
    """Ends a run at a batch boundary: the worker is stopping, or its lease was lost.

    A BaseException so that the engine's safety net for bugs (which records a mailbox
    failure) lets it through: nothing failed, the rest is synced next time."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _detail(exc: BaseException) -> str:
    from server.sync.engine.quarantine import safe_detail  # the one place that knows what is safe
    return safe_detail(exc)


@dataclass
class WorkerStats:
    claimed: int = 0
    synced: int = 0
    failed: int = 0
    interrupted: int = 0
    sent: int = 0
    errors: int = 0
    pruned: int = 0  # old run rows deleted (engine.history)
    runs: list[tuple[int, str]] = field(default_factory=list)  # (mailbox id, status)


class Worker:
    """One worker process's scheduler loop, heartbeat and push watchers."""

    def __init__(self, app, worker_id: str, concurrency: int, stop_event: threading.Event,
                 push: bool, until_idle: bool):
        self.app, self.worker_id = app, worker_id[:120]
        self.concurrency = max(1, concurrency)
        self.stop = stop_event
        self.push, self.until_idle = push, until_idle
        self.wake = threading.Event()  # a run finished or push saw mail: look again now
        self.active: set[int] = set()
        self.lost: set[int] = set()
        self.lock = threading.Lock()
        self.stats = WorkerStats()
        self.next_alert_mail = 0.0  # monotonic time of the next alert email pass
        self.jobs: Future | None = None  # bulk mailbox jobs' items, in one free slot
        self.next_jobs = 0.0  # monotonic time to look for job items again after none
        self.next_prune = 0.0  # monotonic time of the next pass over old run history
        # Claimed leases an idle batch found work in: each waits for a slot and a full run.
        self.waiting: deque[scheduler.Lease] = deque()
        self.refused: dict[int, Refused] = {}  # sign-ins refused before the run (probe, push)
        with app.app_context():
            self.poll = max(0.05, scheduler.setting("REGARDING_SYNC_POLL_SECONDS"))
            self.lease = scheduler.lease_seconds()
            self.batch = max(1, scheduler.setting("REGARDING_SYNC_BATCH_SIZE"))
            self.budget = max(1, scheduler.setting("REGARDING_SYNC_RUN_MESSAGES"))
            self.idle_batch = max(1, scheduler.setting("REGARDING_SYNC_IDLE_BATCH"))
            self.run_days = history.retention_days()  # BadRetention: refuse to start
        # Claimed beyond the free slots for the next idle batch: none after a batch that
        # found more work than slots (a store that cannot probe, a wave of new mail).
        self.extra = self.idle_batch - 1

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        was = writer_thread()
        try:
            return self._run()
        finally:
            writer_thread(was)

    def _run(self) -> WorkerStats:
        with scheduler.worker_slot(self.app.config["SQLALCHEMY_DATABASE_URI"]) as sole:
            with self.app.app_context():
                if db.engine.dialect.name == "sqlite":
                    immediate_transactions(db.engine)
                # A sole SQLite worker knows every lease left behind is stale; elsewhere a
                # worker takes back at once what it held under the same name before a crash.
                stale = scheduler.release_all(None if sole else self.worker_id)
                history.close_abandoned(None if sole else self.worker_id)
                db.session.remove()
            if stale:
                log.info("worker %s: took back %d lease(s) left by a stopped worker",
                         self.worker_id, stale)
            heartbeat = threading.Thread(target=self._heartbeat, name="sync-heartbeat",
                                         daemon=True)
            heartbeat.start()
            watchers = self._start_push()
            scheduler.listen(self.wake.set)  # a mailbox was asked for: look now
            listener = self._start_listener()
            log.info("sync worker %s started (concurrency %d, push %s)", self.worker_id,
                     self.concurrency, "on" if watchers else "off")
            try:
                self._loop()
            finally:
                scheduler.unlisten(self.wake.set)
                self.stop.set()
                self.wake.set()
                if listener is not None:
                    listener.stop()
                if watchers is not None:
                    watchers.close()
                heartbeat.join(timeout=5)
                with self.app.app_context():
                    try:
                        scheduler.release_all(self.worker_id)
                    except Exception as exc:  # the leases expire anyway
                        log.warning("worker %s: leases not released (%s)", self.worker_id,
                                    _detail(exc))
                    db.session.remove()
                log.info("sync worker %s stopped (%d runs, %d failed)", self.worker_id,
                         self.stats.synced, self.stats.failed)
        return self.stats

    def _loop(self) -> None:
        running: dict[Future, int | None] = {}  # None: an idle batch or a prune
        backoff = 0.0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="sync",
                                initializer=writer_thread) as pool:
            try:
                while not self.stop.is_set():
                    for future in [f for f in running if f.done()]:
                        running.pop(future)
                    self.wake.clear()
                    jobs_busy = self.jobs is not None and not self.jobs.done()
                    free = self.concurrency - len(running) - jobs_busy
                    if free > 0 and self.run_days and time.monotonic() >= self.next_prune:
                        self.next_prune = float("inf")  # until this pass ends
                        future = pool.submit(self._prune)
                        running[future] = None
                        future.add_done_callback(lambda _f: self.wake.set())
                        free -= 1
                    while free > 0 and self.waiting:  # found busy by an idle batch
                        lease = self.waiting.popleft()
                        future = pool.submit(self._sync, lease)
                        running[future] = lease.mailbox_id
                        future.add_done_callback(lambda _f: self.wake.set())
                        free -= 1
                    try:
                        # One slot visits a batch: up to idle_batch more than the slots.
                        more = self.extra
                        leases = self._claim(free + more) if free > 0 and not self.waiting \
                            else []
                        backoff = 0.0
                    except Exception as exc:  # the database went away (or a bug): wait
                        backoff = min(30.0, max(1.0, backoff * 2))
                        what = ("the database cannot be reached"
                                if isinstance(exc, (OperationalError, InterfaceError))
                                else "claiming mailboxes failed")
                        log.error("worker %s: %s (%s); next try in %.0f s", self.worker_id,
                                  what, _detail(exc), backoff)
                        self.stop.wait(backoff)
                        continue
                    batch = [lease for lease in leases
                             if not (lease.requested or lease.took_over)] \
                        if self.idle_batch > 1 else []
                    if batch:
                        future = pool.submit(self._visit, batch, free)
                        running[future] = None
                        future.add_done_callback(lambda _f: self.wake.set())
                    for lease in leases:
                        if lease in batch:
                            continue
                        if len(running) >= self.concurrency - jobs_busy:
                            self.waiting.append(lease)
                            continue
                        future = pool.submit(self._sync, lease)
                        running[future] = lease.mailbox_id
                        future.add_done_callback(lambda _f: self.wake.set())
                    if free > len(leases) and not jobs_busy and not self.waiting and \
                            time.monotonic() >= self.next_jobs:
                        self.jobs = pool.submit(self._job_items)
                        self.jobs.add_done_callback(lambda _f: self.wake.set())
                        jobs_busy = True
                    if self.until_idle and not running and not leases and not jobs_busy \
                            and not self.waiting:
                        break
                    # Woken at once when a run ends or push saw mail; else look again later.
                    self.wake.wait(self.poll)
            finally:
                self.stop.set()  # running syncs stop after the batch in hand

    def _claim(self, free: int) -> list[scheduler.Lease]:
        with self.app.app_context():
            try:
                leases = scheduler.claim(self.worker_id, free)
            finally:
                db.session.remove()
        with self.lock:
            # Our own lease that expired while we still sync the mailbox (a heartbeat held up
            # longer than the lease) comes back as due: it is still being synced here.
            leases = [lease for lease in leases if lease.mailbox_id not in self.active]
            for lease in leases:
                self.active.add(lease.mailbox_id)
                self.lost.discard(lease.mailbox_id)
        self.stats.claimed += len(leases)
        return leases

    # -- one mailbox ------------------------------------------------------------------------

    def _sync(self, lease: scheduler.Lease) -> None:
        mailbox_id = lease.mailbox_id
        started = time.monotonic()
        next_sync_on, released = None, False
        with self.app.app_context():
            try:
                if lease.took_over:
                    history.close_abandoned(mailbox_id=mailbox_id)
                next_sync_on, released = self._run_one(mailbox_id)
                self._alert_mail()
            except _Interrupted as stop:
                self.stats.interrupted += 1
                db.session.rollback()
                history.interrupted(self.worker_id, mailbox_id, stop.why)
                log.info("worker %s: mailbox %s: run stopped at a batch boundary (%s)",
                         self.worker_id, mailbox_id, stop.why)
            except Exception as exc:  # never let one mailbox take the worker down
                self.stats.errors += 1
                db.session.rollback()
                log.error("worker %s: mailbox %s: unexpected error (%s); retried later",
                          self.worker_id, mailbox_id, _detail(exc))
                next_sync_on = utcnow() + timedelta(
                    seconds=int(self.app.config.get("REGARDING_SYNC_RETRY_SECONDS", 300)))
            finally:
                try:
                    db.session.rollback()
                    if not released:
                        scheduler.release(self.worker_id, mailbox_id, next_sync_on=next_sync_on)
                except Exception as exc:  # the lease expires by itself
                    log.warning("worker %s: mailbox %s: lease not released (%s)",
                                self.worker_id, mailbox_id, _detail(exc))
                finally:
                    with self.lock:
                        self.active.discard(mailbox_id)
                        self.lost.discard(mailbox_id)
                    db.session.remove()
        log.debug("worker %s: mailbox %s done in %.2f s", self.worker_id, mailbox_id,
                  time.monotonic() - started)

    def _visit(self, leases: list[scheduler.Lease], slots: int) -> None:
        """An idle batch (``engine.idle``): the idle mailboxes' outgoing mail sent, then
        their visits written together; the others wait for one of the ``slots`` and a
        full run, and those beyond them are given back at once (still due: no lease is
        held for long without a run, and a mailbox asked for meanwhile is claimed first).
        A lease lost meanwhile is left to its new holder."""
        ids = [lease.mailbox_id for lease in leases]
        full, written, refused = ids, set(), {}
        with self.app.app_context():
            try:
                if self.stop.is_set():  # given back with the rest when the worker stops
                    full = []
                    return
                probed = idle.probe(ids)
                full, refused = probed.full, probed.refused
                visits = []
                for visit in probed.idle:
                    mailbox = probed.mailboxes[visit.mailbox_id]
                    if _sends_mail(mailbox):
                        if self.stop.is_set() or not self._sent(mailbox):
                            full.append(visit.mailbox_id)  # its run sends, or says why not
                            continue
                    visits.append(visit)
                with self.lock:
                    visits = [v for v in visits if v.mailbox_id not in self.lost]
                written = idle.record(self.worker_id, visits)
                for visit in visits:  # one log line per batch, not per visit
                    if visit.mailbox_id in written:
                        self.stats.synced += 1
                        self.stats.runs.append((visit.mailbox_id, "success"))
                    else:
                        self.stats.interrupted += 1
                log.debug("worker %s: idle batch of %d: %d visited, %d to run, %d lost",
                          self.worker_id, len(ids), len(written), len(full),
                          len(visits) - len(written))
                if written:  # (not before the full runs: one pass per 30 s, after them)
                    self._alert_mail()
            except Exception as exc:  # the batch's mailboxes get full runs
                self.stats.errors += 1
                db.session.rollback()
                log.error("worker %s: idle batch failed (%s); its mailboxes get full runs",
                          self.worker_id, _detail(exc))
                full = [i for i in ids if i not in written]
            finally:
                again, keep, surplus = set(full), [], []
                with self.lock:
                    for lease in leases:
                        if lease.mailbox_id in again and lease.mailbox_id not in self.lost \
                                and not self.stop.is_set():
                            (keep if len(keep) < max(1, slots) else surplus).append(lease)
                if surplus:
                    try:
                        scheduler.release_many(self.worker_id,
                                               [lease.mailbox_id for lease in surplus])
                    except Exception as exc:  # the leases expire by themselves
                        log.warning("worker %s: leases not given back (%s)", self.worker_id,
                                    _detail(exc))
                db.session.remove()
                self.extra = 0 if surplus else self.idle_batch - 1
                with self.lock:  # a lease neither written nor kept is given back at stop
                    self.waiting.extend(keep)
                    kept = {lease.mailbox_id for lease in keep}
                    self.refused.update((i, r) for i, r in refused.items() if i in kept)
                    for lease in leases:
                        if lease.mailbox_id not in kept:
                            self.active.discard(lease.mailbox_id)
                            self.lost.discard(lease.mailbox_id)

    def _sent(self, mailbox: Mailbox) -> bool:
        """An idle mailbox's due outgoing mail sent (``_send``); False when something
        unexpected failed (its full run tries again)."""
        try:
            self._send(mailbox)
            return True
        except Exception as exc:
            db.session.rollback()
            log.warning("worker %s: mailbox %s: sending failed (%s); retried by its run",
                        self.worker_id, mailbox.id, _detail(exc))
            return False

    def _run_one(self, mailbox_id: int) -> tuple[datetime | None, bool]:
        """Sync one mailbox; returns a next run time to set on release (or None), and
        whether the lease was given back already (with the run's outcome: nothing is
        sent or synced after the mail)."""
        from server.sync.engine.run import load_mailbox, sync_mailbox

        def progress(_event) -> None:
            if self.stop.is_set():
                raise _Interrupted("The worker is stopping; the rest is synced by the next run.")
            if mailbox_id in self.lost:
                raise _Interrupted("The worker lost its lease on this mailbox (it could not "
                                   "renew it in time) and left it to another worker.")

        held = load_mailbox(mailbox_id)  # the run uses it; after an idle one, no reload
        after = held is not None and (_sends_mail(held) or held.syncs_items)
        refused = self.refused.pop(mailbox_id, None)  # (one dict operation: no lock)
        result = sync_mailbox(mailbox_id, worker=self.worker_id, limit=self.batch,
                              progress=progress, max_messages=self.budget,
                              lease_owner=None if after else self.worker_id,
                              connector_factory=refused and held and
                              refused.connector_factory(held))
        self._count(mailbox_id, result)
        if result.released:
            return None, True
        mailbox = db.session.get(Mailbox, mailbox_id) if held is not None else None
        if mailbox is None or not mailbox.enabled:
            return None, False
        if not self.stop.is_set() and _sends_mail(mailbox):
            self._send(mailbox)
        if not self.stop.is_set() and mailbox.syncs_items:
            self._sync_items(mailbox)
        if result.status == "skipped":
            # The engine leaves mailboxes it does not read alone (outgoing only, or mail
            # arriving through a forward mailbox): come back after the usual interval.
            base = int(self.app.config.get("REGARDING_SYNC_INTERVAL_SECONDS", 300))
            return utcnow() + timedelta(
                seconds=max(base, mailbox.sync_interval_seconds or 0)), False
        return None, False

    def _count(self, mailbox_id: int, result) -> None:
        self.stats.runs.append((mailbox_id, result.status))
        if result.status == "failure":
            self.stats.failed += 1
            log.warning("worker %s: mailbox %s: sync failed (%s)", self.worker_id, mailbox_id,
                        result.error_code)
        elif result.status == "success":
            self.stats.synced += 1
            log.info("worker %s: mailbox %s: %d read, %d tracked, %d not tracked, %d "
                     "quarantined%s", self.worker_id, mailbox_id, result.fetched, result.tracked,
                     result.skipped, result.quarantined, " (more waiting)" if result.more else "")

    def _job_items(self) -> None:
        """A few items of bulk mailbox jobs (``sync.admin.jobs``: approve, Test & Enable,
        apply defaults), claimed with leases like mailboxes; a failure is logged."""
        from server.sync.admin import jobs
        with self.app.app_context():
            try:
                claimed = jobs.claim(self.worker_id, 5)
                if not claimed:  # look again in a while, not on every turn of the loop
                    self.next_jobs = time.monotonic() + max(5 * self.poll, 2.0)
                for item_id in claimed:
                    jobs.run_item(self.worker_id, item_id)
            except Exception as exc:
                self.next_jobs = time.monotonic() + 30
                db.session.rollback()
                log.warning("worker %s: bulk job items failed (%s); tried again later",
                            self.worker_id, _detail(exc))
            finally:
                db.session.remove()

    def _prune(self) -> None:
        """This worker's pass over old run history (``history.worker_pass``)."""
        with self.app.app_context():
            try:
                deleted, again = history.worker_pass(self.worker_id, self.run_days)
                self.stats.pruned += deleted
            finally:
                self.next_prune = time.monotonic() + again
                db.session.remove()

    def _sync_items(self, mailbox: Mailbox) -> None:
        """Appointments, contacts and tasks, after the mail: their failure is the mailbox's
        acts status and an alert, never the mail's."""
        from server.sync.acts.run import sync_items
        mailbox_id = mailbox.id
        try:
            sync_items(mailbox_id, limit=self.batch)
        except ConnectorError as exc:
            db.session.rollback()
            acts_failed(db.session.get(Mailbox, mailbox_id), exc)
            db.session.commit()
            log.warning("worker %s: mailbox %s: item sync failed (%s)", self.worker_id,
                        mailbox_id, exc.code)
            return
        alerts.clear("acts_failed", db.session.get(Mailbox, mailbox_id))
        db.session.commit()

    def _alert_mail(self) -> None:
        """Queue alert email digests (``alert_mail``), at most every 30 seconds per worker;
        a failure is logged and never touches the run."""
        from server.sync.admin.alert_mail import deliver
        with self.lock:
            if time.monotonic() < self.next_alert_mail:
                return
            self.next_alert_mail = time.monotonic() + 30
        try:
            deliver()
        except Exception as exc:
            db.session.rollback()
            log.warning("worker %s: alert emails not queued (%s); tried again later",
                        self.worker_id, _detail(exc))

    def _send(self, mailbox: Mailbox) -> None:
        from server.sync.engine.outgoing import send_pending
        mailbox_id = mailbox.id
        try:
            counts = send_pending(mailbox_id)
        except ConnectorError as exc:
            db.session.rollback()
            send_failed(db.session.get(Mailbox, mailbox_id), exc)
            db.session.commit()
            log.warning("worker %s: mailbox %s: sending failed (%s)", self.worker_id,
                        mailbox_id, exc.code)
            return
        self.stats.sent += counts.sent
        if counts.sent:
            mailbox = db.session.get(Mailbox, mailbox_id)
            mailbox.outgoing_status, mailbox.outgoing_message = "success", None
            alerts.clear("send_failed", mailbox)
            db.session.commit()
            log.info("worker %s: mailbox %s: %d email(s) sent", self.worker_id, mailbox_id,
                     counts.sent)

    # -- leases -----------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        writer_thread()
        every = max(0.2, self.lease / 3)
        while not self.stop.wait(every):
            with self.lock:
                held = set(self.active)
            if not held:
                continue
            with self.app.app_context():
                try:
                    kept = scheduler.renew(self.worker_id, held)
                except Exception as exc:
                    log.warning("worker %s: leases not renewed (%s)", self.worker_id,
                                _detail(exc))
                    continue
                finally:
                    db.session.remove()
            with self.lock:
                gone = (held - kept) & self.active
                self.lost |= gone
            for mailbox_id in gone:
                log.warning("worker %s: lease on mailbox %s was lost; its run stops at the "
                            "next batch", self.worker_id, mailbox_id)

    # -- wake-ups and push -------------------------------------------------------------------

    def _start_listener(self):
        """PostgreSQL: hear the mailboxes asked for in other processes (``wake_listener``)."""
        with self.app.app_context():
            if db.engine.dialect.name != "postgresql":
                return None
            params = wake_listener.connect_args(
                self.app.config.get("REGARDING_SYNC_LISTEN_URL") or db.engine.url)
        return wake_listener.WakeListener(params, self.worker_id).start()

    def _pushed(self, mailbox_id: int, refused: Refused | None) -> None:
        """A watcher flagged ``mailbox_id`` (``refused``: for its run to take). Refusals no
        run took in time go (another worker ran the mailbox, or it was turned off)."""
        if refused is not None:
            for key, old in list(self.refused.items()):
                if old.stale(refused.at):
                    self.refused.pop(key, None)
            self.refused[mailbox_id] = refused
        self.wake.set()

    def _start_push(self):
        if not self.push:
            return None
        from server.sync.workers.push import PushWatchers
        watchers = PushWatchers(self.app, self.stop, on_change=self._pushed)
        watchers.start()
        return watchers


def _sends_mail(mailbox: Mailbox) -> bool:
    from server.crm.models import Organization
    profile = mailbox.server_profile
    if mailbox.outgoing_method != "server_side_sync" or not mailbox.outgoing_enabled \
            or profile is None or not profile.outgoing_protocol:
        return False
    org = db.session.get(Organization, 1)
    return mailbox.approved_for(org)


def run_worker(app, *, worker_id: str | None = None, concurrency: int = 4,
               stop_event: threading.Event | None = None, push: bool | None = None,
               until_idle: bool = False) -> WorkerStats:
    """Run a sync worker until ``stop_event`` is set (or, with ``until_idle``, until nothing
    is due and nothing runs). ``push`` defaults to ``REGARDING_SYNC_PUSH``. Raises
    ``scheduler.WorkerRefused`` when another worker already runs on the SQLite database."""
    if push is None:
        push = bool(app.config.get("REGARDING_SYNC_PUSH", True))
    worker = Worker(app, worker_id or default_worker_id(), concurrency,
                    stop_event or threading.Event(), push, until_idle)
    return worker.run()

