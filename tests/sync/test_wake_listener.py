"""A mailbox asked for in one process wakes the sync workers of every process
(``scheduler.ask_for_sync``, ``workers.wake_listener``):

* in the process that asked, its workers are woken when the transaction commits, not when
  it rolls back (SQLite and PostgreSQL);
* on PostgreSQL a real worker process (``flask --app server sync worker``) polling once an
  hour, with the mailbox's next run an hour off, syncs a mailbox asked for in the test's
  process at once: only the ``NOTIFY`` of the committed change can have brought it;
* a rolled-back change sends no notification (a listener of the test's own hears only the
  committed one before a marker sent after both);
* the worker's listening connection (at ``REGARDING_SYNC_LISTEN_URL``), terminated on the
  server (``pg_terminate_backend``), connects again and wakes the worker as before.
"""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import select, text, update

from server.db import db, utcnow
from server.sync.connectors.maildir import create_maildir, deliver, mailbox_root
from server.sync.models import Mailbox, SyncRun
from server.sync.workers import scheduler
from server.sync.workers.wake_listener import connect_args
from tests.sync import world as w
from tests.sync.workers import WorkerProcess, wait_until, worker_env

pytestmark = pytest.mark.both_databases

HOUR = 3600
LISTENING = "listening for mailboxes asked for"


def maildir_mailboxes(crm, store, count: int) -> list[int]:
    """``count`` enabled Maildir mailboxes with a message each, next due in an hour."""
    prof = w.profile("maildir", maildir_root=str(store), max_connections=100)
    ids = []
    for i in range(count):
        address = f"seller{i}@org.example"
        root = create_maildir(mailbox_root(store, address), ["Sent"])
        deliver(root, "INBOX", w.raw(subject=f"Order {i}", mid=f"o{i}@customer.example"))
        box = w.mailbox(crm.bob, prof=prof, email_address=address,
                        tracking_option="from_crm_records")
        box.next_sync_on = utcnow() + timedelta(seconds=HOUR)
        ids.append(box.id)
    db.session.commit()
    return ids


def runs(mailbox_id: int) -> list[SyncRun]:
    db.session.rollback()
    found = list(db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == mailbox_id,
                                                          SyncRun.finished_on.is_not(None))))
    db.session.rollback()
    return found


def synced_by_the_wake(mailbox_id: int, asked_on, due_on) -> None:
    """One run, started after the mailbox was asked for and long before it was due by
    time: the worker, polling hourly, was woken."""
    [run] = runs(mailbox_id)
    assert run.error_code is None and asked_on <= run.started_on < due_on - timedelta(minutes=30)


def next_due(mailbox_id: int):
    db.session.rollback()
    due = db.session.get(Mailbox, mailbox_id).next_sync_on
    db.session.rollback()
    return due


def test_the_workers_of_the_process_are_woken_at_commit_not_at_rollback(app, crm, tmp_path,
                                                                      woken):
    first, second, off = maildir_mailboxes(crm, tmp_path / "store", 3)
    db.session.execute(update(Mailbox).where(Mailbox.id == off).values(enabled=False))
    db.session.commit()
    assert scheduler.ask_for_sync([first]) == 1
    db.session.rollback()
    assert not woken and not db.session.get(Mailbox, first).sync_requested
    assert scheduler.ask_for_sync([first, second, off, first]) == 2  # not a disabled one
    assert not woken  # not before the commit
    db.session.commit()
    assert len(woken) == 1
    assert scheduler.ask_for_sync([first]) == 0  # already asked for: woke the workers then
    db.session.commit()
    assert len(woken) == 1
    assert [b.sync_requested for b in map(db.session.get, [Mailbox] * 3, [first, second, off])] \
        == [True, True, False]


def test_the_listening_connection_may_bypass_a_transaction_pooler():
    """``REGARDING_SYNC_LISTEN_URL`` as psycopg is given it: every part of the URL kept."""
    params = connect_args("postgresql://sync:s3cret@db.example:5433/crm?sslmode=require")
    assert params == {"host": "db.example", "port": 5433, "dbname": "crm", "user": "sync",
                      "password": "s3cret", "sslmode": "require"}


def _postgresql_only(db_backend: str) -> None:
    if db_backend != "postgresql":
        pytest.skip("another process is woken through PostgreSQL; SQLite runs one worker")


def _worker(app, tmp_path, name: str, **settings) -> WorkerProcess:
    env = worker_env(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance",
                     REGARDING_SYNC_POLL_SECONDS=HOUR, REGARDING_SYNC_INTERVAL_SECONDS=HOUR,
                     REGARDING_SYNC_BUSY_INTERVAL_SECONDS=HOUR,
                     REGARDING_SYNC_IDLE_INTERVAL_SECONDS=HOUR, **settings)
    worker = WorkerProcess(name, env, "--concurrency", "1", "--no-push")
    worker.wait_started()
    wait_until(lambda: any(LISTENING in line for line in worker.lines), 60,
               "the worker listening", workers=[worker])
    return worker


def test_a_change_committed_elsewhere_wakes_a_worker_and_a_rolled_back_one_does_not(
        app, crm, tmp_path, db_backend):
    _postgresql_only(db_backend)
    rolled_back, committed = maildir_mailboxes(crm, tmp_path / "store", 2)
    due_on = next_due(committed)
    worker = _worker(app, tmp_path, "woken")
    try:
        with psycopg.connect(**connect_args(db.engine.url), autocommit=True) as ear:
            ear.execute(f"LISTEN {scheduler.CHANNEL}")
            assert scheduler.ask_for_sync([rolled_back]) == 1
            db.session.rollback()
            asked_on = utcnow()
            assert scheduler.ask_for_sync([committed]) == 1
            db.session.commit()
            db.session.execute(text("SELECT pg_notify(:channel, 'marker')"),
                               {"channel": scheduler.CHANNEL})
            db.session.commit()
            heard = []
            for notice in ear.notifies(timeout=60):
                heard.append(notice.payload)
                if notice.payload == "marker":
                    break
            # Delivered in commit order: a notification of the rolled-back change would
            # have come before the committed one's.
            assert heard == [scheduler.sender(), "marker"]
        wait_until(lambda: runs(committed), 120, "the committed mailbox synced",
                   workers=[worker])
        synced_by_the_wake(committed, asked_on, due_on)
        assert runs(rolled_back) == []
        assert worker.stop() == 0
    finally:
        worker.kill()


def test_the_listener_connects_again_after_its_backend_was_terminated(app, crm, tmp_path,
                                                                      db_backend):
    _postgresql_only(db_backend)
    before, after = maildir_mailboxes(crm, tmp_path / "store", 2)
    # Listening at a URL of its own (as past a transaction pooler), written as libpq does.
    plain = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg:", "postgresql:")
    worker = _worker(app, tmp_path, "reconnecting", REGARDING_SYNC_LISTEN_URL=plain)

    def listening_backends() -> set[int]:
        db.session.rollback()
        pids = set(db.session.scalars(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'regarding sync wake reconnecting'")))
        db.session.rollback()
        return pids

    try:
        asked_on, due_on = utcnow(), next_due(before)
        scheduler.ask_for_sync([before])
        db.session.commit()
        wait_until(lambda: runs(before), 120, "the first mailbox synced", workers=[worker])
        synced_by_the_wake(before, asked_on, due_on)

        [backend] = listening_backends()
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        db.session.commit()
        wait_until(lambda: any(f"{LISTENING} (PostgreSQL NOTIFY {scheduler.CHANNEL}) again"
                               in line for line in worker.lines), 120,
                   "the worker listening again", workers=[worker])
        assert any("not listening for mailboxes asked for" in line for line in worker.lines)
        assert listening_backends() - {backend}

        asked_on, due_on = utcnow(), next_due(after)
        scheduler.ask_for_sync([after])
        db.session.commit()
        wait_until(lambda: runs(after), 120, "the second mailbox synced", workers=[worker])
        synced_by_the_wake(after, asked_on, due_on)
        assert worker.stop() == 0
    finally:
        worker.kill()
