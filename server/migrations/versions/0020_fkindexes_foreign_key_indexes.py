"""the foreign keys into activities, cases, queues and mailboxes indexed; an unused index gone

Revision ID: 0020_fkindexes
Revises: 0019_slimindexes
Create Date: 2026-12-07 01:20:00

Deleting an activity clears the columns that point at it (``ON DELETE SET NULL``), and
both databases find those rows through an index on the column, or else read the whole
table. ``message_decision`` holds a row for every message a mailbox has ever seen, and
its ``activity_id`` had no index: deleting one tracked email read the whole decision log,
and deleting many read it once each. The same held for ``track_request.activity_id``,
``case_acknowledgement`` (its email, case and queue) and ``mailbox_job_item.mailbox_id``.
Those columns are now indexed, where set (a partial index: most decision rows are of mail
that was not tracked and point at nothing, and get no entry).

``ix_message_decision_from_address`` is dropped: the decision log is searched for a part of
the sender (``LIKE '%...%'``), which no B-tree index serves, and the index cost an entry
for every message the sync decided on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0020_fkindexes'
down_revision = '0019_slimindexes'
branch_labels = None
depends_on = None

# (table, index, column, partial): partial indexes hold the rows whose column is set.
INDEXES = (
    ("message_decision", "ix_message_decision_activity_id", "activity_id", True),
    ("track_request", "ix_track_request_activity_id", "activity_id", True),
    ("case_acknowledgement", "ix_case_acknowledgement_email_id", "email_id", True),
    ("case_acknowledgement", "ix_case_acknowledgement_case_id", "case_id", True),
    ("case_acknowledgement", "ix_case_acknowledgement_queue_id", "queue_id", False),
    ("mailbox_job_item", "ix_mailbox_job_item_mailbox_id", "mailbox_id", True),
)


def upgrade() -> None:
    op.drop_index("ix_message_decision_from_address", table_name="message_decision")
    for table, name, column, partial in INDEXES:
        where = {"postgresql_where": sa.text(f"{column} IS NOT NULL"),
                 "sqlite_where": sa.text(f"{column} IS NOT NULL")} if partial else {}
        op.create_index(name, table, [column], **where)


def downgrade() -> None:
    for table, name, _column, _partial in INDEXES:
        op.drop_index(name, table_name=table)
    op.create_index("ix_message_decision_from_address", "message_decision", ["from_address"])
