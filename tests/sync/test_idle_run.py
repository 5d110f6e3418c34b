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
from server.sync.models import Mailbox
from server.sync.workers import scheduler
from tests.sync import world as w
from tests.sync.test_scheduler import boxes

pytestmark = pytest.mark.both_databases

# claim: the due rows, the profiles' limits, their live leases, the lease written (4);
# the run: the mailbox with its profile and user, the organization, the run row, the
# owner's privileges, the open alerts, the folder rules, the folder states, the folders'
# visits, the mailbox's outcome, the run closed (10); the lease given back (1).
MOST = 15


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

    def count(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        (lease,) = scheduler.claim("worker-a", 4)
        held = load_mailbox(lease.mailbox_id)
        result = sync_mailbox(lease.mailbox_id, worker="worker-a")
        assert held is not None and result.status == "success" and result.fetched == 0
        assert scheduler.release("worker-a", lease.mailbox_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    db.session.remove()
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
