"""Real worker processes (``flask --app server sync worker``) over real mail stores:

* two workers on PostgreSQL share 200 Maildir mailboxes: no mailbox is synced by both at
  once (every run's start and end are in ``SyncRun``), everything is synced, and the
  mailboxes of a worker killed with SIGKILL are taken over once its leases expire;
* crash safety: a worker killed with SIGKILL at 50 random moments of a 2,000-message sync
  and started again each time leaves no duplicate activity and no message undecided.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.crm.activities import Email
from server.db import db, utcnow
from server.sync.connectors.maildir import create_maildir, deliver, mailbox_root
from server.sync.models import Mailbox, MessageDecision, QuarantinedMessage, SyncRun
from tests.sync import world as w
from tests.sync.workers import WorkerProcess, wait_until, worker_env

LEASE = 3  # seconds: short, so a killed worker's mailboxes come free quickly


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def maildir_mailboxes(crm, store, count: int, per_box: int) -> list[int]:
    """``count`` enabled Maildir mailboxes with ``per_box`` messages from a contact each."""
    prof = w.profile("maildir", maildir_root=str(store), max_connections=100)
    ids = []
    for i in range(count):
        address = f"seller{i}@org.example"
        root = create_maildir(mailbox_root(store, address), ["Sent"])
        for n in range(per_box):
            deliver(root, "INBOX", w.raw(subject=f"Order {n}", mid=f"o{n}.{i}@customer.example",
                                         body=f"Order {n} of seller {i}.\r\n" * 40))
        ids.append(w.mailbox(crm.bob, prof=prof, email_address=address,
                             tracking_option="from_crm_records").id)
    db.session.commit()
    return ids


def _scheduled_later(mailbox_id: int) -> bool:
    db.session.rollback()
    box = db.session.get(Mailbox, mailbox_id)
    later = box.next_sync_on is not None and box.next_sync_on > utcnow() + timedelta(seconds=60)
    db.session.rollback()
    return later


def counts() -> tuple[int, int, int]:
    """(activities, distinct Message-IDs among them, decisions), read fresh."""
    db.session.rollback()
    emails = db.session.scalar(select(func.count()).select_from(Email))
    distinct = db.session.scalar(select(func.count(func.distinct(Email.message_id))))
    decided = db.session.scalar(select(func.count()).select_from(MessageDecision))
    db.session.rollback()
    return emails, distinct, decided


@pytest.mark.both_databases
@pytest.mark.slow
def test_two_workers_share_200_mailboxes_and_take_over_from_a_killed_one(
        app, crm, tmp_path, db_backend):
    if db_backend != "postgresql":
        pytest.skip("two worker processes need PostgreSQL: SQLite runs one worker")
    ids = maildir_mailboxes(crm, tmp_path / "store", 200, 4)
    env = worker_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     REGARDING_SYNC_LEASE_SECONDS=LEASE, REGARDING_SYNC_POLL_SECONDS=0.2,
                     REGARDING_SYNC_BATCH_SIZE=2)
    first = WorkerProcess("worker-1", env, "--concurrency", "3", "--no-push")
    second = WorkerProcess("worker-2", env, "--concurrency", "3", "--no-push")
    workers = (first, second)
    try:
        first.wait_started()
        second.wait_started()

        def synced() -> int:
            db.session.rollback()
            done = db.session.scalar(select(func.count(func.distinct(SyncRun.mailbox_id)))
                                     .where(SyncRun.finished_on.is_not(None),
                                            SyncRun.error_code.is_(None)))
            db.session.rollback()
            return done

        # Let both work for a while, then kill the first outright in the middle of its runs.
        wait_until(lambda: synced() >= 50 and first_holds_leases() and first_runs_open(), 180,
                   "both workers busy, the first with leases and runs under way",
                   workers=workers)
        first.kill()
        killed_at = utcnow()
        db.session.rollback()
        # Runs cut short by the kill (a run can also end between the check and the kill).
        cut_short = set(db.session.scalars(select(SyncRun.id).where(
            SyncRun.worker == "worker-1", SyncRun.finished_on.is_(None))))
        db.session.rollback()
        orphaned = dict(db.session.execute(select(Mailbox.id, Mailbox.lease_expires_on).where(
            Mailbox.lease_owner == "worker-1")).all())
        assert orphaned, "the killed worker held no lease"

        def taken_over() -> bool:
            # A mailbox counts as synced after its first successful run; one the killed
            # worker held for a later batch is taken over only once its lease runs out.
            db.session.rollback()
            done = set(db.session.scalars(select(SyncRun.mailbox_id).where(
                SyncRun.worker == "worker-2", SyncRun.started_on > killed_at,
                SyncRun.mailbox_id.in_(orphaned))))
            db.session.rollback()
            return done == set(orphaned)

        wait_until(lambda: synced() == 200 and taken_over(), 600,
                   "all mailboxes synced and the killed worker's taken over", workers=workers)
        assert second.stop() == 0
    finally:
        for worker in workers:
            worker.kill()

    runs = defaultdict(list)
    for run in db.session.scalars(select(SyncRun).order_by(SyncRun.started_on)):
        runs[run.mailbox_id].append(run)
    assert set(runs) == set(ids)
    both = {run.worker for mailbox_runs in runs.values() for run in mailbox_runs}
    assert both == {"worker-1", "worker-2"}
    # No mailbox was ever synced by the two workers at once. A run of the killed worker
    # ends when it was killed at the latest.
    for mailbox_runs in runs.values():
        spans = []
        for run in mailbox_runs:
            end = run.finished_on or killed_at
            if run.worker == "worker-1":
                end = min(end, killed_at)
            spans.append((run.started_on, end, run.worker))
        spans.sort()
        for (_, end, who), (start, _, other) in zip(spans, spans[1:]):
            assert end <= start, f"{who} and {other} overlapped on a mailbox"
    # The killed worker's mailboxes were taken over, and only after its leases ran out.
    for mailbox_id, expires in orphaned.items():
        later = [r for r in runs[mailbox_id] if r.worker == "worker-2" and r.started_on > killed_at]
        assert later, f"mailbox {mailbox_id} was not taken over"
        assert later[0].started_on >= expires
    # Every run the kill cut short was closed as abandoned by the worker that took over.
    closed = {r.id: r.error_code for mailbox_runs in runs.values() for r in mailbox_runs
              if r.id in cut_short}
    assert closed == dict.fromkeys(cut_short, "abandoned")
    # Everything synced exactly once.
    emails, distinct, decided = counts()
    assert emails == distinct == decided == 200 * 4
    assert db.session.scalar(select(func.count()).select_from(Mailbox).where(
        Mailbox.lease_owner.is_not(None))) == 0


def kill_repeatedly(env: dict, times: int, rng: random.Random, longest: float,
                    progress, done=lambda _progress: False) -> list:
    """Start a worker and kill it (SIGKILL) up to ``longest`` seconds after it started,
    ``times`` times or until ``done(progress())``; ``progress()`` after each kill."""
    seen = []
    for _ in range(times):
        if seen and done(seen[-1]):
            break
        worker = WorkerProcess("crash", env, "--concurrency", "1", "--no-push")
        try:
            worker.wait_started()
            time.sleep(rng.uniform(0.0, longest))
        finally:
            worker.kill()
        seen.append(progress())
    return seen


def first_runs_open() -> bool:
    db.session.rollback()
    running = db.session.scalar(select(func.count()).select_from(SyncRun).where(
        SyncRun.worker == "worker-1", SyncRun.finished_on.is_(None)))
    db.session.rollback()
    return bool(running)


def first_holds_leases() -> bool:
    db.session.rollback()
    held = db.session.scalar(select(func.count()).select_from(Mailbox).where(
        Mailbox.lease_owner == "worker-1", Mailbox.lease_expires_on > utcnow()))
    db.session.rollback()
    return bool(held)


@pytest.mark.slow
def test_a_worker_killed_50_times_during_a_2000_message_sync_loses_and_duplicates_nothing(
        app, crm, tmp_path):
    store = tmp_path / "store"
    (mailbox_id,) = maildir_mailboxes(crm, store, 1, 0)
    root = mailbox_root(store, "seller0@org.example")
    rng = random.Random(20240305)
    for n in range(2000):  # some replies: threads
        parent = f"<o{n - 1}@customer.example>" if n % 7 == 0 and n else None
        deliver(root, "INBOX", w.raw(subject=f"Order {n}", mid=f"o{n}@customer.example",
                                     body=f"Line of order {n}.\r\n" * rng.randint(5, 200),
                                     **({"In_Reply_To": parent} if parent else {})))
    box = db.session.get(Mailbox, mailbox_id)
    box.tracking_option = "all"
    db.session.commit()
    env = worker_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     REGARDING_SYNC_LEASE_SECONDS=LEASE, REGARDING_SYNC_POLL_SECONDS=0.1,
                     REGARDING_SYNC_BATCH_SIZE=25, REGARDING_SYNC_RUN_MESSAGES=400,
                     # In-process parsing: starting a parse pool takes longer than the kill
                     # window on a loaded machine (a killed pool: tests/sync/test_parse_pool.py).
                     REGARDING_SYNC_PARSE_PROCESSES="0")
    # A batch of 25 takes well under 0.1 s: kills within 0.4 s of the start land at every
    # stage of a run (claiming, fetching, writing, committing).
    # Up to 50 kills while the sync is under way (a fast machine finishes it sooner: the
    # kills stop then, and the final worker checks that nothing is left to do).
    progress = kill_repeatedly(env, 50, rng, 0.4, lambda: counts()[2], lambda p: p >= 2000)
    assert progress[-1] > progress[0], "the killed workers never got anywhere"
    mid_sync = sum(1 for p in progress if 0 < p < 2000)
    assert mid_sync >= 10, f"only {mid_sync} kills landed during the sync: more messages"

    final = WorkerProcess("crash", env, "--concurrency", "1", "--no-push")
    try:
        final.wait_started()
        wait_until(lambda: counts()[2] >= 2000, 600, "every message decided", workers=[final])
        # The run that decided the last messages may have stopped at its budget (due again at
        # once); the next run finds nothing new and schedules the mailbox for later.
        wait_until(lambda: _scheduled_later(mailbox_id), 120, "an idle run scheduled later",
                   workers=[final])
        assert final.stop() == 0
    finally:
        final.kill()
    emails, distinct, decided = counts()
    quarantined = db.session.scalar(select(func.count()).select_from(QuarantinedMessage))
    assert quarantined == 0
    assert decided == 2000  # every message has its decision (tracked or why not)
    assert emails == distinct == 2000  # each tracked once: no duplicates, none missing
    identities = set(db.session.scalars(select(MessageDecision.identity)))
    assert identities == {f"o{n}@customer.example" for n in range(2000)}
    threaded = db.session.scalar(select(func.count()).select_from(Email).where(
        Email.parent_activity_id.is_not(None)))
    assert threaded > 0
    box = db.session.get(Mailbox, mailbox_id)
    assert box.lease_owner is None and box.incoming_status == "success"
    assert box.next_sync_on > utcnow() + timedelta(seconds=60)


def _items() -> tuple[int, int, int, int, int]:
    """(appointments, their distinct UIDs, contacts, their distinct UIDs, item links)."""
    from server.crm.activities import Appointment
    from server.crm.models import Contact
    from server.sync.models import ItemLink
    db.session.rollback()
    found = (db.session.scalar(select(func.count(Appointment.id))),
             db.session.scalar(select(func.count(func.distinct(Appointment.global_object_id)))),
             db.session.scalar(select(func.count(Contact.id)).where(Contact.contact_uid.is_not(None))),
             db.session.scalar(select(func.count(func.distinct(Contact.contact_uid)))),
             db.session.scalar(select(func.count(ItemLink.id))))
    db.session.rollback()
    return found


@pytest.mark.slow
def test_a_worker_killed_during_a_2000_item_calendar_and_address_book_sync(
        app, make_user, radicale, tmp_path):
    """The same for appointments and contacts: 1,000 events (a tenth of them series) and
    1,000 cards from Radicale, the worker killed at random moments and started again: each
    item is one record and one link in the end."""
    from tests.sync.acts.conftest import RadicaleSide, event, fill
    side = RadicaleSide(radicale)
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    tracked = "CATEGORIES:Tracked to Regarding\r\n"
    fill(side, ann, {"appointment": {
        f"e{n}": event(f"e{n}", f"Meeting {n}", tracked + ("RRULE:FREQ=WEEKLY;COUNT=4\r\n"
                                                           if n % 10 == 0 else ""))
        for n in range(1000)},
        "contact": {
        f"c{n}": (f"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:c{n}\r\nFN:Person {n}\r\nN:{n};Person;;;\r\n"
                  f"EMAIL:p{n}@customer.example\r\nCATEGORIES:Tracked to Regarding\r\nEND:VCARD\r\n")
        for n in range(1000)}})
    env = worker_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     REGARDING_SYNC_LEASE_SECONDS=LEASE, REGARDING_SYNC_POLL_SECONDS=0.1,
                     REGARDING_SYNC_BATCH_SIZE=25)
    rng = random.Random(20261205)
    progress = kill_repeatedly(env, 15, rng, 1.5, lambda: _items()[4])
    assert progress[-1] > 0, "the killed workers never got anywhere"
    final = WorkerProcess("crash", env, "--concurrency", "1", "--no-push")
    try:
        final.wait_started()
        wait_until(lambda: _items()[4] >= 2000, 600, "every item linked", workers=[final])
        wait_until(lambda: _scheduled_later(box.id), 120, "an idle run scheduled later",
                   workers=[final])
        assert final.stop() == 0
    finally:
        final.kill()
    assert _items() == (1000, 1000, 1000, 1000, 2000)
    assert progress[0] < 2000, "the first worker finished before it was killed: more items"
