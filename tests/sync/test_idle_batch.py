"""Idle visits in batches (``engine.idle`` through the worker): due mailboxes with nothing
new are visited together, each with its outcome, run row and lease given back, in the same
statements for 2 mailboxes as for 6; a mailbox with new mail (or anything the probe cannot
vouch for) in a batch of idle ones gets its full run; due outgoing mail is still sent; a
lease lost meanwhile is left to its new holder."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, update

from server.crm.activities import Email
from server.db import db, utcnow
from server.sync.connectors.maildir import (create_maildir, deliver, folder_path,
                                             mailbox_root)
from server.sync.engine import alerts, idle
from server.sync.engine.run import sync_mailbox
from server.sync.models import FolderState, Mailbox, SyncRun
from server.sync.workers import scheduler
from tests.sync import world as w
from tests.sync.test_scheduler import boxes, fresh, work

pytestmark = pytest.mark.both_databases


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def _settled(store, made) -> None:
    """Each tree's folders as a store's are between deliveries: their new/ and cur/ last
    changed a minute ago (a run stamps a cursor only with settled times)."""
    then = time.time() - 60
    for box in made:
        root = mailbox_root(store, box.email_address)
        for folder in [root, *(d for d in root.iterdir() if d.name.startswith(".")
                               and d.is_dir())]:
            for sub in ("new", "cur"):
                os.utime(folder / sub, (then, then))


def _synced_once(store, made) -> None:
    _settled(store, made)
    for box in made:
        assert sync_mailbox(box.id).status == "success"
    db.session.commit()


def _due(made) -> None:
    db.session.execute(update(Mailbox).where(Mailbox.id.in_([b.id for b in made]))
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def _runs(box) -> list[SyncRun]:
    return list(db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id)
                                   .order_by(SyncRun.id)))


def _counted(app, **options) -> tuple[list[str], object]:
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        stats = work(app, "worker-a", **options)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return statements, stats


def _batch_work(statements: list[str]) -> list[str]:
    """The statements a worker issued other than its polls (for due mailboxes, item jobs)."""
    polls = ("SELECT due.", "SELECT mailbox_job_item.")
    return [s for s in statements if not s.lstrip().startswith(polls)]


def test_an_idle_batch_records_each_visit_and_gives_back_each_lease(app, crm, tmp_path,
                                                                   monkeypatch):
    # The worker's pruning pass takes a slot at start, while or after the batch is claimed
    # (test_run_history.py): not counted here.
    monkeypatch.setitem(app.config, "REGARDING_SYNC_RUN_DAYS", 0)
    store = tmp_path / "store"
    made = boxes(crm, store, 8)
    _synced_once(store, made)
    before = {b.id: (fresh(b).sync_interval_seconds, fresh(b).last_success_on) for b in made}
    visits = {s.id: s.updated_on for s in db.session.scalars(select(FolderState))}
    _due(made[:2])
    with_2, stats = _counted(app, concurrency=2)
    assert stats.synced == 2 and stats.errors == stats.failed == 0
    made = made[2:]
    _due(made)
    with_6, stats = _counted(app, concurrency=2)
    assert sorted(stats.runs) == sorted((b.id, "success") for b in made)
    # One batch: the same statements for 6 mailboxes as for 2 (a run issues ten each). The
    # worker's polls for due mailboxes and item jobs are left out: how many it makes while
    # the batch runs depends on timing.
    work_6, work_2 = _batch_work(with_6), _batch_work(with_2)
    assert len(work_6) == len(work_2), "\n".join(work_6)
    assert sum(s.startswith("INSERT INTO sync_run") for s in with_6) == 1
    assert sum(s.startswith("UPDATE folder_state") for s in with_6) == 1
    for box in made:
        row = fresh(box)
        assert row.lease_owner is None and row.lease_expires_on is None
        interval, success = before[box.id]
        assert row.last_success_on > success and row.consecutive_failures == 0
        assert row.sync_interval_seconds > interval  # idle: the interval lengthened
        assert row.next_sync_on == row.last_success_on + timedelta(
            seconds=row.sync_interval_seconds)
        runs = _runs(box)
        assert runs[-1].worker == "worker-a" and runs[-1].finished_on is not None
        assert runs[-1].fetched == runs[-1].tracked == 0 and runs[-1].error_code is None
    # The folders' visits are written as a run writes them.
    for state in db.session.scalars(select(FolderState)):  # (all 8 mailboxes')
        assert state.updated_on > visits[state.id]


def test_a_mailbox_with_new_mail_in_a_batch_of_idle_ones_is_fully_synced(app, crm,
                                                                       tmp_path):
    store = tmp_path / "store"
    made = boxes(crm, store, 4)
    _synced_once(store, made)
    busy = made[2]
    deliver(mailbox_root(store, busy.email_address), "INBOX",
            w.raw(subject="News", mid=f"news.{busy.id}@customer.example"))
    _due(made)
    stats = work(app, "worker-a", concurrency=2)
    assert sorted(stats.runs) == sorted((b.id, "success") for b in made)
    assert [e.subject for e in w.emails()] == ["News"]
    assert _runs(busy)[-1].tracked == 1 and fresh(busy).sync_interval_seconds == 120
    for box in made:
        assert fresh(box).lease_owner is None and len(_runs(box)) == 2


def test_what_the_probe_cannot_vouch_for_gets_a_full_run(app, crm, tmp_path):
    store = tmp_path / "store"
    """An open failure alert (the run closes it), a folder renamed, a folder state without
    settled times: each of those mailboxes gets the full run; the others are idle."""
    made = boxes(crm, store, 4)
    _synced_once(store, made)
    failing, renamed, unsettled, quiet = made
    alerts.raise_alert("warning", "sync_failed", "It failed once.", failing)
    root = mailbox_root(store, renamed.email_address)
    os.rename(folder_path(root, "Sent"), folder_path(root, "Sent Messages"))
    db.session.execute(update(FolderState).where(FolderState.mailbox_id == unsettled.id)
                       .values(cursor=None))
    db.session.commit()
    probed = idle.probe([b.id for b in made])
    assert sorted(probed.full) == sorted([failing.id, renamed.id, unsettled.id])
    assert [v.mailbox_id for v in probed.idle] == [quiet.id]
    db.session.rollback()
    _due(made)
    stats = work(app, "worker-a")
    assert sorted(stats.runs) == sorted((b.id, "success") for b in made)
    assert alerts.MailboxAlerts(fresh(failing))._codes() == set()  # closed by its run
    names = set(db.session.scalars(select(FolderState.folder_name).where(
        FolderState.mailbox_id == renamed.id)))
    assert "Sent Messages" in names


def test_tracked_folders_are_probed_and_a_new_rule_gets_a_run(app, crm, tmp_path):
    """A mailbox with a folder rule is idle while its Inbox, Sent and tracked folder are;
    mail filed into the tracked folder, or a rule for a folder not read yet, gets a run."""
    store = tmp_path / "store"
    box, other = boxes(crm, store, 2)
    root = mailbox_root(store, box.email_address)
    create_maildir(root, ["INBOX/Deal", "INBOX/Later"])
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Deal"], "INBOX/Deal")
    db.session.commit()
    _synced_once(store, [box, other])
    probed = idle.probe([box.id, other.id])
    assert probed.full == [] and [len(v.state_ids) for v in probed.idle] == [3, 2]
    db.session.rollback()
    deliver(root, "INBOX/Deal", w.raw(subject="Filed", mid="filed@customer.example"))
    assert idle.probe([box.id, other.id]).full == [box.id]
    db.session.rollback()
    assert sync_mailbox(box.id).tracked == 1
    _synced_once(store, [box])
    assert idle.probe([box.id]).full == []
    db.session.rollback()
    w.folder_rule(box, keys["INBOX/Later"], "INBOX/Later")
    db.session.commit()
    assert idle.probe([box.id]).full == [box.id]


def test_due_outgoing_mail_of_an_idle_mailbox_is_still_sent(app, crm, tmp_path):
    store = tmp_path / "store"
    prof = w.profile("maildir", maildir_root=str(store), outgoing_protocol="maildir")
    (box,) = boxes(crm, store, 1, prof=prof, email_address="bob@org.example")
    others = boxes(crm, store, 2, prof=prof, prefix="other")
    _synced_once(store, [box, *others])
    draft = w.draft_email(crm.p, None, to="ann@customer.example", cc="", subject="Quote",
                          body="Here it is.")
    draft.status = "pending_send"
    db.session.commit()
    _due([box, *others])
    stats = work(app, "worker-a")
    assert stats.sent == 1 and sorted(stats.runs) == sorted(
        (b.id, "success") for b in [box, *others])
    db.session.expire_all()
    assert db.session.get(Email, draft.id).status == "sent"
    assert len(list((store / "outbox" / "new").iterdir())) == 1
    row = fresh(box)
    assert row.lease_owner is None and row.outgoing_status == "success"
    assert _runs(box)[-1].fetched == 0


def test_a_lease_lost_in_the_middle_of_a_batch_is_left_to_its_new_holder(app, crm,
                                                                         tmp_path):
    store = tmp_path / "store"
    made = boxes(crm, store, 3)
    _synced_once(store, made)
    _due(made)
    held = sorted(lease.mailbox_id for lease in scheduler.claim("worker-a", 3))
    assert held == sorted(b.id for b in made)
    probed = idle.probe(held)
    assert sorted(v.mailbox_id for v in probed.idle) == held
    # Meanwhile worker-a's lease on one of them ran out and worker-b took it over.
    lost = made[1]
    db.session.execute(update(Mailbox).where(Mailbox.id == lost.id)
                       .values(lease_owner="worker-b"))
    written = idle.record("worker-a", probed.idle)
    assert written == {made[0].id, made[2].id}
    row = fresh(lost)
    assert row.lease_owner == "worker-b" and row.lease_expires_on is not None
    assert len(_runs(lost)) == 1  # its first run only: nothing of the visit was written
    for box in (made[0], made[2]):
        assert fresh(box).lease_owner is None and len(_runs(box)) == 2
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 5


def test_work_beyond_the_free_slots_is_given_back_still_due(app, crm, tmp_path):
    """A batch whose mailboxes have mail keeps as many for full runs as there are slots and
    gives the others back at once, due as they were; the next claim takes no extra."""
    import threading
    from server.sync.workers.worker import Worker
    store = tmp_path / "store"
    made = boxes(crm, store, 5)  # never run: each needs a full run
    db.session.commit()
    worker = Worker(app, "worker-a", 2, threading.Event(), push=False, until_idle=True)
    leases = worker._claim(5)
    assert len(leases) == 5 and worker.extra == 19
    worker._visit(leases, 2)
    kept = [lease.mailbox_id for lease in worker.waiting]
    assert kept == [lease.mailbox_id for lease in leases[:2]] and worker.extra == 0
    assert worker.active == set(kept)
    db.session.expire_all()
    for box in made:
        row = fresh(box)
        assert row.lease_owner == ("worker-a" if box.id in kept else None)
        assert row.next_sync_on is None  # still due, first
    # Another worker syncs those given back (on SQLite, the sole worker takes back the
    # kept ones too).
    stats = work(app, "worker-b")
    assert {status for _, status in stats.runs} == {"success"}
    assert {i for i, _ in stats.runs} >= {b.id for b in made if b.id not in kept}
