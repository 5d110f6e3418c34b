"""An idle run (a due mailbox with nothing new) costs a handful of statements, the same
with 10 mailboxes as with 1,000, and reads no other mailbox's row: the statements a worker
issues for one claimed mailbox (claim, run, lease given back) are counted with a SQLAlchemy
event listener (a count, never a timing)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, insert

from server.db import db, utcnow
from server.sync.engine.run import load_mailbox, sync_mailbox
from server.sync.models import Mailbox, SyncRun
from server.sync.workers import scheduler
from tests.sync import world as w
from tests.sync.test_scheduler import boxes

pytestmark = pytest.mark.both_databases

# claim: the due rows, the profiles' limits, their live leases, the lease written (4);
# the run: the mailbox with its profile and user, the organization, the owner's
# privileges, the open alerts, the folder rules, the folder states (6); then one
# transaction: the mailbox's outcome with the lease given back, the folders' visits, the
# run row, written once (3). Two transactions in all.
MOST = 13


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


def _idle_pass(box_id: int) -> list[str]:
    """What a worker runs for the due mailbox, in a fresh session; the statements."""
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
    assert len(commits) == 2, len(commits)  # the claim's and the run's
    return statements


def test_an_idle_run_costs_the_same_few_statements_with_1000_mailboxes(app, crm, tmp_path):
    (box,) = boxes(crm, tmp_path / "store", 1)
    _more_mailboxes(box, 9, 0)
    box_id = box.id
    first = sync_mailbox(box_id)  # its folders are seen once: later runs are idle
    assert first.status == "success"
    db.session.commit()
    with_10 = _idle_pass(box_id)
    _more_mailboxes(db.session.get(Mailbox, box_id), 990, 9)
    with_1000 = _idle_pass(box_id)
    assert len(with_10) <= MOST, "\n".join(with_10)
    assert len(with_1000) == len(with_10), "\n".join(with_1000)
    # No statement reads every mailbox (their addresses were read on every run).
    whole = [s for s in with_1000 if "FROM mailbox" in s and "WHERE" not in s]
    assert not whole, whole
