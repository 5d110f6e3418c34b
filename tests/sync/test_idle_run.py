"""An idle run (a due mailbox with nothing new) costs a handful of statements, the same
with 10 mailboxes as with 1,000, and reads no other mailbox's row: the statements a worker
issues for one claimed mailbox (claim, run, lease given back) are counted with a SQLAlchemy
event listener (a count, never a timing)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select

from server.db import db, utcnow
from server.sync.engine.run import load_mailbox, sync_mailbox
from server.sync.engine import alerts
from server.sync.engine.folders import NOT_FOUND
from server.sync.models import Alert, FolderRule, Mailbox, SyncRun
from server.sync.workers import scheduler
from tests.sync import world as w
from tests.sync.test_scheduler import boxes

pytestmark = pytest.mark.both_databases

# claim: the due rows, the profiles' limits, their live leases, the lease written (4);
# the run: the mailbox with its profile, its user, the organization and its open alerts
# and folder rules counted (none of either: neither is read), the owner's privileges,
# the folder states (3); then one transaction: the mailbox's outcome with the lease given
# back, the folders' visits, the run row, written once (3). Two transactions in all.
MOST = 10


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def _more_mailboxes(box: Mailbox, count: int, start: int) -> None:
    """``count`` other enabled mailboxes of the same profile, none of them due."""
    later = utcnow() + timedelta(hours=1)
    db.session.execute(insert(Mailbox), [dict(
        name=f"other{i}@org.example", email_address=f"other{i}@org.example",
        user_id=box.user_id, server_profile_id=box.server_profile_id, enabled=True,
        email_approved=True, owning_business_unit_id=box.owning_business_unit_id,
        next_sync_on=later) for i in range(start, start + count)])
    db.session.commit()


def _idle_pass(box_id: int) -> tuple[list[str], int]:
    """What a worker runs for the due mailbox, in a fresh session; the statements and the
    transactions committed."""
    db.session.execute(Mailbox.__table__.update().where(Mailbox.id == box_id)
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    db.session.remove()
    statements: list[str] = []
    commits: list[int] = []

    def count(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    def committed(conn):
        commits.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    event.listen(db.engine, "commit", committed)
    try:
        (lease,) = scheduler.claim("worker-a", 4)
        held = load_mailbox(lease.mailbox_id)
        result = sync_mailbox(lease.mailbox_id, worker="worker-a", lease_owner="worker-a")
        assert held is not None and result.status == "success" and result.fetched == 0
        assert result.released  # with the outcome: the worker does not give it back again
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "commit", committed)
    db.session.remove()
    box = db.session.get(Mailbox, box_id)
    assert box.lease_owner is None and box.lease_expires_on is None
    assert box.next_sync_on > utcnow() and box.last_success_on is not None
    run = db.session.get(SyncRun, result.run_id)
    assert run.finished_on is not None and run.worker == "worker-a" and run.error_code is None
    return statements, len(commits)


def test_an_idle_run_costs_the_same_few_statements_with_1000_mailboxes(app, crm, tmp_path):
    (box,) = boxes(crm, tmp_path / "store", 1)
    _more_mailboxes(box, 9, 0)
    box_id = box.id
    first = sync_mailbox(box_id)  # its folders are seen once: later runs are idle
    assert first.status == "success"
    db.session.commit()
    with_10, commits = _idle_pass(box_id)
    assert commits == 2  # the claim's and the run's
    _more_mailboxes(db.session.get(Mailbox, box_id), 990, 9)
    with_1000, _ = _idle_pass(box_id)
    assert len(with_10) <= MOST, "\n".join(with_10)
    assert len(with_1000) == len(with_10), "\n".join(with_1000)
    # No statement reads every mailbox (their addresses were read on every run).
    whole = [s for s in with_1000 if "FROM mailbox" in s and "WHERE" not in s]
    assert not whole, whole


def test_an_idle_run_reads_the_open_alerts_and_folder_rules_when_there_are_some(
        app, crm, tmp_path):
    """The run's load counts them; when there are some they are read and acted on as
    before: an open failure alert is cleared by the successful run, and a rule whose
    folder is gone is marked and alerted."""
    (box,) = boxes(crm, tmp_path / "store", 1)
    box_id = box.id
    assert sync_mailbox(box_id).status == "success"
    alerts.raise_alert("warning", "sync_failed", "It failed once.", box)
    w.folder_rule(box, "md:gone", "Gone")
    db.session.commit()
    statements, _ = _idle_pass(box_id)
    assert any("FROM sync_alert" in s for s in statements)
    assert any(s.lstrip().startswith("SELECT folder_rule.id") for s in statements)
    failed = db.session.scalar(select(Alert).where(Alert.mailbox_id == box_id,
                                                   Alert.code == "sync_failed"))
    assert failed.acknowledged_on is not None
    rule = db.session.scalar(select(FolderRule).where(FolderRule.mailbox_id == box_id))
    assert rule.disabled_reason.startswith(NOT_FOUND)
    gone = db.session.scalar(select(Alert).where(Alert.mailbox_id == box_id,
                                                 Alert.code == "folder_rule_not_found"))
    assert gone is not None and gone.acknowledged_on is None
