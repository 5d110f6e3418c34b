"""Sync run history retention (``engine.history``): finished runs older than
``REGARDING_SYNC_RUN_DAYS`` are deleted in chunks, open and recent ones stay; the worker
prunes by itself once and not again within the hour; 0 keeps everything; a retention
shorter than the dashboard's 48 hours is refused; ``sync prune-runs`` says how many went."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import delete, func, insert, select

from server.db import db, utcnow
from server.sync.connectors.maildir import create_maildir, deliver, mailbox_root
from server.sync.engine import history
from server.sync.models import Mailbox, SyncRun
from server.sync.workers import scheduler
from server.sync.workers.worker import run_worker
from tests.sync import world as w
from tests.waiting import until

pytestmark = pytest.mark.both_databases


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


@pytest.fixture
def box(crm, tmp_path) -> Mailbox:
    """Bob's Maildir mailbox, with one message to track."""
    store = tmp_path / "store"
    root = mailbox_root(store, "bob@org.example")
    create_maildir(root, ["Sent"])
    deliver(root, "INBOX", w.raw(mid="m1@customer.example"))
    made = w.mailbox(crm.bob, prof=w.profile("maildir", maildir_root=str(store)),
                     email_address="bob@org.example", tracking_option="from_crm_records")
    db.session.commit()
    return made


def add_runs(box: Mailbox, days_ago: float, count: int, *, finished: bool = True) -> None:
    started = utcnow() - timedelta(days=days_ago)
    db.session.execute(insert(SyncRun.__table__), [dict(
        mailbox_id=box.id, worker="test", started_on=started + timedelta(seconds=i),
        finished_on=started + timedelta(seconds=i + 1) if finished else None,
        fetched=0, tracked=0, skipped=0, failed=0) for i in range(count)])
    db.session.commit()


def runs(*conditions) -> int:
    db.session.rollback()  # see what other sessions committed
    return db.session.scalar(select(func.count()).select_from(SyncRun).where(*conditions))


def old(days: int = 30):
    return SyncRun.started_on < utcnow() - timedelta(days=days)


def test_old_finished_runs_go_in_chunks_recent_and_open_ones_stay(box):
    add_runs(box, 45, 25)
    add_runs(box, 40, 2, finished=False)  # a run still open (closed by a takeover) stays
    add_runs(box, 29, 3)
    totals: list[int] = []
    pruned = history.prune(30, chunk=7, progress=totals.append)
    assert pruned.deleted == 25 and pruned.done
    assert totals == [7, 14, 21, 25]  # four chunks, each its own transaction
    assert runs(old()) == 2 and runs(SyncRun.finished_on.is_(None)) == 2
    assert runs() == 5
    assert history.prune(30, chunk=7).deleted == 0  # idempotent


def test_a_time_budget_stops_between_chunks_and_the_next_pass_goes_on(box):
    add_runs(box, 60, 10)
    first = history.prune(30, chunk=4, budget=0)  # the budget is spent after one chunk
    assert (first.deleted, first.done) == (4, False)
    assert runs() == 6
    rest = history.prune(30, chunk=4)
    assert (rest.deleted, rest.done) == (6, True) and runs() == 0


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ages=st.lists(st.tuples(st.integers(0, 90), st.booleans()), max_size=30),
       days=st.integers(2, 60), chunk=st.integers(1, 8))
def test_exactly_the_finished_runs_older_than_the_retention_go(box, ages, days, chunk):
    db.session.execute(delete(SyncRun))
    db.session.commit()
    now = utcnow()
    rows = [dict(mailbox_id=box.id, started_on=now - timedelta(days=age, hours=12),
                 finished_on=now if finished else None, fetched=0, tracked=0, skipped=0,
                 failed=0) for age, finished in ages]
    if rows:
        db.session.execute(insert(SyncRun.__table__), rows)
        db.session.commit()
    expected = sum(1 for age, finished in ages if finished and age >= days)
    assert history.prune(days, chunk=chunk, now=now).deleted == expected
    assert runs() == len(ages) - expected


def test_zero_keeps_everything_and_a_short_retention_is_refused(app, box):
    add_runs(box, 400, 3)
    assert history.prune(0).deleted == 0
    app.config["REGARDING_SYNC_RUN_DAYS"] = 0
    stats = run_worker(app, worker_id="worker-a", push=False, until_idle=True)
    assert stats.synced == 1 and stats.pruned == 0
    assert runs(old()) == 3
    for days in (1, -1):
        with pytest.raises(history.BadRetention, match="at least 2 days"):
            history.prune(days)
    app.config["REGARDING_SYNC_RUN_DAYS"] = 1
    with pytest.raises(history.BadRetention, match="REGARDING_SYNC_RUN_DAYS=1"):
        run_worker(app, worker_id="worker-a", push=False, until_idle=True)
    refused = app.test_cli_runner().invoke(args=["sync", "prune-runs"])
    assert refused.exit_code != 0 and "REGARDING_SYNC_RUN_DAYS=1" in refused.output
    assert runs() == 4


def test_the_worker_prunes_once_and_not_again_within_the_hour(app, box):
    add_runs(box, 31, 5)
    add_runs(box, 2, 2)
    stop, out = threading.Event(), {}
    # One slot: a second prune would take it before the next claim, so the second run
    # below could only be recorded after it.
    thread = threading.Thread(target=lambda: out.update(stats=run_worker(
        app, worker_id="worker-a", push=False, stop_event=stop, concurrency=1)))
    thread.start()
    try:
        until(lambda: runs(old()) == 0 and runs(SyncRun.worker == "worker-a",
                                                 SyncRun.finished_on.is_not(None)) == 1,
              "the old runs pruned and the mailbox's first run recorded", session=db.session)
        add_runs(box, 50, 4)
        scheduler.request_sync(None, db.session.get(Mailbox, box.id))
        db.session.commit()
        until(lambda: runs(SyncRun.worker == "worker-a", SyncRun.finished_on.is_not(None)) == 2,
              "the second run recorded", session=db.session)
    finally:
        stop.set()
        scheduler.wake_local()
        thread.join(60)
    assert not thread.is_alive() and out["stats"].pruned == 5
    assert runs(old()) == 4 and runs() == 2 + 2 + 4


def test_the_command_line_prints_how_many_runs_it_deleted(app, box):
    add_runs(box, 40, 12)
    add_runs(box, 10, 3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync", "prune-runs"])
    assert result.exit_code == 0, result.output
    assert "12 runs older than 30 days deleted." in result.output
    result = runner.invoke(args=["sync", "prune-runs", "--days", "5"])
    assert result.exit_code == 0 and "3 runs older than 5 days deleted." in result.output
    assert runs() == 0
    refused = runner.invoke(args=["sync", "prune-runs", "--days", "1"])
    assert refused.exit_code != 0 and "at least 2 days" in refused.output
    kept = runner.invoke(args=["sync", "prune-runs", "--days", "0"])
    assert kept.exit_code == 0 and "0 runs deleted" in kept.output
